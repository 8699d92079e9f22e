"""``entraide`` commands as real processes in end-to-end tests: bounded and always cleaned up.

One-shot commands (``init``, ``follow``, ``deliveries status``…) run with :func:`run_cli`, which
kills the process if it outlives its timeout. Long-running ones (``serve``, ``worker``) run
inside :func:`service`, which kills whatever is still alive when the block ends, whatever
happened inside it. Their output goes to a log file (a pipe nobody reads could fill up and
block the child), shown in assertion messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

from server.config import CONFIG_ENV, ENV_PREFIX, Settings, render_toml

ENTRAIDE: tuple[str, ...] = (sys.executable, "-m", "server")
_LOG_TAIL_CHARS = 4000


def cli_env(**overrides: str) -> dict[str, str]:
    """This process's environment without inherited Entraide settings, plus ``overrides``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name != CONFIG_ENV and not (name.startswith(ENV_PREFIX) and "__" in name)
    }
    env.update(overrides)
    return env


def write_config(settings: Settings, path: Path) -> Path:
    """Write ``settings`` as a configuration file (e.g. for a worker process of a test node)."""
    path.write_text(render_toml(settings.as_document(redact=False)))
    return path


@dataclass(frozen=True, slots=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> CliResult:
        assert self.returncode == 0, f"exit {self.returncode}\n{self.stdout}\n{self.stderr}"
        return self


async def run_cli(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout_s: float = 60.0
) -> CliResult:
    """Run ``entraide ARGS`` to completion; fail the test if it takes more than ``timeout_s``."""
    process = await asyncio.create_subprocess_exec(
        *ENTRAIDE,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env) if env is not None else cli_env(),
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        raise AssertionError(f"`entraide {' '.join(args)}` ran longer than {timeout_s} s") from None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())


class ServiceProcess:
    """A long-running ``entraide`` command whose stdout and stderr go to ``log_path``."""

    def __init__(self, args: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.args = tuple(args)
        self.log_path = log_path
        self.env = dict(env) if env is not None else cli_env()
        self.process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def _open_log(self) -> IO[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        return self.log_path.open("ab")

    async def start(self) -> None:
        self._log = self._open_log()
        self.process = await asyncio.create_subprocess_exec(
            *ENTRAIDE,
            *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=self.env,
        )

    def log(self) -> str:
        """The end of the process's output, for assertion messages."""
        try:
            return self.log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        except OSError:
            return ""

    async def kill(self) -> None:
        """``kill -9``: no shutdown code runs (a crash, a power cut, the OOM killer)."""
        assert self.process is not None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # already killed and reaped
                os.kill(self.process.pid, signal.SIGKILL)
        await asyncio.wait_for(self.process.wait(), 10)

    async def terminate(self, *, timeout_s: float = 15.0) -> int:
        """SIGTERM, then wait for a graceful exit; returns the exit code (fails if it hangs)."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            raise AssertionError(
                f"`entraide {' '.join(self.args)}` ignored SIGTERM for {timeout_s} s\n{self.log()}"
            ) from None

    async def close(self) -> None:
        """Kill the process if it still runs and release the log file (idempotent)."""
        try:
            if self.process is not None and self.process.returncode is None:
                self.process.kill()
                await asyncio.wait_for(self.process.wait(), 10)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


@asynccontextmanager
async def service(
    args: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[ServiceProcess]:
    """Start ``entraide ARGS``; whatever happens in the block, the process is gone after it."""
    process = ServiceProcess(args, log_path=log_path, env=env)
    try:
        await process.start()
        yield process
    finally:
        await process.close()


async def wait_for_http(
    url: str, *, process: ServiceProcess | None = None, timeout_s: float = 20.0, headers: Any = None
) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits, late after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if process is not None and not process.alive:
                raise AssertionError(f"the process serving {url} exited\n{process.log()}")
            try:
                async with http.get(url, headers=headers) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                log = process.log() if process is not None else ""
                raise AssertionError(f"{url} did not answer within {timeout_s} s\n{log}")
            await asyncio.sleep(0.1)
