"""``poggio db upgrade``: the core's migrations, then each pack's, with playhouse.migrations."""

from __future__ import annotations

from pathlib import Path

from playhouse.migrations import Runner

from poggio.runtime.plugins import PackRegistry
from poggio.storage.db import database

CORE_MIGRATIONS = Path(__file__).parents[1] / "storage" / "migrations"


def runners(registry: PackRegistry) -> list[tuple[str, Runner]]:
    db = database.obj
    found = [("core", Runner(db, str(CORE_MIGRATIONS), table_name="poggio_migration"))]
    for name, pack in registry.packs.items():
        if pack.migrations is not None:
            found.append((name, Runner(db, str(pack.migrations), table_name=f"poggio_migration_{name}")))
    return found


def upgrade(registry: PackRegistry) -> dict[str, list[str]]:
    """Apply every pending migration; returns what was applied, per component. Idempotent."""
    applied = {}
    with database.connection_context():
        for name, runner in runners(registry):
            applied[name] = runner.up()
    return applied
