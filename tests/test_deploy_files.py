"""The deploy files pass their linters: hadolint, the Compose spec's JSON Schema, systemd, nginx.

Each linter runs on the files as shipped; what a test machine lacks is replaced in a copy (the
entraide executable's path for ``systemd-analyze verify``, a self-signed certificate and
temporary paths for ``nginx -t``). A missing tool skips its test locally with a message and
fails under CI, where deploy/scripts/test.sh installs it.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE_SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec" / "compose-spec.json"


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        message = f"{name} not installed (deploy/scripts/test.sh installs it under CI)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_dockerfile_passes_hadolint() -> None:
    dockerfile = DEPLOY / "docker" / "Dockerfile"
    result = _run(_tool("hadolint"), "--no-color", "--failure-threshold", "info", str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["compose.yaml", "compose.sqlite.yaml"])
def test_compose_file_matches_the_compose_spec(name: str) -> None:
    document = yaml.safe_load((DEPLOY / name).read_text())
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=str)
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    for service in document["services"].values():  # files the compose file mounts exist
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source


def test_compose_sets_only_known_settings() -> None:
    """Every ENTRAIDE_SECTION__KEY a compose file sets is a real setting with a valid value."""
    from server.config import build_settings

    for name in ("compose.yaml", "compose.sqlite.yaml"):
        document = yaml.safe_load((DEPLOY / name).read_text())
        for service in document["services"].values():
            env = {k: str(v) for k, v in service.get("environment", {}).items() if k.count("__") == 1}
            env = {k: v.replace("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}", "pw") for k, v in env.items()}
            raw = {"server": {"origin": "https://asso.example"}, "database": {"url": "sqlite+aiosqlite:///x"}}
            build_settings(raw, base_dir=Path("/tmp"), environ=env)


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    entraide = Path(sys.executable).parent / "entraide"
    units = []
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        text = unit.read_text().replace("/opt/entraide/bin/entraide", str(entraide))
        name = unit.name.replace("@.", "@1.")  # verify an instance of each template
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))
        if "@" in unit.name:
            sandbox = ("NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/entraide")
            for setting in sandbox:
                assert setting in text, f"{unit.name}: {setting}"
            assert "User=entraide" in text
    result = _run(analyze, "verify", *units)
    # Unknown keys are only warnings (exit 0): any output is a failure.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stderr


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asso.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_nginx_configuration_passes_nginx_t(tmp_path: Path) -> None:
    nginx = _tool("nginx")
    cert, key = _self_signed(tmp_path)
    site = (
        (DEPLOY / "nginx" / "entraide.conf")
        .read_text()
        .replace("/etc/letsencrypt/live/asso.example/fullchain.pem", str(cert))
        .replace("/etc/letsencrypt/live/asso.example/privkey.pem", str(key))
        .replace("/var/cache/nginx/entraide", str(tmp_path / "cache"))
    )
    (tmp_path / "entraide.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path}/entraide.conf;\n}}\n"
    )
    result = _run(nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"))
    assert result.returncode == 0, result.stderr


def test_grafana_dashboard_queries_metrics_the_node_exports() -> None:
    import re

    from server.metrics import create_metrics

    dashboard = json.loads((DEPLOY / "grafana" / "entraide-dashboard.json").read_text())
    exported = {
        family.name + suffix
        for family in create_metrics().registry.collect()
        for suffix in ("", "_total", "_bucket", "_count", "_sum")
    }
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"entraide_[a-z_]+", target["expr"])
    }
    assert queried and queried <= exported, queried - exported
