"""The command line, as an operator uses it, on both engines."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from server.cli import build_parser, main
from server.db.models import ActorKey, Base

ORIGIN = "http://127.0.0.1:8080"


def _subcommand_paths(parser, prefix=()):  # type: ignore[no-untyped-def]
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subcommand_paths(sub, (*prefix, name))


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    paths = list(_subcommand_paths(build_parser()))
    for required in [
        ("init",),
        ("serve",),
        ("migrate",),
        ("config", "check"),
        ("association", "create"),
        ("member", "add"),
        ("token", "create"),
    ]:
        assert required in paths
    for path in [(), *paths]:
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        assert exit_info.value.code == 0
        assert "usage: entraide" in capsys.readouterr().out


def _init(data_dir: Path, database_url: str | None) -> int:
    args = ["init", "--data-dir", str(data_dir), "--origin", ORIGIN]
    if database_url and database_url.startswith("postgresql"):
        args += ["--database", database_url]
    return main(args)


async def _counts(url: str) -> dict[str, int]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                t.name: (await conn.execute(select(func.count()).select_from(t))).scalar_one()
                for t in Base.metadata.sorted_tables
            }
    finally:
        await engine.dispose()


def _db_url(data_dir: Path, database_url: str) -> str:
    return (
        database_url
        if database_url.startswith("postgresql")
        else f"sqlite+aiosqlite:///{data_dir}/entraide.sqlite3"
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_init_is_idempotent(tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    data_dir = tmp_path / "data"
    assert _init(data_dir, database_url) == 0
    config, secret = data_dir / "entraide.toml", data_dir / "secret.key"
    assert config.exists() and oct(secret.stat().st_mode & 0o777) == "0o600"
    before = (_digest(config), _digest(secret), asyncio.run(_counts(_db_url(data_dir, database_url))))
    assert before[2]["actors"] == 1 and before[2]["actor_keys"] == 2
    assert _init(data_dir, database_url) == 0
    after = (_digest(config), _digest(secret), asyncio.run(_counts(_db_url(data_dir, database_url))))
    assert after == before
    capsys.readouterr()
    # A different origin is refused: IRIs minted under the first one are permanent.
    assert main(["init", "--data-dir", str(data_dir), "--origin", "https://other.example"]) == 1
    assert "origin is permanent" in capsys.readouterr().err


def test_association_member_token_flow(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    _init(data_dir, database_url)
    config = str(data_dir / "entraide.toml")
    capsys.readouterr()
    assert main(["association", "create", "demo", "--name", "Démo", "--config", config]) == 0
    assert capsys.readouterr().out.strip() == f"{ORIGIN}/groups/demo"
    assert main(["association", "create", "demo", "--name", "Démo", "--config", config]) == 0  # again: no-op
    assert main(["association", "create", "demo", "--name", "Autre", "--config", config]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["association", "create", "Bad Slug", "--name", "x", "--config", config]) == 1
    assert "slug" in capsys.readouterr().err
    assert (
        main(["member", "add", "alice", "--association", "demo", "--role", "admin", "--config", config]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{ORIGIN}/users/alice" and out[1].startswith("password: ")
    assert (
        main(["member", "add", "bob", "--association", "nowhere", "--role", "member", "--config", config])
        == 1
    )
    assert "does not exist" in capsys.readouterr().err
    assert main(["token", "create", "alice", "--scope", "admin", "--config", config]) == 0
    token = capsys.readouterr().out
    assert token.count("\n") == 1 and token.startswith("ent_")
    assert main(["token", "create", "nobody", "--config", config]) == 1


def test_member_password_from_stdin(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "data"
    _init(data_dir, database_url)
    config = str(data_dir / "entraide.toml")
    main(["association", "create", "demo", "--name", "Démo", "--config", config])
    env = {**os.environ, "ENTRAIDE_CONFIG": config}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "server",
            "member",
            "add",
            "carol",
            "--association",
            "demo",
            "--role",
            "member",
            "--password-stdin",
        ],
        input="a long enough secret\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "password" not in result.stdout


def test_private_keys_are_encrypted_at_rest(tmp_path: Path, database_url: str) -> None:
    import asyncio

    data_dir = tmp_path / "data"
    _init(data_dir, database_url)

    async def blobs() -> list[bytes]:
        engine = create_async_engine(_db_url(data_dir, database_url))
        try:
            async with engine.connect() as conn:
                return [row[0] for row in await conn.execute(select(ActorKey.private_key_encrypted))]
        finally:
            await engine.dispose()

    for blob in asyncio.run(blobs()):
        assert b"PRIVATE KEY" not in blob and not blob.startswith(b"-----")


def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "server",
            "init",
            "--data-dir",
            str(tmp_path / "d"),
            "--origin",
            ORIGIN,
            "--database",
            "postgresql+asyncpg://nobody@127.0.0.1:1/none",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("entraide: error: cannot connect to the database")
    assert "Traceback" not in result.stderr


def test_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "entraide.toml"
    path.write_text(
        '[server]\norigin = "https://a.example"\nport = "x"\n[database]\nurl = "sqlite+aiosqlite:///x"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "server", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "server.port" in result.stderr and "Traceback" not in result.stderr


def test_config_check_and_migrate(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    _init(data_dir, database_url)
    config = str(data_dir / "entraide.toml")
    capsys.readouterr()
    assert main(["config", "check", "--config", config, "--show"]) == 0
    out = capsys.readouterr().out
    assert "configuration is valid" in out and "[federation]" in out
    assert main(["migrate", "--config", config]) == 0
    assert "already at" in capsys.readouterr().out


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    import asyncio

    data_dir = tmp_path / "data"
    _init(data_dir, None)

    async def wipe() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir}/entraide.sqlite3")
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = 'old'"))
        await engine.dispose()

    asyncio.run(wipe())
    assert main(["serve", "--config", str(data_dir / "entraide.toml")]) == 1


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A peer that refuses every request with 401 and a problem document."""

    def do_GET(self) -> None:
        body = b'{"type": "about:blank", "status": 401, "detail": "cannot fetch the key of this node"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_follow_says_why_it_failed_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused private address names the setting that allows it; a 401 says what the peer said."""
    guarded, open_ = tmp_path / "guarded", tmp_path / "open"
    _init(guarded, None)
    assert main(["init", "--data-dir", str(open_), "--origin", ORIGIN, "--allow-private-addresses"]) == 0
    for data_dir in (guarded, open_):
        config = str(data_dir / "entraide.toml")
        assert main(["association", "create", "demo", "--name", "Demo", "--config", config]) == 0
    capsys.readouterr()
    peer = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=peer.serve_forever, daemon=True).start()
    try:
        target = f"http://127.0.0.1:{peer.server_address[1]}/groups/x"
        assert main(["follow", target, "--as", "demo", "--config", str(guarded / "entraide.toml")]) == 1
        refused = capsys.readouterr().err
        assert "federation.allow_private_addresses" in refused and "Traceback" not in refused
        assert main(["follow", target, "--as", "demo", "--config", str(open_ / "entraide.toml")]) == 1
        unauthorized = capsys.readouterr().err
        assert "401" in unauthorized and "cannot fetch the key of this node" in unauthorized
        assert "Traceback" not in unauthorized
    finally:
        peer.shutdown()
        peer.server_close()
