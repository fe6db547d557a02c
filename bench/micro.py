"""In-process micro benchmark of the status hit path (`python -m bench.micro PROFILE_OUT`, run
by bench/run.py with the served app's environment).

Django's real WSGI handler (all middleware, DRF, each user's own JWT checked, throttling, the view)
called with hand-built environs, no HTTP server: microseconds per request for /healthz, the ceiling and a
status hit; Redis round trips per hit (every `send_packed_command` of the benchmark thread); DB
queries per hit; the pieces of a hit timed alone; a cProfile of the hits, written to PROFILE_OUT.
Prints `BENCH_JSON {...}`.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any


def main() -> None:
    profile_out = sys.argv[1]
    n = int(os.environ.get("BENCH_MICRO_N", "5000"))
    n_users = int(os.environ.get("BENCH_MICRO_USERS", "200"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    import redis.connection
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection

    from connectors import cache

    assert cache.enabled(), "micro benchmark needs REDIS_URL"
    assert getattr(settings, "BENCH_CEILING", False), "micro benchmark needs BENCH_CEILING=1"
    handler = WSGIHandler()
    # "<user> <token>" per line: each request carries its own user's token, as over HTTP.
    with open(os.environ["BENCH_TOKENS_FILE"]) as f:
        pairs = [line.split() for line in f if line.strip()][:n_users]
    users = [user for user, _ in pairs]
    tokens = {user: token for user, token in pairs}

    def environ(path: str) -> dict[str, Any]:
        token = tokens.get(path.rstrip("/").rsplit("/", 1)[-1], pairs[0][1])
        return {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_AUTHORIZATION": f"Bearer {token}",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }

    statuses: dict[str, int] = {}

    def call(path: str) -> bytes:
        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            statuses[status] = statuses.get(status, 0) + 1
            return lambda _b: None

        result: Iterable[bytes] = handler(environ(path), start_response)
        body = b"".join(result)
        close = getattr(result, "close", None)
        if close:
            close()
        return body

    status_paths = [f"/api/connectors/status/{u}" for u in users]
    ceiling_paths = [f"/api/bench/ceiling/{u}" for u in users]
    health_paths = ["/healthz"] * len(users)

    # Fill the cache for these users (misses), then check every one is now a hit.
    for p in status_paths:
        call(p)
    for p in status_paths:
        assert b'"cached":true' in call(p), f"not a hit after warming: {p}"

    # Counters: Redis round trips from this thread, DB queries through Django.
    main_thread = threading.main_thread()
    round_trips = [0]
    original_send = redis.connection.AbstractConnection.send_packed_command

    def counting_send(self: Any, command: Any, check_health: bool = True) -> None:
        if threading.current_thread() is main_thread:
            round_trips[0] += 1
        original_send(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counting_send  # type: ignore[method-assign]
    db_queries = [0]

    def counting_wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        db_queries[0] += 1
        return execute(sql, params, many, context)

    connection.close()  # so "a DB connection was opened" is observable

    def timed(paths: list[str], count: int) -> float:
        started = time.perf_counter()
        for i in range(count):
            call(paths[i % len(paths)])
        return (time.perf_counter() - started) / count * 1e6

    results: dict[str, Any] = {"n": n, "users": len(users)}
    with connection.execute_wrapper(counting_wrapper):
        timed(status_paths, 500)  # warm-up of the loop itself
        round_trips[0] = 0
        db_queries[0] = 0
        statuses.clear()
        results["hit_us"] = timed(status_paths, n)
        results["redis_round_trips_per_hit"] = round_trips[0] / n
        results["db_queries_per_hit"] = db_queries[0] / n
        results["db_connection_opened"] = connection.connection is not None
        results["hit_statuses"] = dict(statuses)
        round_trips[0] = 0
        results["ceiling_us"] = timed(ceiling_paths, n)
        results["ceiling_redis_round_trips"] = round_trips[0] / n
        results["healthz_us"] = timed(health_paths, n)
        # Pieces of the hit path, timed alone.
        from connectors import selectors

        started = time.perf_counter()
        for i in range(n):
            selectors.platform_status_for_user(user_id=users[i % len(users)])
        results["selector_hit_us"] = (time.perf_counter() - started) / n * 1e6
        r = cache.redis_client()
        keys = [cache.full_key(cache.platform_status_key(u)) for u in users]
        started = time.perf_counter()
        for i in range(n):
            r.get(keys[i % len(keys)])
        results["redis_get_us"] = (time.perf_counter() - started) / n * 1e6
        results["socket_get_us"] = _bare_socket_get_us(r, keys, n)
        raw = r.get(keys[0])
        slot = cache.status_slot(users[0])
        started = time.perf_counter()
        for _ in range(n):
            # What a hit does with the entry: verify its MAC, parse its header, check the owner.
            cache.decode_entry(raw, slot, keys[0])  # type: ignore[arg-type]
        results["decode_entry_us"] = (time.perf_counter() - started) / n * 1e6
        results["entry_bytes"] = len(raw or b"")
        results["status_body_bytes"] = len(call(status_paths[0]))
        results["ceiling_body_bytes"] = len(call(ceiling_paths[0]))

        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(2000):
            call(status_paths[i % len(status_paths)])
        profiler.disable()

    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs()
    out.write("2000 status hits through WSGIHandler, top 20 by own time (tottime):\n")
    stats.sort_stats("tottime").print_stats(20)
    out.write("\nTop 30 by cumulative time:\n")
    stats.sort_stats("cumulative").print_stats(30)
    with open(profile_out, "w") as f:
        f.write(out.getvalue())
    print("BENCH_JSON " + json.dumps(results), flush=True)


def _bare_socket_get_us(r: Any, keys: list[str], n: int) -> float:
    """The same GETs over a plain socket, no client library: the round trip's own cost on this
    machine, which no Redis client can go below."""
    import socket

    kwargs = r.connection_pool.connection_kwargs
    sock = socket.create_connection((kwargs["host"], kwargs["port"]))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray(1 << 16)

    def ask(*words: str) -> None:
        command = b"*%d\r\n" % len(words) + b"".join(
            b"$%d\r\n%s\r\n" % (len(w), w.encode()) for w in words
        )
        sock.sendall(command)
        got = sock.recv_into(buffer)
        # A bulk reply: "$<length>\r\n<payload>\r\n"; read until all of it is here.
        head_end = bytes(buffer[:got]).find(b"\r\n")
        while head_end < 0:
            got += sock.recv_into(memoryview(buffer)[got:])
            head_end = bytes(buffer[:got]).find(b"\r\n")
        if buffer[0:1] == b"$" and buffer[1:2] != b"-":
            want = head_end + 2 + int(buffer[1:head_end]) + 2
            while got < want:
                got += sock.recv_into(memoryview(buffer)[got:])

    try:
        ask("SELECT", str(kwargs.get("db", 0)))
        started = time.perf_counter()
        for i in range(n):
            ask("GET", keys[i % len(keys)])
        return (time.perf_counter() - started) / n * 1e6
    finally:
        sock.close()


if __name__ == "__main__":
    main()
