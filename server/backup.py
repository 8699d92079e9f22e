"""Backups of a live node, and restoring one into a new data directory (docs/deploy.md).

A backup is one ``tar.gz`` file holding everything a node cannot rebuild: the database, the
node secret (it decrypts the actors' private keys: without it every actor must be re-keyed,
which peers see as an impersonation) and the uploaded media, plus ``manifest.json`` (the
origin, the schema revision, the row count of every table in the snapshot) and the effective
configuration. The file is written with mode 0600: it holds the secret.

The database snapshot is consistent while the node keeps serving and writing:

* SQLite: the online backup API (``sqlite3.Connection.backup`` in one step, under one read
  transaction; WAL writers are not blocked);
* PostgreSQL with ``pg_dump`` on the PATH: ``pg_dump --snapshot`` of a snapshot exported by a
  ``REPEATABLE READ`` transaction in which the rows are also counted, so the manifest's counts are
  the dump's;
* PostgreSQL without ``pg_dump``: the rows copied, in that same kind of transaction, into a SQLite
  database inside the archive (:func:`copy_rows`, portable across engines).

The database is snapshotted before the media are copied, so every file the snapshot refers to
is in the archive (files are only ever added, or removed once nothing refers to them).

Restoring writes a new data directory (never over an existing one): the secret, the media, an
``entraide.toml`` and the database, SQLite by default or the PostgreSQL database given, which
must be empty. A SQLite backup restored into PostgreSQL is the move from SQLite to PostgreSQL:
every row, so every IRI and key, is kept.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import Table, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server import __version__
from server.config import SQLITE_FILE_NAME, DatabaseSettings, Settings, render_toml
from server.db import migrate
from server.db.engine import create_engine
from server.db.models import Base

FORMAT = 1
MANIFEST = "manifest.json"
CONFIG = "entraide.toml"
SECRET = "secret.key"
MEDIA = "media"
SQLITE_DB = "database.sqlite3"
PG_DUMP = "database.pgdump"
_COPY_BATCH = 500
_TOOL_TIMEOUT_S = 3600.0


class BackupError(Exception):
    """A backup or restore cannot proceed; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a backup holds: checked by ``restore`` and by the restored node's consistency check."""

    origin: str
    revision: str | None
    dialect: str
    database: str
    """Archive member with the database: :data:`SQLITE_DB` or :data:`PG_DUMP`."""
    row_counts: dict[str, int]
    created_at: str
    version: str
    format: int = FORMAT

    def to_json(self) -> bytes:
        return json.dumps({f: getattr(self, f) for f in self.__slots__}, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BackupError(f"not an Entraide backup of format {FORMAT}")
        return cls(**{f: data[f] for f in cls.__slots__})


# --- rows ----------------------------------------------------------------------------------------


def _tables() -> list[Table]:
    """The tables whose rows are the data; derived ones (counters kept by triggers, migration
    0014) are rebuilt by those triggers as the rows are copied, so they are neither copied nor
    compared."""
    return [t for t in Base.metadata.sorted_tables if not t.info.get("derived")]


async def count_rows(conn: AsyncConnection) -> dict[str, int]:
    """Rows per table, as seen by ``conn``'s transaction."""
    counts: dict[str, int] = {}
    for table in _tables():
        counts[table.name] = int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
    return counts


async def copy_rows(source: AsyncConnection, target: AsyncConnection) -> None:
    """Copy every row of every table, parents first, in batches; ids are kept.

    ``target`` must be at the same schema revision and empty. On PostgreSQL the id sequences
    are moved past the copied ids, or the next insert would collide with a restored row.
    """
    for table in _tables():
        result = await source.stream(select(table))
        async for batch in result.mappings().partitions(_COPY_BATCH):
            await target.execute(table.insert(), [dict(row) for row in batch])
    # Fresh statistics, or PostgreSQL plans the outbox's keyset pages over millions of rows it
    # believes absent as a sort of everything (decision 46).
    await target.execute(text("ANALYZE"))
    if target.dialect.name == "postgresql":
        for table in _tables():
            for column in table.primary_key.columns:
                if column.autoincrement is True or (
                    column.autoincrement == "auto" and column.type.python_type is int
                ):
                    await target.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                            f"COALESCE(MAX({column.name}), 1), MAX({column.name}) IS NOT NULL) "
                            f"FROM {table.name}"
                        )
                    )


async def _repeatable_read(engine: AsyncEngine) -> AsyncConnection:
    conn = await engine.connect()
    return await conn.execution_options(isolation_level="REPEATABLE READ")


# --- backup --------------------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(database)


