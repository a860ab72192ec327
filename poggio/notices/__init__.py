"""Who is told: the home page's list of what needs attention, and webhooks (endpoints and the
delivery of their outbox)."""
