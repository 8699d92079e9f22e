"""The layering is code, not folklore: server → federation → schemas, checked by import-linter; the
code type-checks under mypy --strict, passes ruff and is formatted by it."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert "Contracts: 7 kept, 0 broken." in result.stdout, result.stdout
    # decision 71: handlers call services only, and the server's own layers hold
    assert "the HTTP layer calls services only (no database, no SQL) KEPT" in result.stdout
    assert "server layers: cli, app above http, jobs above services above db" in result.stdout


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


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m ruff <args>`` at the repository's root, without a cache; skips without ruff."""
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (it comes with the test extra: pip install -e '.[test]')")
    command = [sys.executable, "-m", "ruff", *args, "--no-cache"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_code_passes_ruff() -> None:
    """ruff check over server, federation and tests (pyproject's [tool.ruff])."""
    result = _ruff("check", "server", "federation", "tests")
    assert "All checks passed!" in result.stdout, result.stdout


def test_the_code_is_formatted_by_ruff() -> None:
    """``ruff format --check`` over the Python code (pyproject's [tool.ruff], line length 110): one
    layout everywhere, so a diff shows what changed and not how an editor wrapped it."""
    _ruff("format", "--check", "server", "federation", "schemas", "tests")


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


_SESSION_QUERY = re.compile(
    r"\bsession\.(?:get|scalar|scalars|execute|add|add_all|delete|merge|flush|commit)\("
)


def test_the_http_layer_leaves_queries_to_the_services() -> None:
    """Decision 71: a handler opens a session and hands it to the services; it never queries it
    itself (import-linter keeps SQLAlchemy out of ``server/http``; this keeps the row classes that
    ``server.services.types`` names for annotations from being queried there)."""
    found = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(0)}"
        for path in sorted((ROOT / "server" / "http").rglob("*.py"))
        for text in [path.read_text(encoding="utf-8")]
        for match in _SESSION_QUERY.finditer(text)
    ]
    assert found == []


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


# Code and docs cite documents in this repository only (issue 14). The patterns name the citations that
# used to point outside it: a `shared/` path, a numbered rule or section of a STYLE or DESIGN document, the
# anchors list. `STYLESHEET` or the word "design" in prose do not match.
_CITATION_SCOPE = ("federation", "server", "schemas", "tests", "docs")
_TEXT_SUFFIXES = frozenset(
    {".py", ".json", ".md", ".sh", ".toml", ".txt", ".html", ".po", ".js", ".mjs", ".cfg"}
)
_OUTSIDE_CITATION = re.compile(
    r"(?<![\w./-])shared/"
    r"|\bSTYLE(?:\.md\b|\s+R\d|\s*§)"
    r"|\bR\d+\s+\(STYLE"
    r"|\bDESIGN(?:\.md\b|\s*§)"
    r"|\banchors\.md\b"
)
_DOCS_CITATION = re.compile(r"(?<![\w.-])docs/([\w.-]+\.md)\b")
_INTEROP_SECTION = re.compile(r'docs/interop\.md`{0,2}(?:,\s*|\s+)"([^"]+)"')
_RULE = re.compile(r"docs/architecture\.md\s+(R\d+)\b")


def _cited_files() -> list[Path]:
    this = Path(__file__).resolve()
    files = [ROOT / "README.md"]
    for top in _CITATION_SCOPE:
        for path in sorted((ROOT / top).rglob("*")):
            parts = set(path.relative_to(ROOT).parts)
            if "node_modules" in parts or "__pycache__" in parts or path.resolve() == this:
                continue
            if path.is_file() and path.suffix in _TEXT_SUFFIXES:
                files.append(path)
    return files


def test_the_scan_for_outside_citations_catches_them_and_spares_ordinary_words() -> None:
    # Given the shapes the old comments used, and words that merely look alike
    cited = [
        'see shared/interop.md "Actors"',
        "(STYLE R9)",
        "STYLE.md R3",
        "R3 (STYLE.md)",
        "(STYLE\n§3.3)",
        "DESIGN §5",
        "(DESIGN.md §4)",
        "from anchors.md",
    ]
    innocent = [
        "STYLESHEET = ...",
        "a DESIGN decision",
        "docs/architecture.md R9",
        "the node's shared inbox",
        "https://host/shared/inbox",
        "Design §4 of the spec",
    ]
    # Then only the citations are found
    assert [text for text in cited if not _OUTSIDE_CITATION.search(text)] == []
    assert [text for text in innocent if _OUTSIDE_CITATION.search(text)] == []


def test_sources_cite_no_document_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(0)!r}"
        for path in _cited_files()
        for text in [path.read_text(encoding="utf-8", errors="replace")]
        for match in _OUTSIDE_CITATION.finditer(text)
    ]
    assert found == []


def test_every_cited_document_section_and_rule_exists() -> None:
    interop_sections = set(re.findall(r"^## (.+)$", (ROOT / "docs/interop.md").read_text(), flags=re.M))
    rules = set(re.findall(r"^- \*\*(R\d+)\.", (ROOT / "docs/architecture.md").read_text(), flags=re.M))
    assert rules == {f"R{n}" for n in range(1, 13)}
    missing: list[str] = []
    for path in _cited_files():
        text = " ".join(path.read_text(encoding="utf-8", errors="replace").split())
        where = path.relative_to(ROOT)
        docs = _DOCS_CITATION.findall(text)
        missing += [f"{where}: docs/{name}" for name in docs if not (ROOT / "docs" / name).is_file()]
        sections = _INTEROP_SECTION.findall(text)
        missing += [f"{where}: interop {s!r}" for s in sections if s not in interop_sections]
        missing += [f"{where}: {rule}" for rule in _RULE.findall(text) if rule not in rules]
    assert missing == []


MAX_COMPLEXITY = 25
"""The most branches a function in server/ may have (radon's cyclomatic complexity): beyond it, a
function is split into named steps (docs/architecture.md, "Where a new feature goes")."""
COMPLEXITY_EXEMPT: frozenset[str] = frozenset()
"""Files the bound does not apply to yet (none: the last, the fan-out, was split in issue 20)."""


def test_no_function_in_the_server_has_a_complexity_above_the_bound() -> None:
    from radon.complexity import cc_visit

    too_complex = [
        f"{path.relative_to(ROOT)}:{block.lineno} {block.fullname} ({block.complexity})"
        for path in sorted((ROOT / "server").rglob("*.py"))
        if path.relative_to(ROOT).as_posix() not in COMPLEXITY_EXEMPT
        for block in cc_visit(path.read_text(encoding="utf-8"))
        if block.complexity > MAX_COMPLEXITY
    ]
    assert not too_complex, "split these into named steps:\n" + "\n".join(too_complex)
