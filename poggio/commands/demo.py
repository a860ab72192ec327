"""``poggio demo``: a deterministic demo workspace with an admin and realistic data from every pack.

Each pack seeds its own data (``poggio_seed_demo``) and says whether it did; one that already has data
in the workspace leaves it as it is, and one that raises is reported while the others still seed."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field

from poggio.identity import workspaces
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.storage.models import Membership, User, Workspace

DEMO_ADMIN = "admin@acme.example"
DEMO_PASSWORD = "poggio-demo-admin"  # a demo login on a local install, printed by the command


@dataclass
class DemoResult:
    workspace: Workspace
    admin_email: str
    admin_password: str | None  # the login that works now; None once someone changed it
    seeded: bool
    failures: dict[str, str] = field(default_factory=dict)


def build(
    registry: PackRegistry,
    slug: str = "acme",
    accounts: int = 200,
    seed: int = 7,
    progress=lambda pack, done, total: None,
    password: str | None = None,
) -> DemoResult:
    actor = Actor.cli()
    ws = Workspace.get_or_none(Workspace.slug == slug)
    if ws is None:
        ws = workspaces.create_workspace(slug, "Acme Inc." if slug == "acme" else slug.title(), True, actor)
    email = DEMO_ADMIN if slug == "acme" else f"admin@{slug}.example"
    login = password or DEMO_PASSWORD
    shown: str | None = login
    if (
        User.get_or_none(User.email == email) is None
        or not Membership.select().join(User).where((User.email == email) & (Membership.workspace == ws)).exists()
    ):
        workspaces.create_user(email, login, ws, "admin", actor, name="Demo Admin")
    elif not workspaces.check_password(workspaces.find_user(email), login):
        shown = None  # someone changed it since: it is theirs, not ours to print
    seeded = False
    failures: dict[str, str] = {}
    for name in registry.packs:  # dependency order: accounts before the packs that add to them
        rng = random.Random(seed * 1_000_003 + zlib.crc32(name.encode()))
        results = registry.call_each(
            "poggio_seed_demo",
            packs={name},
            workspace_id=ws.id,
            rng=rng,
            accounts=accounts,
            progress=lambda done, total, _n=name: progress(_n, done, total),
            on_error=lambda pack, exc: failures.__setitem__(pack, f"{type(exc).__name__}: {exc}"),
        )
        seeded = seeded or any(result is True for _, result in results)
    return DemoResult(ws, email, shown, seeded, failures)
