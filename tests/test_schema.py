"""The migrated schema is the one the models declare: every index a model names exists after
``poggio db upgrade``, with its columns and uniqueness, and no other (a migration that forgot an
index, or one that left an old one behind, fails here rather than as a slow query in production)."""

from __future__ import annotations

import pytest
from instances import BACKENDS, drop_instance, make_instance

from poggio.identity import id_jag, scim, sso  # noqa: F401  (their models are checked too)
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.storage.models import BaseModel

# indexes a migration writes in SQL because a model's Meta cannot say them: (table, columns, unique)
PARTIAL = {
    ("api_token", ("workspace_id", "name"), True),  # one *active* token per name: WHERE revoked_at IS NULL
}


def _models() -> list[type]:
    found, todo = [], [BaseModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            found.append(sub)
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_create_exactly_the_indexes_the_models_declare(tmp_path, backend):
    inst = make_instance(tmp_path, backend)
    db = inst.activate()
    try:
        with db.connection_context():
            upgrade(PackRegistry.load())
            tables = set(db.get_tables())
            checked = 0
            for model in _models():
                table = model._meta.table_name
                if table not in tables:
                    continue  # an abstract base, or a test's own model
                declared = {
                    (tuple(f.column_name for f in index._expressions), bool(index._unique))
                    for index in model._meta.fields_to_index()
                }
                found = {
                    (tuple(index.columns), bool(index.unique))
                    for index in db.get_indexes(table)
                    if not index.name.endswith("_pkey")
                    and (table, tuple(index.columns), bool(index.unique)) not in PARTIAL
                }
                assert found == declared, table
                checked += 1
            assert checked >= 15
    finally:
        db.close()
        drop_instance(inst)
