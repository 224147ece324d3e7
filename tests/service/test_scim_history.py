"""History: "who was in data-governance when bob approved?" — answered for any past moment by the
real CLI (``gatehouse directory show --at``, a subprocess) and by ``GET /v1/directory?at=``, from
the provisioned directory's change log; every version's change is in the audit trail too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

from gate_core import Scope
from gate_core.testing import actor
from tests.service.scim_rig import ScimRig, person_token


def _cli(rig: ScimRig, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GATEHOUSE_HOME": str(rig.settings.home),
        "GATEHOUSE_DATABASE_URL": rig.settings.database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "gate_core.cli", "directory", "show", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _moment() -> datetime:
    time.sleep(0.05)  # distinct timestamps on either side of each change
    moment = datetime.now(UTC)
    time.sleep(0.05)
    return moment


def test_who_was_in_which_group_at_any_past_moment(scim_rig: ScimRig) -> None:
    rig = scim_rig
    before_anything = _moment()
    bob = rig.create_user("bob", "bob@example.com", externalId="00u-bob")
    carol = rig.create_user("carol", "carol@example.com")
    group = rig.create_group("data-governance", [bob, carol])
    person_token(rig, "bob")
    gate_id = rig.open_gate()
    with rig.api("bob") as client:
        assert client.post(f"/v1/gates/{gate_id}/decisions", json={"decision": "approve"}).status_code == 200
    when_bob_approved = _moment()
    assert (
        rig.patch(f"/Groups/{group}", {"op": "remove", "path": f'members[value eq "{bob}"]'}).status_code
        == 200
    )
    after_removal = _moment()
    assert rig.patch(f"/Users/{bob}", {"op": "replace", "value": {"active": False}}).status_code == 200

    then = json.loads(_cli(rig, "--at", when_bob_approved.isoformat(), "--json").stdout)
    assert then["groups"]["data-governance"] == ["bob", "carol"]
    assert {p["id"]: p["source"] for p in then["principals"]}["bob"] == "scim"
    later = json.loads(_cli(rig, "--at", after_removal.isoformat(), "--json").stdout)
    assert later["groups"]["data-governance"] == ["carol"]
    now = _cli(rig)
    assert now.returncode == 0 and "[deactivated]" in now.stdout and "bob" in now.stdout
    empty = json.loads(_cli(rig, "--at", before_anything.isoformat(), "--json").stdout)
    assert empty["version"] == 0 and "data-governance" not in empty["groups"]
    assert _cli(rig, "--at", "yesterday").returncode != 0

    _, admin = rig.gatekeeper.tokens.create("frank", Scope.ADMIN, created_by=actor("frank"))
    rig.tokens["admin"] = admin
    with rig.api("admin") as client:
        answer = client.get("/v1/directory", params={"at": when_bob_approved.isoformat()})
    assert answer.status_code == 200, answer.text
    assert answer.json()["groups"]["data-governance"] == ["bob", "carol"]
    person_token(rig, "carol")
    with rig.api("carol") as client:
        assert client.get("/v1/directory").status_code == 403  # an admin's question

    # the audit alone tells the same story: each version, what changed
    versions = [e["payload"] for e in rig.audit("directory.changed")]
    membership = [v["changed"]["members"] for v in versions if v["id"] == group and "members" in v["changed"]]
    assert membership == [{"added": ["bob", "carol"], "removed": []}, {"added": [], "removed": ["bob"]}]
