"""Plumbing shared by the benchmarks: the machine, processes, nodes, databases, tables, profiles.

Every server a benchmark starts is a subprocess on 127.0.0.1 with its output in a log file, is
stopped (SIGTERM, then SIGKILL) when its ``with`` block ends, and every wait has a deadline.
Nothing here sends traffic anywhere but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
PACKAGES = ("aiohttp", "SQLAlchemy", "aiosqlite", "asyncpg", "cryptography", "orjson", "PyLD", "uvloop")
AP = "application/activity+json"


# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _pg_version() -> str:
    try:
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-Atc", "show server_version"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip().split()[0] if out.returncode == 0 and out.stdout.strip() else "n/a"
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"


def _git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "server", "federation", "schemas"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + (" + uncommitted changes in server/federation/schemas" if dirty else "")


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: cores, CPU, RAM, Python, package versions, load."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return {
        "nproc": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "ram_gib": round(_ram_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _pg_version(),
        "packages": versions,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "rsa2048_sign_ms": round(rsa_sign_ms(), 3),
        "revision": _git_revision(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def rsa_sign_ms(count: int = 300) -> float:
    """CPU milliseconds of one RSA-2048 PKCS#1 v1.5 signature here, as ``KeyPair.sign`` makes them.

    The hosts this project is measured on sign from 0.21 to 0.93 ms (``openssl speed rsa2048``), and
    every fan-out time follows: printed with each run, it lets runs of different nights be compared.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key.sign(b"warm-up", padding.PKCS1v15(), hashes.SHA256())
    start = time.process_time()
    for i in range(count):
        key.sign(b"signing string %d" % i, padding.PKCS1v15(), hashes.SHA256())
    return 1000 * (time.process_time() - start) / count


def print_machine(info: dict[str, Any], layout: str) -> None:
    pkgs = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    print(
        f"machine: {info['nproc']} CPU ({info['cpu']}), {info['ram_gib']} GiB RAM, Linux {info['kernel']}, "
        f"Python {info['python']}, SQLite {info['sqlite']}, PostgreSQL {info['postgresql']}"
    )
    print(f"packages: {pkgs}")
    print(f"code: {info['revision']}; event loops: {loops()}")
    print(f"layout: {layout}; load average before the run: {info['loadavg_1m']}")
    print(f"RSA-2048: {info['rsa2048_sign_ms']:.2f} ms of CPU per signature on this host")
    if info["loadavg_1m"] > 0.5 * (info["nproc"] or 1):
        print("WARNING: the machine is busy (load average); numbers will be noisy, ratios less so")
    print(flush=True)


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (readable in a terminal, pasteable in docs/performance.md)."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines.extend(
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells[1:]
    )
    return "\n".join(lines)


def verdict(value: float | None, target: float, *, higher_is_better: bool = True) -> str:
    if value is None:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "MET" if ok else "MISSED"


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=str))


# ---------------------------------------------------------------------------------------------
# Ports and CPU layout
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Layout:
    """Which CPUs the server under test and the load generator may use (None: no pinning)."""

    server: frozenset[int] | None
    client: frozenset[int] | None

    @classmethod
    def choose(cls, pin: bool) -> Layout:
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2:
            return cls(None, None)
        return cls(frozenset(cpus[1:]), frozenset(cpus[:1]))

    def describe(self) -> str:
        if self.server is None:
            return "no CPU pinning (server and load generator share every core)"
        return (
            f"server process pinned to CPU {sorted(self.server)}, load generator and helpers to CPU "
            f"{sorted(self.client or ())} (PostgreSQL unpinned)"
        )

    def pin_client(self) -> None:
        if self.client is not None:
            os.sched_setaffinity(0, self.client)


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def bench_env(**extra: str) -> dict[str, str]:
    """This environment without inherited Entraide settings (like tests/support/processes.cli_env)."""
    env = {k: v for k, v in os.environ.items() if not (k.startswith("ENTRAIDE_") and "__" in k)}
    env.pop("ENTRAIDE_CONFIG", None)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    node_loop = os.environ.get(NODE_LOOP_ENV)
    if node_loop:  # the node's server.event_loop (decision 105); its default otherwise
        env["ENTRAIDE_SERVER__EVENT_LOOP"] = node_loop
    env.update(extra)
    return env


