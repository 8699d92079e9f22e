"""Shared fixtures: every storage-touching test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.support import keypool
from tests.support.databases import PostgresRun, SqliteTemplate, pg_required
from tests.support.nodes import Node, running_node

# No network beyond loopback in any test; the security rig (`world`, `handler_spy`) for every package.
pytest_plugins = ["tests.support.socket_guard", "tests.support.world"]
ENGINES = ("sqlite", "postgresql")
keypool.install()


@pytest.fixture(autouse=True)
def _actor_keys_from_the_pool() -> None:
    """Each test's actors get distinct keys, taken again from the start of the process's pool."""
    keypool.POOL.rewind()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    template = SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))
    template.create()
    return template


@pytest.fixture(scope="session")
def postgres_run() -> Iterator[PostgresRun]:
    run = PostgresRun()
    run.create()
    yield run
    run.drop()


@pytest.fixture(params=ENGINES)
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: SqliteTemplate, postgres_run: PostgresRun
) -> AsyncIterator[str]:
    """A migrated, empty database: a fresh SQLite copy, or the run's PostgreSQL database truncated."""
    if request.param == "sqlite":
        yield sqlite_template.copy_to(tmp_path)
        return
    run = postgres_run
    if run.error:
        if pg_required():
            pytest.fail(run.error)
        pytest.skip(run.error)
    await run.reset()
    yield run.url


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest, postgres_run: PostgresRun) -> str:
    """The engine of a multi-node test (each node gets its own database of that engine)."""
    if request.param == "postgresql" and postgres_run.error:
        if pg_required():
            pytest.fail(postgres_run.error)
        pytest.skip(postgres_run.error)
    return str(request.param)


@pytest.fixture
def new_database(
    engine_name: str, tmp_path: Path, sqlite_template: SqliteTemplate, postgres_run: PostgresRun
) -> Callable[[int], Awaitable[str]]:
    """``await new_database(i)``: the i-th empty, migrated database of this test's engine."""

    async def make(index: int) -> str:
        if engine_name == "sqlite":
            return sqlite_template.copy_to(tmp_path / f"db{index}")
        return await postgres_run.database(index)

    return make


@pytest.fixture
async def node(tmp_path: Path, database_url: str) -> AsyncIterator[Node]:
    """One running node on 127.0.0.1 with its Application actor."""
    async with running_node(tmp_path / "node", database_url) as running:
        yield running
