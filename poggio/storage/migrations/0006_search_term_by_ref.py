"""The search index's second index, (kind, ref_id) → (kind, ref_id, term).

A search checks each candidate row for a word range ("is there an earlier word of this row in the
range", "does this row also have a word starting with ...") by its id: with the term in the index,
each check is one seek in a covering index instead of a read of every word row of that id."""


def up(migrator, db):
    migrator.migrate(
        migrator.add_index("search_term", ("kind", "ref_id", "term"), unique=False),
        migrator.drop_index("search_term", "search_term_kind_ref_id"),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.add_index("search_term", ("kind", "ref_id"), unique=False),
        migrator.drop_index("search_term", "search_term_kind_ref_id_term"),
    )