# Which event loop the processes of a run use (decision 105): the node's ``server.event_loop``
# (unset: its default, uvloop where installed), and the reference servers' (servers.py: the bare
# verifier, the static server, the fake hosts; default asyncio, as in every earlier run).
# The fake hosts of bench_fanout stand for other machines: uvloop where installed, unless
# FAKE_HOSTS_LOOP_ENV says otherwise.
NODE_LOOP_ENV = "ENTRAIDE_BENCH_NODE_LOOP"
REFERENCE_LOOP_ENV = "ENTRAIDE_BENCH_REFERENCE_LOOP"
FAKE_HOSTS_LOOP_ENV = "ENTRAIDE_BENCH_FAKE_HOSTS_LOOP"
PROFILE_ON_CPU_ENV = "ENTRAIDE_BENCH_PROFILE_ON_CPU"


def uvloop_installed() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loops() -> str:
    """What the run's processes loop on, for the header of every benchmark."""
    installed = "uvloop" if uvloop_installed() else "asyncio"
    node = os.environ.get(NODE_LOOP_ENV) or "asyncio (default)"
    references = os.environ.get(REFERENCE_LOOP_ENV) or "asyncio"
    fake_hosts = os.environ.get(FAKE_HOSTS_LOOP_ENV) or installed
    return f"node {node}, references {references}, fake hosts {fake_hosts}"


def py_spy_path() -> str | None:
    candidate = Path(PYTHON).parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    from shutil import which

    return which("py-spy")


class Proc:
    """A server subprocess: output to ``log``, optionally pinned, optionally under ``py-spy record``.

    Under py-spy the server is py-spy's child: :attr:`pid` is the server's own pid (RSS and CPU
    are read from it), and stopping the server makes py-spy write its profile and exit.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        log: Path,
        cpus: frozenset[int] | None = None,
        env: dict[str, str] | None = None,
        profile_to: Path | None = None,
        profile_rate: int = 100,
        cwd: Path = ROOT,
        stdin_pipe: bool = False,
    ) -> None:
        self.args = list(args)
        self.cwd = cwd
        self.stdin_pipe = stdin_pipe  # for servers that exit when their standard input closes
        self.log = log
        self.cpus = cpus
        self.env = env if env is not None else bench_env()
        self.profile_to = profile_to
        self.profile_rate = profile_rate
        self.popen: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("ab")
        command = list(self.args)
        if self.profile_to is not None:
            spy = py_spy_path()
            if spy is None:
                raise RuntimeError("--profile needs py-spy (pip install py-spy)")
            # --gil samples where the Python CPU goes but under-counts native work that keeps the GIL
            # (an RSA signature): PROFILE_ON_CPU_ENV=1 samples every thread on the CPU instead.
            gil = [] if os.environ.get(PROFILE_ON_CPU_ENV) == "1" else ["--gil"]
            command = [
                spy, "record", *gil, "--threads", "--format", "raw", "--rate", str(self.profile_rate),
                "--output", str(self.profile_to), "--", *command,
            ]  # fmt: skip
        cpus = self.cpus
        self.popen = subprocess.Popen(
            command,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.PIPE if self.stdin_pipe else subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        """The server's pid (py-spy's child when profiling)."""
        assert self.popen is not None
        if self.profile_to is None:
            return self.popen.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = _children(self.popen.pid)
            if children:
                return children[0]
            time.sleep(0.05)
        raise RuntimeError("py-spy did not start the server")

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def peak_rss_mb(self) -> float | None:
        return _status_kb(self.pid, "VmHWM")

    def rss_mb(self) -> float | None:
        return _status_kb(self.pid, "VmRSS")

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.pid)

    def tree_cpu_seconds(self) -> float | None:
        """CPU seconds of the server and of its running descendants (a worker's signing pool)."""
        own = cpu_seconds(self.pid)
        if own is None:
            return None
        pending, total = _children(self.pid), own
        while pending:
            child = pending.pop()
            total += cpu_seconds(child) or 0.0
            pending.extend(_children(child))
        return total

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the server (graceful), then SIGKILL what is left; py-spy then writes its file."""
        if self.popen is None:
            return
        try:
            if self.popen.poll() is None:
                target = self.pid if self.profile_to is not None else self.popen.pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(target, signal.SIGTERM)
                try:
                    self.popen.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.popen.pid, signal.SIGKILL)
                    self.popen.wait(10)
        finally:
            if self.popen.stdin is not None:
                with contextlib.suppress(OSError):
                    self.popen.stdin.close()
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def __enter__(self) -> Proc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found.extend(int(t) for t in text)
    except OSError:
        pass
    return found


def _status_kb(pid: int, field_name: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int | None = None) -> float | None:
    """User+system CPU seconds of ``pid`` (this process when None)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        return None


async def wait_http(
    url: str, proc: Proc | None = None, *, timeout_s: float = 30.0, headers: Any = None
) -> None:
    """Poll ``url`` until it answers < 500; fail if ``proc`` exits or after ``timeout_s``."""
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if proc is not None and not proc.alive:
                raise RuntimeError(f"the server for {url} exited:\n{proc.tail()}")
            try:
                async with http.get(url, headers=headers) as response:
                    if response.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{url} did not answer within {timeout_s} s\n{proc.tail() if proc else ''}"
                )
            await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# Entraide nodes through the command line (as an operator would)
