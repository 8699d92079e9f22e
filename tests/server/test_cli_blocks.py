"""``entraide block …`` on a node that is not running, on both engines: domain and actor blocks,
the CSV import preview then apply, export, the policy, all audited with the channel ``cli``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.cli import main
from tests.server.test_cli_admin import _audit, _cli
from tests.server.test_cli_publish import _db_url, _node

COMMANDS = ["domain", "actor", "list", "remove", "import", "export", "subscribe", "policy"]


def test_every_block_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exited:
            main(["block", command, "--help"])
        assert exited.value.code == 0
        assert "usage: entraide block" in capsys.readouterr().out


def test_blocks_from_the_command_line(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    code, out, err = _cli(capsys, "block", "domain", "Evil.Example", "--reject-media", "--config", config)
    assert (code, out) == (0, "evil.example\tsuspend\n"), err
    code, out, err = _cli(
        capsys, "block", "actor", "https://peer.example/users/troll", "--reason", "spam", "--config", config
    )
    assert code == 0, err
    lists = tmp_path / "shared.csv"
    lists.write_text(
        "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate\n"
        "noisy.example,silence,false,false,bruit,false\n",
        encoding="utf-8",
    )
    code, out, err = _cli(capsys, "block", "import", str(lists), "--config", config)
    assert (code, out) == (0, "+ noisy.example\tsilence\n") and "preview only" in err
    code, out, err = _cli(capsys, "block", "list", "--json", "--config", config)
    assert [d["domain"] for d in json.loads(out)["domains"]] == [
        "evil.example"
    ]  # the preview changed nothing
    code, out, err = _cli(capsys, "block", "import", str(lists), "--apply", "--config", config)
    assert code == 0 and "applied" in err
    code, out, err = _cli(capsys, "block", "export", "--config", config)
    assert out.splitlines()[1:] == [
        "evil.example,suspend,true,false,,false",
        "noisy.example,silence,false,false,bruit,false",
    ]
    code, out, err = _cli(capsys, "block", "policy", "--mode", "allowlist", "--config", config)
    assert out == "federation\tallowlist\tassociations created by admins\n"
    code, out, err = _cli(capsys, "block", "remove", "evil.example", "--config", config)
    assert code == 0
    code, _, err = _cli(capsys, "block", "remove", "evil.example", "--config", config)
    assert code == 1 and "not blocked" in err
    code, _, err = _cli(capsys, "block", "domain", "ex*mple.org", "--config", config)
    assert code == 1 and "not a domain" in err
    actions = [(a, c) for a, c, _, _ in _audit(url) if a.startswith(("domain.", "actor.", "node."))]
    assert actions == [
        ("domain.block", "cli"),
        ("actor.block", "cli"),
        ("domain.import", "cli"),
        ("node.policy", "cli"),
        ("domain.unblock", "cli"),
    ]
