"""The Lua scripts of the read path, loaded once from `lua/*.lua` (as cacheops keeps its own).

redis-py's Script sends EVALSHA and falls back to EVAL (loading the script) on NOSCRIPT, so a
restarted or failed-over Redis needs nothing from us.
"""

from __future__ import annotations

from importlib.resources import files

from redis.commands.core import Script


def _load(name: str) -> Script:
    source = files("connectors.cache").joinpath("lua", f"{name}.lua").read_bytes()
    return Script(None, source)  # type: ignore[arg-type]  # the client is passed per call


ACQUIRE = _load("acquire")
COUNTED_READ = _load("counted_read")
FILL = _load("fill")
REFRESH_LEASE = _load("refresh_lease")
RELEASE = _load("release")
