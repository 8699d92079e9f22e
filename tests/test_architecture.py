"""The layering is code, not folklore: server → federation → schemas, checked by import-linter; and the
code type-checks under mypy --strict."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 5 kept, 0 broken." in result.stdout, result.stdout


def test_the_code_type_checks_strictly(tmp_path: Path) -> None:
    """mypy --strict over federation, schemas and server (pyproject's [tool.mypy]), from nothing."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout, result.stdout


def _imports(path: Path) -> list[str]:
    """The absolute module names a source file imports (relative imports resolved)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]  # a module's, or __init__'s, package
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.append(module)
            names += [f"{module}.{alias.name}" for alias in node.names]
    return names


def _within(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def test_federation_never_imports_the_server_the_database_or_the_web_framework() -> None:
    """Checked on the source (import-linter squashes external packages, so it cannot tell
    ``aiohttp.web`` from the client that ``federation.transport`` may use)."""
    forbidden = ("server", "sqlalchemy", "alembic", "aiosqlite", "asyncpg", "aiohttp.web")
    found = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "federation").rglob("*.py"))
        for name in _imports(path)
        if _within(name, forbidden)
    }
    assert not found, sorted(found)


def test_only_the_transport_loads_aiohttp() -> None:
    """fetch and lookup name the transport's errors from federation.errors, so importing every
    module but the transport leaves aiohttp unloaded."""
    import federation

    modules = [f"federation.{name}" for name in federation.__all__ if name != "transport"]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'aiohttp' or m.startswith('aiohttp.'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_server_imports_federation_through_its_public_modules() -> None:
    """Every ``federation`` module the server imports is listed in ``federation.__all__`` (or its
    subpackage's), and never a private (``_``) module or ``federation.memory``."""
    import importlib

    import federation

    public = {f"federation.{name}" for name in federation.__all__}
    for package in ("vocab", "signatures", "compat"):
        module = importlib.import_module(f"federation.{package}")
        public |= {f"federation.{package}.{name}" for name in getattr(module, "__all__", ())}
    stray: set[str] = set()
    for path in sorted((ROOT / "server").rglob("*.py")):
        for name in _imports(path):
            if not _within(name, ("federation",)) or name == "federation":
                continue
            parts = name.split(".")
            depth = 3 if parts[1] in ("vocab", "signatures", "compat") else 2
            if ".".join(parts[:depth]) not in public:
                stray.add(f"{path.relative_to(ROOT)} imports {name}")
    assert not stray, sorted(stray)
