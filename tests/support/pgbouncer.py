"""pgbouncer in transaction mode (or another), in front of a Postgres, on a free loopback port.

For tests and fault scenarios: LISTEN through it "succeeds" and hears nothing, which is what
`listen_invalidations` must notice. stop() ends the process and removes its files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.support.topologies import HOST, free_port, wait_until


class PgBouncer:
    """pgbouncer (transaction mode by default) in front of a Postgres, trusting every user
    listed. Run as the `postgres` user when started as root (pgbouncer refuses root)."""

    def __init__(
        self,
        *,
        pool_mode: str = "transaction",
        upstream: tuple[str, int] = (HOST, 5432),
        users: tuple[str, ...] = ("postgres",),
    ) -> None:
        self.port = free_port()
        self.pool_mode = pool_mode
        self.upstream = upstream
        self.users = users
        self.dir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgres://{user}@{HOST}:{self.port}/{database}"

    def start(self) -> PgBouncer:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        assert Path(binary).exists(), "pgbouncer is not installed (apt-get install -y pgbouncer)"
        self.dir.chmod(0o777)  # the postgres user writes its log here
        (self.dir / "users.txt").write_text("".join(f'"{u}" ""\n' for u in self.users))
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self.upstream[0]} port={self.upstream[1]}\n"
            "[pgbouncer]\n"
            f"listen_addr = {HOST}\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\n"
            f"pool_mode = {self.pool_mode}\ndefault_pool_size = 4\nmax_client_conn = 50\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\npidfile = {self.dir / 'pgbouncer.pid'}\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        for name in ("users.txt", "pgbouncer.ini"):
            (self.dir / name).chmod(0o644)
        argv = [binary, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            argv[1:1] = ["-u", "postgres"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def listening() -> bool:
            assert self.process and self.process.poll() is None, self.log()
            with socket.socket() as sock:
                return sock.connect_ex((HOST, self.port)) == 0

        wait_until(listening, 10, "pgbouncer listening")
        return self

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "pgbouncer.log").read_text()
        return ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