# ---------------------------------------------------------------------------------------------


def cli(*args: str, stdin: str | None = None, timeout_s: float = 120.0) -> str:
    """Run ``python -m server ARGS``; return stdout, raise with stderr on failure."""
    done = subprocess.run(
        [PYTHON, "-m", "server", *args],
        cwd=ROOT,
        env=bench_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        raise RuntimeError(f"entraide {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout.strip()


@dataclass
class NodeSetup:
    """A node created with ``entraide init`` (not running): its config and origin."""

    data_dir: Path
    port: int
    database_url: str
    config: Path = field(init=False)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def init(self) -> NodeSetup:
        out = cli(
            "init", "--data-dir", str(self.data_dir), "--origin", self.origin,
            "--database", self.database_url, "--allow-private-addresses", "--node-name", "bench",
        )  # fmt: skip
        self.config = Path(out.splitlines()[-1])
        return self

    def configure(self, section: str, **values: float | int | bool) -> NodeSetup:
        """Set scalar keys of one ``[section]`` of the config ``init`` wrote (before ``serve``)."""
        lines = [f"{key} = {str(v).lower() if isinstance(v, bool) else v}" for key, v in values.items()]
        text = self.config.read_text()
        header = f"[{section}]\n"
        if header in text:
            text = text.replace(header, header + "".join(line + "\n" for line in lines), 1)
        else:
            text = text.rstrip("\n") + f"\n\n{header}" + "".join(line + "\n" for line in lines)
        self.config.write_text(text)
        return self

    def serve_args(self) -> list[str]:
        return [PYTHON, "-m", "server", "serve", "--config", str(self.config)]

    def association(self, slug: str) -> str:
        return cli("association", "create", slug, "--name", slug.title(), "--config", str(self.config))

    def admin_token(self, slug: str, username: str = "benchadmin") -> str:
        cli(
            "member", "add", username, "--association", slug, "--role", "admin", "--password-stdin",
            "--config", str(self.config), stdin="bench password 1234\n",
        )  # fmt: skip
        return cli("token", "create", username, "--scope", "write", "--config", str(self.config))


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'entraide.sqlite3'}"


# ---------------------------------------------------------------------------------------------
# PostgreSQL: a fresh database per benchmark, dropped afterwards
# ---------------------------------------------------------------------------------------------

PG_ADMIN_URL = os.environ.get("ENTRAIDE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _pg_url(name: str) -> str:
    return PG_ADMIN_URL.rpartition("/")[0] + "/" + name


async def _pg_admin(statement: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def pg_database(label: str) -> Any:
    """Yield the URL of a new empty PostgreSQL database (None when PostgreSQL is unreachable)."""
    name = f"entraide_bench_{label}_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        await asyncio.wait_for(_pg_admin(f'CREATE DATABASE "{name}"'), 15)
    except Exception as exc:
        print(f"PostgreSQL unavailable at {PG_ADMIN_URL}: {str(exc).splitlines()[0][:200]}")
        yield None
        return
    try:
        yield _pg_url(name)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'), 30)


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


# ---------------------------------------------------------------------------------------------
# py-spy profiles, summarised
# ---------------------------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

AREAS: tuple[tuple[str, str], ...] = (
    ("sqlalchemy/", "SQLAlchemy"),
    ("aiosqlite/", "aiosqlite: SQLite thread running (pinned core) + hand-offs"),
    ("sqlite3/", "sqlite3 driver"),
    ("asyncpg/", "asyncpg"),
    ("aiohttp/", "aiohttp"),
    ("cryptography/", "cryptography"),
    ("logging/", "logging"),
    ("json/", "json (stdlib)"),
    ("jsonschema/", "jsonschema"),
    ("pyld/", "pyld"),
    ("federation/", "federation (ours)"),
    ("server/", "server (ours)"),
    ("asyncio/", "asyncio event loop"),
    ("concurrent/", "threads/futures"),
    ("threading.py", "threads/futures"),
    ("queue.py", "threads/futures"),
)


def _area(file: str) -> str | None:
    for marker, name in AREAS:
        if file.startswith(marker) or f"/{marker}" in file:
            return name
    return None


def summarise_profile(path: Path, *, top: int = 18) -> str:
    """Read py-spy's raw (collapsed) output and say where the server's time went.

    Startup (imports) is left out. Reports the share of samples per thread, per *area* (the
    innermost frame that belongs to a known package), per *phase* (inbox request handler, worker
    job, other), and the functions with the most inclusive and self time.
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        return f"(no profile: {exc})"
    threads: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        frames = stack_text.split(";")
        if any("_find_and_load" in f for f in frames):
            continue  # imports at startup
        count = int(count_text)
        total += count
        thread = frames[0].split(":", 1)[-1].strip() if frames[0].startswith("thread") else "?"
        thread = "aiosqlite/driver threads" if thread.startswith("Thread-") else thread
        threads[thread] += count
        parsed = [_FRAME.match(f) for f in frames[1:]]
        funcs = [(m.group("func"), m.group("file")) for m in parsed if m]
        for _func, file in reversed(funcs):
            area = _area(file)
            if area is not None:
                areas[area] += count
                break
        else:
            areas["other"] += count
        names = [f"{func} ({file})" for func, file in funcs]
        joined = " ".join(names)
        if "post_inbox" in joined:
            phases["inbox request (post_inbox)"] += count
        elif "get_collection" in joined:
            phases["collection request (get_collection)"] += count
        elif "Worker._execute" in joined or "Worker._claim" in joined or "Worker._record" in joined:
            phases["worker jobs (claim, run, record)"] += count
        elif thread != "MainThread":
            phases["driver threads (aiosqlite)"] += count
        elif funcs and funcs[0][1].startswith("sqlalchemy/"):
            # Code running inside SQLAlchemy's greenlets: py-spy cannot see who awaited it.
            phases["SQLAlchemy inside greenlets (caller not visible)"] += count
        elif "AsyncSession.close" in joined or "AsyncSessionTransaction.__aexit__" in joined:
            phases["session commit/close (caller not visible)"] += count
        else:
            phases["event loop, HTTP parsing, other"] += count
        for name in set(names):
            inclusive[name] += count
        if names:
            own[names[-1]] += count
    if total == 0:
        return "(empty profile)"

    def share(counter: Counter[str], limit: int) -> list[str]:
        return [f"  {100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(limit)]

    out = [f"{total} samples (startup excluded)", "threads:", *share(threads, 5)]
    out += ["phases:", *share(phases, 6), "areas (innermost known package):", *share(areas, 14)]
    useful = Counter({k: v for k, v in inclusive.items() if not _boring(k)})
    out += ["top functions, inclusive:", *share(useful, top), "top functions, self:", *share(own, 12)]
    return "\n".join(out)


def _boring(name: str) -> bool:
    return any(
        marker in name
        for marker in (
            "_run_once (asyncio",
            "run_forever (asyncio",
            "_run (asyncio/events",
            "run_until_complete",
            "run_app (aiohttp",
            "_cmd_serve",
            "<module>",
            "main (server/cli",
            "_run_module_as_main",
            "_run_code",
            "run (asyncio/runners",
            "Thread._bootstrap",
            "Thread.run (",
            "_bootstrap_inner",
        )
    )


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    started = time.perf_counter()
    print(f"• {what} …", flush=True)
    yield
    print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)


def group_by(items: Sequence[Any], key: Any) -> dict[Any, list[Any]]:
    grouped: dict[Any, list[Any]] = defaultdict(list)
    for item in items:
        grouped[key(item)].append(item)
    return grouped
