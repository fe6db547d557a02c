"""How a sync stops early. Messages are ours alone: never the provider's text, never a token."""

from __future__ import annotations

from datetime import datetime


class SyncStopped(Exception):
    pass


class SyncFailed(SyncStopped):
    """The job fails with `message` (shown to the user). `expire_connection`: the provider no
    longer accepts the connection's tokens, so the user must connect again."""

    def __init__(self, message: str, *, expire_connection: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.expire_connection = expire_connection


class SyncDeferred(SyncStopped):
    """The provider's quota is spent (or it answered 429): run the job again at `until`."""

    def __init__(self, until: datetime) -> None:
        super().__init__(f"deferred until {until.isoformat()}")
        self.until = until


class Superseded(SyncStopped):
    """This task is no longer the job's current one (cancelled, recovered, deferred)."""
