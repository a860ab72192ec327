"""The contacts tool pack: the people at accounts, searchable, and listed in an account's profile."""
