"""Configuration: file, environment overrides, validation messages that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import main
from server.config import ConfigError, load_settings

MINIMAL = '[server]\norigin = "https://asso.example"\n[database]\nurl = "sqlite+aiosqlite:///db.sqlite3"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "entraide.toml"
    path.write_text(text)
    return path


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), environ={})
    assert settings.server.origin == "https://asso.example"
    assert settings.server.port == 8080 and settings.server.host == "127.0.0.1"
    assert settings.database.url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/db.sqlite3"
    assert settings.storage.secret_key_file == tmp_path.resolve() / "secret.key"
    assert settings.federation.allow_private_addresses is False
    assert settings.federation.network == "open"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    env = {
        "ENTRAIDE_SERVER__PORT": "9090",
        "ENTRAIDE_FEDERATION__ALLOW_PRIVATE_ADDRESSES": "true",
        "ENTRAIDE_FEDERATION__BLOCKED_DOMAINS": "evil.example, spam.example",
        "ENTRAIDE_DATABASE__URL": "postgresql+asyncpg://entraide:s3cret@db/entraide",
    }
    settings = load_settings(write(tmp_path, MINIMAL), environ=env)
    assert settings.server.port == 9090
    assert settings.federation.allow_private_addresses is True
    assert settings.federation.blocked_domains == ("evil.example", "spam.example")
    assert settings.database.dialect == "postgresql"
    assert "s3cret" not in settings.database.redacted_url()
    assert "s3cret" not in str(settings.as_document())


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    assert load_settings(None, environ={"ENTRAIDE_CONFIG": str(path)}).source == path


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (MINIMAL + "[server2]\nx = 1\n", {}, "unknown key server2"),
        (MINIMAL.replace("[database]", "colour = 1\n[database]"), {}, "unknown key server.colour"),
        (MINIMAL + '[federation]\nnetwork = "closed"\n', {}, "federation.network"),
        (MINIMAL, {"ENTRAIDE_SERVER__PORT": "eighty"}, "server.port"),
        (MINIMAL, {"ENTRAIDE_SERVER__PORT": "70000"}, "server.port"),
        (
            MINIMAL,
            {"ENTRAIDE_FEDERATION__ALLOW_PRIVATE_ADDRESSES": "maybe"},
            "federation.allow_private_addresses",
        ),
        (MINIMAL, {"ENTRAIDE_NOPE__X": "1"}, "unknown configuration section"),
        (MINIMAL, {"ENTRAIDE_SERVER__NOPE": "1"}, "unknown key server.nope"),
        (MINIMAL.replace("sqlite+aiosqlite", "mysql"), {}, "database.url"),
        (MINIMAL.replace("https://asso.example", "asso.example"), {}, "server.origin"),
        ("[server\n", {}, "not valid TOML"),
        ('[database]\nurl = "sqlite+aiosqlite:///x"\n', {}, "missing required key server.origin"),
    ],
)
def test_invalid_configuration_names_the_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(write(tmp_path, text), environ=env)
    assert message in str(excinfo.value)
    assert "Traceback" not in str(excinfo.value)


def test_missing_file_and_no_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml", environ={})
    with pytest.raises(ConfigError, match="--config"):
        load_settings(None, environ={})


def test_example_configuration_is_valid(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "deploy" / "config" / "entraide.example.toml"
    settings = load_settings(example, environ={})
    assert settings.server.origin.startswith("https://")


@pytest.mark.parametrize(
    "value",
    ['["127.0.0.1", "10.0.0.0/8"]', "127.0.0.1, 10.0.0.0/8", ' [ "127.0.0.1" , "10.0.0.0/8" ] '],
)
def test_list_settings_from_the_environment(tmp_path: Path, value: str) -> None:
    """A JSON array (as compose files write it) used to be split on commas into pieces such as
    '["127.0.0.1"' that matched no proxy: the setting was empty in effect."""
    env = {"ENTRAIDE_SERVER__TRUSTED_PROXIES": value}
    settings = load_settings(write(tmp_path, MINIMAL), environ=env)
    assert settings.server.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8")


@pytest.mark.parametrize(
    ("text", "env"),
    [
        (MINIMAL.replace("[database]", 'trusted_proxies = ["localhost"]\n[database]'), {}),
        (MINIMAL, {"ENTRAIDE_SERVER__TRUSTED_PROXIES": '["127.0.0.1",'}),
        (MINIMAL, {"ENTRAIDE_SERVER__TRUSTED_PROXIES": "10.0.0.300"}),
    ],
)
def test_a_proxy_that_cannot_match_is_an_error(tmp_path: Path, text: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies"):
        load_settings(write(tmp_path, text), environ=env)


def test_example_trusted_proxies_shown_by_config_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Path(__file__).parents[2] / "deploy" / "config" / "entraide.example.toml"
    config = write(tmp_path, example.read_text())
    assert main(["config", "check", "--offline", "--show", "--config", str(config)]) in (0, 1)
    assert 'trusted_proxies = ["127.0.0.1/32", "::1/128"]' in capsys.readouterr().out


def test_collector_settings_default_and_from_the_environment(tmp_path: Path) -> None:
    defaults = load_settings(write(tmp_path, MINIMAL), environ={}).server
    assert (defaults.gc_freeze, defaults.gc_threshold) == (True, 7000)
    env = {"ENTRAIDE_SERVER__GC_FREEZE": "false", "ENTRAIDE_SERVER__GC_THRESHOLD": "5000"}
    server = load_settings(write(tmp_path, MINIMAL), environ=env).server
    assert (server.gc_freeze, server.gc_threshold) == (False, 5000)
    with pytest.raises(ConfigError, match=r"server\.gc_threshold"):
        load_settings(write(tmp_path, MINIMAL), environ={"ENTRAIDE_SERVER__GC_THRESHOLD": "10"})


def test_event_loop_setting_defaults_to_auto_and_refuses_unknown_loops(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, MINIMAL), environ={}).server.event_loop == "auto"
    env = {"ENTRAIDE_SERVER__EVENT_LOOP": "asyncio"}
    assert load_settings(write(tmp_path, MINIMAL), environ=env).server.event_loop == "asyncio"
    with pytest.raises(ConfigError, match=r"server\.event_loop"):
        load_settings(write(tmp_path, MINIMAL), environ={"ENTRAIDE_SERVER__EVENT_LOOP": "trio"})
