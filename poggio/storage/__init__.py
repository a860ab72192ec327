"""The database: its binding (SQLite or PostgreSQL, the writer lock, statement deadlines), the
core's models and migrations, compiled queries and bulk writes. The ground floor: it imports no other room."""