def _sqlite_online_backup(source: Path, target: Path) -> dict[str, int]:
    """Copy a live SQLite database with the online backup API; count the copy's rows."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # pages=-1: one step, one read transaction, a consistent copy
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        return {t.name: int(dst.execute(f'SELECT count(*) FROM "{t.name}"').fetchone()[0]) for t in _tables()}
    finally:
        dst.close()
        src.close()


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL for pg_dump/pg_restore without the password, which goes in the environment."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


async def _run_tool(*args: str, env: Mapping[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *args, env=dict(env), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=_TOOL_TIMEOUT_S)
    if process.returncode != 0:
        raise BackupError(f"{args[0]} failed: {stderr.decode(errors='replace').strip()[:500]}")


async def _postgres_snapshot(
    settings: DatabaseSettings, workdir: Path, *, pg_dump: str | None
) -> tuple[str, dict[str, int], str | None]:
    engine = create_engine(settings)
    try:
        revision = await migrate.current_revision(engine)
        conn = await _repeatable_read(engine)
        try:
            async with conn.begin():
                counts = await count_rows(conn)
                if pg_dump is not None:
                    snapshot = (await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
                    url, env = _libpq(settings.url)
                    await _run_tool(
                        pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                        f"--snapshot={snapshot}", f"--file={workdir / PG_DUMP}", f"--dbname={url}",
                        env=env,
                    )  # fmt: skip
                    return PG_DUMP, counts, revision
                await _copy_into_sqlite(conn, workdir / SQLITE_DB, revision)
                return SQLITE_DB, counts, revision
        finally:
            await conn.close()
    finally:
        await engine.dispose()


async def _copy_into_sqlite(source: AsyncConnection, path: Path, revision: str | None) -> None:
    if revision != migrate.head_revision():
        raise BackupError(
            f"the database is at revision {revision}, this Entraide expects {migrate.head_revision()}: "
            "run `entraide migrate` first, or install pg_dump"
        )
    target = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate.upgrade(target)
        async with target.begin() as conn:
            await copy_rows(source, conn)
    finally:
        await target.dispose()


def _add_tree(archive: tarfile.TarFile, root: Path, name: str) -> None:
    """Add the media files as they are now; one that disappears meanwhile was unreferenced."""
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            try:
                archive.add(path, arcname=f"{name}/{path.relative_to(root).as_posix()}", recursive=False)
            except FileNotFoundError:
                continue


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(datetime.now(UTC).timestamp())
    archive.addfile(info, io.BytesIO(data))


def _restorable_config(settings: Settings) -> dict[str, Any]:
    """The effective configuration with the paths made relative to a restored data directory."""
    doc = settings.as_document(redact=True)
    doc["storage"].update(data_dir=".", secret_key_file=SECRET)
    doc["media"]["dir"] = MEDIA
    if doc["media"].get("s3_secret_key"):
        doc["media"]["s3_secret_key"] = ""  # redacted: give it again (ENTRAIDE_MEDIA__S3_SECRET_KEY)
    return doc


async def create_backup(settings: Settings, target: Path, *, pg_dump: str | None = "auto") -> Manifest:
    """Write a backup of the node described by ``settings`` to ``target`` (atomically, mode 0600).

    ``pg_dump``: the program to use on PostgreSQL; ``"auto"`` finds it on the PATH, ``None``
    copies the rows into a SQLite database instead.

    Raises:
        BackupError: the database or the node secret cannot be read, or pg_dump failed.
    """
    if pg_dump == "auto":
        pg_dump = shutil.which("pg_dump")
    secret = settings.storage.secret_key_file
    if not secret.is_file():
        raise BackupError(f"{secret}: node secret not found; a backup without it cannot restore the keys")
    target = await asyncio.to_thread(target.resolve)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".entraide-backup-", dir=target.parent) as tmp:
        workdir = Path(tmp)
        if settings.database.dialect == "sqlite":
            database = SQLITE_DB
            source = _sqlite_path(settings.database.url)
            counts = await asyncio.to_thread(_sqlite_online_backup, source, workdir / SQLITE_DB)
            revision = (
                sqlite3.connect(workdir / SQLITE_DB)
                .execute("SELECT version_num FROM alembic_version")
                .fetchone()[0]
            )
        else:
            database, counts, revision = await _postgres_snapshot(settings.database, workdir, pg_dump=pg_dump)
        manifest = Manifest(
            origin=settings.server.origin,
            revision=revision,
            dialect=settings.database.dialect,
            database=database,
            row_counts=counts,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            version=__version__,
        )
        partial = workdir / "backup.tar.gz"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
            _add_bytes(archive, MANIFEST, manifest.to_json())
            _add_bytes(archive, CONFIG, render_toml(_restorable_config(settings)).encode())
            _add_bytes(archive, SECRET, secret.read_bytes())
            archive.add(workdir / database, arcname=database, recursive=False)
            await asyncio.to_thread(_add_tree, archive, settings.media.dir, MEDIA)
        os.replace(partial, target)
    return manifest


# --- restore -------------------------------------------------------------------------------------


def _safe_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Regular files with plain relative names only: a crafted archive writes nowhere else."""
    members: list[tarfile.TarInfo] = []
    for member in archive.getmembers():
        path = PurePosixPath(member.name)
        if not member.isfile() or path.is_absolute() or ".." in path.parts:
            raise BackupError(f"refusing archive member {member.name!r}")
        members.append(member)
    return members


