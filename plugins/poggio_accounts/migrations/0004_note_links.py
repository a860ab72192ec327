"""Notes keep their links generically: ``note.links`` is a JSON list of ``{"kind", "value", "label"}``,
one per record the note is about, whichever pack holds it (a kind is an ``add_note`` link argument:
``contact_email`` of the contacts pack, ``opportunity_id`` of the revenue pack, or any other pack's).
The two columns the accounts pack kept for the contacts and revenue packs move into it and go.

``links`` held the labels joined by "; " (contact first, then opportunity): each label goes with its
link when the count matches, else the links keep no label (the reader's packs word them anew anyway).
Down: the two columns come back filled from the links of those two kinds; links of other kinds are lost.
"""

import json

from peewee import CharField, IntegerField
from playhouse.migrate import migrate

LEGACY = ("contact_email", "opportunity_id")


def up(migrator, db):
    rows = db.execute_sql("SELECT id, contact_email, opportunity_id, links FROM note").fetchall()
    for note_id, email, opportunity, labels in rows:
        links = [{"kind": k, "value": v} for k, v in zip(LEGACY, (email, opportunity), strict=True) if v is not None]
        parts = (labels or "").split("; ") if labels else []
        if len(parts) == len(links):
            for link, label in zip(links, parts, strict=True):
                link["label"] = label
        db.execute_sql("UPDATE note SET links = %s WHERE id = %s" % ((db.param,) * 2), (json.dumps(links), note_id))
    migrate(migrator.drop_column("note", "contact_email"), migrator.drop_column("note", "opportunity_id"))


def down(migrator, db):
    migrate(
        migrator.add_column("note", "contact_email", CharField(max_length=254, null=True)),
        migrator.add_column("note", "opportunity_id", IntegerField(null=True)),
    )
    for note_id, text in db.execute_sql("SELECT id, links FROM note").fetchall():
        links = {link["kind"]: link for link in json.loads(text or "[]")}
        kept = [links[k] for k in LEGACY if k in links]
        db.execute_sql(
            "UPDATE note SET contact_email = %s, opportunity_id = %s, links = %s WHERE id = %s" % ((db.param,) * 4),
            (
                links.get("contact_email", {}).get("value"),
                links.get("opportunity_id", {}).get("value"),
                "; ".join(link.get("label") or "" for link in kept),
                note_id,
            ),
        )
