"""A daemon thread started at most once per process (the stats flusher, the outbox sweeper)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class PerProcessThread:
    """A daemon thread started at most once per process, on first use.

    Per process, not per import: gunicorn forks its workers after importing the app, and a
    thread started before the fork does not exist in the children.
    """

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        self.name = name
        self._target = target
        self._lock = threading.Lock()
        self._pid = 0

    def ensure_started(self) -> None:
        pid = os.getpid()
        if self._pid == pid:  # the common case, on every read: no lock
            return
        with self._lock:
            if self._pid == pid:
                return
            self._pid = pid
            threading.Thread(target=self._target, name=self.name, daemon=True).start()
