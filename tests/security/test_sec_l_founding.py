"""Security case 83 (issue 17): the node policy's "who may create associations" was stored and shown
but nothing enforced it, and the only creation path, the command line, answered "already exists"
without error, so an API creation path built the same way would have made anyone the admin of an
existing association by "creating" it again. ``POST /api/associations`` enforces the policy in the
service (``server/services/actors/founding.py``) and treats a taken slug as a conflict.
"""

from __future__ import annotations

from tests.server.test_association_create import NEW, _create, _member, _refused, _roles, _set_creators
from tests.support.world import World


async def test_sec_83_association_creation_follows_the_node_policy_and_never_takes_over(world: World) -> None:
    member = await _member(world, "bea")
    # the default policy: node admins only; a member's write token, then a node admin's read token
    await _refused(world, 403, member)
    await _refused(world, 403, await _member(world, "ana", node_admin=True, scope="read"))
    await _refused(world, 401, {})
    # every member may once the policy says so, but never over an existing association
    await _set_creators(world, "members")
    await _refused(world, 409, member, {"slug": "collectif", "name": "Collectif"})
    assert (await _roles(world, "collectif"))["bea"] == "member"
    assert (await _create(world, member)).status == 201
    assert await _roles(world, NEW["slug"]) == {"bea": "admin"}
