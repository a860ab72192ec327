"""SCIM 2.0 compliance: ``scim2-tester`` (a SCIM server compliance checker) run against a real portal
process (gunicorn) with a workspace's SCIM token: discovery endpoints, Users and Groups created,
read, filtered, replaced, patched and deleted as RFC 7643 and 7644 say. Every check it runs must
pass; the ones it skips are listed in the test's report."""

from __future__ import annotations

import httpx2
import pytest
from instances import BACKENDS, PortalProcess, drop_instance, make_instance
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from poggio.identity import scim
from poggio.identity.workspaces import create_workspace
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade


@pytest.mark.parametrize("backend", BACKENDS)
def test_scim2_tester_finds_nothing_wrong(tmp_path, backend):
    inst = make_instance(tmp_path / "instance", backend)
    db = inst.activate()
    portal = None
    try:
        with db.connection_context():
            upgrade(PackRegistry.load())
            ws = create_workspace("acme", "Acme", True, Actor.cli())
            token = scim.create_token(ws, Actor.cli(), "scim2-tester")
            create_workspace("other", "Other", True, Actor.cli())
        portal = PortalProcess(inst)
        with httpx2.Client(
            base_url=f"{portal.url}/scim/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http:
            results = check_server(SyncSCIMClient(http))
        failed = [
            (r.status.name, r.title, r.reason) for r in results if r.status not in (Status.SUCCESS, Status.SKIPPED)
        ]
        assert not failed, failed
        passed = sum(r.status == Status.SUCCESS for r in results)
        assert passed >= 100, passed
    finally:
        if portal is not None:
            portal.stop()
        db.close()
        drop_instance(inst)
    assert "Traceback" not in portal.log_path.read_text(errors="replace")
