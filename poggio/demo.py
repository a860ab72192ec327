"""``poggio demo``: a deterministic demo workspace with an admin and realistic data from every pack."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from poggio import workspaces
from poggio.audit import Actor
from poggio.models import Membership, User, Workspace
from poggio.plugins import PackRegistry
from poggio.search import SearchTerm

DEMO_ADMIN = "admin@acme.example"
DEMO_PASSWORD = "poggio-demo-admin"  # a demo login on a local install, printed by the command


@dataclass
class DemoResult:
    workspace: Workspace
    admin_email: str
    admin_password: str | None  # the login that works now; None once someone changed it
    seeded: bool


def build(registry: PackRegistry, slug: str = "acme", accounts: int = 200, seed: int = 7,
          progress=lambda pack, done, total: None, password: str | None = None) -> DemoResult:
    actor = Actor.cli()
    ws = Workspace.get_or_none(Workspace.slug == slug)
    if ws is None:
        ws = workspaces.create_workspace(slug, "Acme Inc." if slug == "acme" else slug.title(), True, actor)
    email = DEMO_ADMIN if slug == "acme" else f"admin@{slug}.example"
    login = password or DEMO_PASSWORD
    if User.get_or_none(User.email == email) is None or not Membership.select().join(User).where(
            (User.email == email) & (Membership.workspace == ws)).exists():
        workspaces.create_user(email, login, ws, "admin", actor, name="Demo Admin")
    elif not workspaces.check_password(workspaces.find_user(email), login):
        login = None  # someone changed it since: it is theirs, not ours to print
    has_data = SearchTerm.select().where(SearchTerm.workspace == ws).exists()
    if not has_data:
        for name in registry.packs:
            rng = random.Random(seed * 1_000_003 + zlib.crc32(name.encode()))
            registry.call_pack(name, "poggio_seed_demo", workspace_id=ws.id, rng=rng, accounts=accounts,
                               progress=lambda done, total, _n=name: progress(_n, done, total))
    return DemoResult(ws, email, login, not has_data)