def read_manifest(archive_path: Path) -> Manifest:
    try:
        with tarfile.open(archive_path, mode="r:gz") as archive:
            member = archive.extractfile(MANIFEST)
            if member is None:
                raise BackupError(f"{archive_path}: no {MANIFEST}")
            return Manifest.from_json(member.read())
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise BackupError(f"{archive_path}: not a readable Entraide backup ({exc})") from None


async def _restore_database(manifest: Manifest, staged: Path, url: str) -> None:
    dump = staged / manifest.database
    target_settings = DatabaseSettings(url=url, pool_size=2, echo=False)
    if manifest.database == PG_DUMP:
        if target_settings.dialect != "postgresql":
            raise BackupError(
                "this backup is a pg_dump: restore it with --database-url postgresql+asyncpg://…"
            )
        pg_restore = shutil.which("pg_restore")
        if pg_restore is None:
            raise BackupError("pg_restore is needed to restore this backup (Debian: postgresql-client)")
        await _require_empty(target_settings)
        libpq, env = _libpq(url)
        await _run_tool(
            pg_restore, "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
            f"--dbname={libpq}", str(dump), env=env,
        )  # fmt: skip
        return
    if target_settings.dialect == "sqlite":
        path = _sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            raise BackupError(f"{path} exists: restore into a new database")
        shutil.copyfile(dump, path)
        return
    await _require_empty(target_settings)
    source = create_async_engine(f"sqlite+aiosqlite:///{dump}")
    target = create_engine(target_settings)
    try:
        if manifest.revision != migrate.head_revision():
            raise BackupError(
                f"the backup is at revision {manifest.revision}, this Entraide expects "
                f"{migrate.head_revision()}: restore it into SQLite, run `entraide migrate`, "
                "back it up again, then restore into PostgreSQL"
            )
        await migrate.upgrade(target)
        async with source.connect() as src, target.begin() as dst:
            await copy_rows(src, dst)
    finally:
        await source.dispose()
        await target.dispose()


async def _require_empty(settings: DatabaseSettings) -> None:
    engine = create_engine(settings)
    try:
        if await migrate.current_revision(engine) is None:
            return
        async with engine.connect() as conn:
            counts = await count_rows(conn)
    finally:
        await engine.dispose()
    full = sorted(name for name, count in counts.items() if count)
    if full:
        raise BackupError(f"the target database is not empty ({', '.join(full)}): restore into an empty one")


async def restore_backup(archive_path: Path, data_dir: Path, *, database_url: str | None = None) -> Manifest:
    """Restore ``archive_path`` into the new directory ``data_dir``; returns its manifest.

    ``database_url``: where the database goes (default: ``data_dir/entraide.sqlite3``); a
    PostgreSQL database must be empty (migrated or not).

    Raises:
        BackupError: ``data_dir`` is not empty, the archive is not a valid backup, or the
            target database cannot take it.
    """
    manifest = read_manifest(archive_path)
    data_dir = await asyncio.to_thread(data_dir.resolve)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"{data_dir} is not empty: restore into a new directory")
    url = database_url or f"sqlite+aiosqlite:///{data_dir / SQLITE_FILE_NAME}"
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".entraide-restore-", dir=data_dir.parent) as tmp:
        staged = Path(tmp)
        with tarfile.open(archive_path, mode="r:gz") as archive:
            archive.extractall(staged, members=_safe_members(archive), filter="data")
        await _restore_database(manifest, staged, url)
        secret = data_dir / SECRET
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write((staged / SECRET).read_bytes())
        if (staged / MEDIA).is_dir():
            shutil.copytree(staged / MEDIA, data_dir / MEDIA)
        config = tomllib.loads((staged / CONFIG).read_text("utf-8"))
        config["database"]["url"] = url
        fd = os.open(data_dir / CONFIG, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # may hold a password
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(render_toml(config))
    return manifest
