"""What happened: the audit log and its redaction, the activity record of MCP requests and the
usage counts, and the webhook outbox entries a change causes (in the change's transaction)."""
