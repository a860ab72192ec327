"""Secrets and the outside world: the format and digest of every token Poggio hands out, the
sealing of stored secrets, and the checks on the addresses a server-side request may reach."""
