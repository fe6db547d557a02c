"""One process per host leads (an exclusive flock on a file), and tells the others its verdict.

The kernel releases the lock when the leader dies, so another process takes over at its next
try; no database or Redis round trip is involved. The verdict is a small JSON file replaced
atomically. Used by the outbox sweeper: docs/architecture.md ("Background work").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any


class HostElection:
    def __init__(self, name: str, directory: str | None = None) -> None:
        base = Path(directory or tempfile.gettempdir())
        self.lock_path = base / f"{name}.lock"
        self.state_path = base / f"{name}.json"
        self._fd: int | None = None
        self._pid = 0

    def lead(self) -> bool:
        """Whether this process leads now (taking the lead if it is free)."""
        if self._pid != os.getpid():  # a forked child does not inherit the lead
            self._fd, self._pid = None, os.getpid()
        if self._fd is not None:
            return True
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def resign(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor releases the lock
        self._fd = None

    def publish(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_path)

    def read(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None
