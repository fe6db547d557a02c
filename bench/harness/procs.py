"""Harness: everything one benchmark run starts (a temp dir, a redis-server, the app's server, helper
processes, databases) and stops again, even on failure, Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from bench.harness.env import PY, ROOT
from connectors_site.server import server_command
from tests.support.procs import RedisServer, free_port, stop_process, wait_http


def interrupt_on_termination() -> None:
    """SIGTERM and SIGHUP end the run the way Ctrl-C does, through every `finally`."""

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


@dataclass
class Harness:
    tmp: Path
    http_port: int = field(default_factory=free_port)
    redis: RedisServer = field(init=False)
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    # The commands a reader needs to reproduce the run, for the report.
    commands: list[str] = field(default_factory=list)
    _undo: list[Callable[[], None]] = field(default_factory=list)
    _cleaned: bool = False

    def __post_init__(self) -> None:
        self.redis = RedisServer(workdir=self.tmp)

    @classmethod
    def in_temp_dir(cls, prefix: str, **fields: Any) -> Self:
        return cls(tmp=Path(tempfile.mkdtemp(prefix=prefix)), **fields)

    def on_cleanup(self, undo: Callable[[], None]) -> None:
        """Run `undo` at cleanup(), after every process is stopped (last registered, first)."""
        self._undo.append(undo)

    # --- processes ---------------------------------------------------------------------------
    def spawn(self, cmd: list[str], **popen: Any) -> subprocess.Popen[Any]:
        """Start `cmd` in the repository root, in its own session, stopped at cleanup()."""
        proc: subprocess.Popen[Any] = subprocess.Popen(
            cmd, cwd=ROOT, start_new_session=True, **popen
        )
        self.procs.append(proc)
        return proc

    def forget(self, proc: subprocess.Popen[Any]) -> None:
        """`proc` has ended (waited for): cleanup() need not stop it."""
        if proc in self.procs:
            self.procs.remove(proc)

    def stop(self, proc: subprocess.Popen[Any], *, grace: float = 10) -> None:
        stop_process(proc, grace=grace)
        self.forget(proc)

    def start_redis(self) -> None:
        """The run's redis-server (again, on the same port: empty, it keeps nothing on disk)."""
        line = " ".join(self.redis.command()).replace("--save  ", '--save "" ')
        if line not in self.commands:
            self.commands.append(line)
        self.redis.start()

    def start_warm_cache(
        self, users: list[str], env: dict[str, str]
    ) -> list[subprocess.Popen[Any]]:
        """The service's own `manage.py warm_cache` over `users`: two processes (one per core),
        each over half of them. wait_warm_cache() collects them."""
        return [
            self.spawn(
                [PY, "manage.py", "warm_cache", *[f"--user={u}" for u in half]],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for half in (users[0::2], users[1::2])
            if half
        ]

    def wait_warm_cache(self, warmers: list[subprocess.Popen[Any]]) -> None:
        for proc in warmers:
            out, _ = proc.communicate(timeout=300)
            self.forget(proc)
            if proc.returncode != 0:
                raise RuntimeError(f"warm_cache failed:\n{out[-2000:]}")

    # --- the app under a server -------------------------------------------------------------
    def gunicorn_cmd(
        self, *, workers: int, graceful_timeout: int, worker_class: str = "sync", threads: int = 1
    ) -> list[str]:
        cmd = [
            str(Path(PY).parent / "gunicorn"),
            "connectors_site.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.http_port}",
            "--workers",
            str(workers),
            "--worker-class",
            worker_class,
            "--preload",
            "--log-level",
            "warning",
            "--backlog",
            "2048",
            "--timeout",
            "30",
            "--graceful-timeout",
            str(graceful_timeout),
        ]
        if worker_class == "gthread":
            cmd += ["--threads", str(threads)]
        return cmd

    def granian_cmd(self, *, workers: int, threads: int) -> list[str]:
        """The production server's command line, as `manage.py serve` (`make serve`) execs it."""
        return server_command(
            host="127.0.0.1",
            port=self.http_port,
            workers=workers,
            threads=threads,
            working_dir=ROOT,
        )

    def server_cmd(
        self, server: str, *, workers: int, threads: int, graceful_timeout: int
    ) -> list[str]:
        """granian (production), gunicorn-gthread or gunicorn-sync."""
        if server == "granian":
            return self.granian_cmd(workers=workers, threads=threads)
        worker_class = server.removeprefix("gunicorn-")
        if worker_class not in ("sync", "gthread"):
            raise ValueError(f"unknown server {server!r}")
        return self.gunicorn_cmd(
            workers=workers,
            graceful_timeout=graceful_timeout,
            worker_class=worker_class,
            threads=threads,
        )

    def start_app(
        self,
        env: dict[str, str],
        *,
        workers: int,
        log: Path,
        graceful_timeout: int = 10,
        server: str = "gunicorn-sync",
        threads: int = 1,
    ) -> subprocess.Popen[Any]:
        """`server` serving the app with `env`, its output appended to `log`; returns once
        every worker has answered /healthz."""
        cmd = self.server_cmd(
            server, workers=workers, threads=threads, graceful_timeout=graceful_timeout
        )
        env = dict(env)
        if server == "granian":
            # As `manage.py serve` does: every worker writes its metrics to files there.
            metrics_dir = Path(tempfile.mkdtemp(prefix="metrics-", dir=self.tmp))
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        else:
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with open(log, "ab") as out:
            proc = self.spawn(cmd, env=env, stdout=out, stderr=out)
        healthz = f"http://127.0.0.1:{self.http_port}/healthz"
        try:
            wait_http(healthz, proc=proc)
        except RuntimeError as e:
            raise RuntimeError(f"{server}: {e}; see {log}:\n{log.read_text()[-3000:]}") from e
        # Every worker answers before measuring (the master answers nothing itself).
        for _ in range(workers * 4):
            with contextlib.suppress(OSError), urllib.request.urlopen(healthz, timeout=2):
                pass
        return proc

    # --- the end -----------------------------------------------------------------------------
    def cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        for proc in list(self.procs):
            with contextlib.suppress(Exception):
                stop_process(proc, grace=5)
        with contextlib.suppress(Exception):
            self.redis.stop()
        for undo in reversed(self._undo):
            with contextlib.suppress(Exception):
                undo()
        shutil.rmtree(self.tmp, ignore_errors=True)
