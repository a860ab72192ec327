"""An index on opportunity names per workspace: completing an opportunity's name (the review_deal
prompt's argument) reads a range of it instead of every opportunity of the workspace."""


def up(migrator, db):
    db.execute_sql("CREATE INDEX IF NOT EXISTS opportunity_workspace_id_name ON opportunity (workspace_id, name)")


def down(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS opportunity_workspace_id_name")
