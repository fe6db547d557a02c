"""How much CPU the rest of the machine used while a measurement ran.

The machine may be shared (other benchmarks and test runs): latency figures mean little if
something else was using the cores, so every scenario reports it. Ours = this process and its
descendants, the descendants of `also_ours()` (a postmaster that pg_ctl daemonized away from us),
and the shared server's backends whose command line names `database`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


class CpuWatch:
    def __init__(
        self, *, also_ours: Callable[[], int | None] = lambda: None, database: str = ""
    ) -> None:
        self.also_ours = also_ours
        self.database = database.encode()
        self.tck = os.sysconf("SC_CLK_TCK")
        self.t0 = 0.0
        self.s0: dict[int, int] = {}

    def _snapshot(self) -> dict[int, int]:
        table: dict[int, tuple[int, int]] = {}  # pid -> (parent, jiffies used)
        ours_by_name: set[int] = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                raw = Path(f"/proc/{entry}/stat").read_text()
                fields = raw.rsplit(")", 1)[1].split()
                table[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
                if (
                    self.database
                    and "postgres" in raw.split(")", 1)[0]
                    and self.database in Path(f"/proc/{entry}/cmdline").read_bytes()
                ):
                    ours_by_name.add(int(entry))
            except (OSError, IndexError, ValueError):
                continue
        roots = {os.getpid(), self.also_ours() or -1}

        def ours(pid: int) -> bool:
            for _ in range(64):
                if pid in roots:
                    return True
                if pid <= 1:
                    return False
                pid = table.get(pid, (0, 0))[0]
            return False

        return {
            pid: jiffies
            for pid, (_, jiffies) in table.items()
            if not ours(pid) and pid not in ours_by_name
        }

    def start(self) -> None:
        self.t0, self.s0 = time.monotonic(), self._snapshot()

    def stop(self) -> float:
        """Other processes' CPU since start(), in % of one CPU."""
        s1, elapsed = self._snapshot(), time.monotonic() - self.t0
        used = sum(j - self.s0[pid] for pid, j in s1.items() if pid in self.s0)
        return used / self.tck / max(elapsed, 1e-6) * 100
