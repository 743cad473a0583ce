"""Groups of users on SQLite and PostgreSQL: a pool shared with group:NAME follows its membership at once."""

from __future__ import annotations

import secrets

import pytest
from typer.testing import CliRunner

from taskyard.errors import Conflict, NotFound
from taskyard.models import PoolSpec

from support import default_client_of, invoke


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def test_a_pool_shared_with_a_group_follows_its_members(any_server):
    admin = any_server.client
    group, pool, user = _name("g"), _name("p"), _name("u")
    member = any_server.user_client(user)
    admin.create_group(group)
    with pytest.raises(Conflict, match="already exists"):
        admin.create_group(group)
    assert admin.add_to_group(group, user).members == [user]
    assert admin.add_to_group(group, user).members == [user]  # again: nothing changes
    admin.create_pool(PoolSpec(name=pool, shared_with=[f"group:{group}"]))
    assert pool in [p.name for p in member.pools()] and member.group(group).members == [user]
    admin.remove_from_group(group, user)
    assert pool not in [p.name for p in member.pools()]
    with pytest.raises(NotFound, match="is not in group"):
        admin.remove_from_group(group, user)
    admin.add_to_group(group, user)
    admin.delete_group(group)
    assert pool not in [p.name for p in member.pools()] and admin.pool(pool).shared_with == []
    admin.delete_pool(pool)


def test_a_removed_user_leaves_its_groups(any_server):
    admin, group, user = any_server.client, _name("g"), _name("u")
    any_server.user_client(user)
    admin.create_group(group)
    admin.add_to_group(group, user)
    admin.remove_user(user)
    assert admin.group(group).members == []


def test_groups_at_a_terminal(server, monkeypatch):
    user = _name("u")
    server.user_client(user)
    group = _name("g")
    with default_client_of(server, monkeypatch):
        cli = CliRunner()
        assert invoke(cli, "groups", "create", group).exit_code == 0
        assert invoke(cli, "groups", "add", group, user).exit_code == 0
        listed = invoke(cli, "groups", "list")
        assert group in listed.output and user in listed.output
        assert invoke(cli, "groups", "remove", group, user).exit_code == 0
        assert invoke(cli, "groups", "delete", group).exit_code == 0
        assert group not in invoke(cli, "groups", "list").output


def test_a_flow_runs_in_a_group_pool_for_members_only(server, tmp_path):
    from taskyard import bundle
    from taskyard.workflows import FlowRun
    from taskyard.workflows.models import FlowSpec, FlowStatus
    from taskyard.workflows.runs import FlowClient

    admin, group, pool = server.client, _name("g"), _name("p")
    member, stranger = server.user_client(_name("u")), server.user_client(_name("u"))
    admin.create_group(group)
    admin.add_to_group(group, member.me().name)
    admin.create_pool(PoolSpec(name=pool, shared_with=[f"group:{group}"]))
    (tmp_path / "a.py").write_text("print('a')\n")
    with bundle.pack(tmp_path) as packed:
        spec = FlowSpec(dag_flow="a", task_files={"a": "a.py"}, pool=pool,
                        bundle_sha256=packed.sha256, bundle_size=packed.size)  # fmt: skip
        ends = {}
        for who, client in (("member", member), ("stranger", stranger)):
            flows = FlowClient(client)
            info = flows.submit(spec)
            if info.upload_required:
                info = flows.upload_bundle(info.id, packed.path)
            ends[who] = FlowRun(info.id, client=client, info=info)
        assert ends["member"].wait(timeout=90) is FlowStatus.SUCCESS
        assert ends["stranger"].wait(timeout=90) is FlowStatus.FAILED
        assert f"no pool {pool!r}" in (ends["stranger"].refresh().tasks[0].reason or "")
    admin.delete_pool(pool)
    admin.delete_group(group)
