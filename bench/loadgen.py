"""The open-loop load of `make faults` (`python -m bench.loadgen CONFIG_JSON OUTPUT_JSON`, one
process per run, started by bench/faults.py; bench/README.md describes the operations).

A dispatcher thread schedules operations at a fixed rate and a pool of worker threads sends
them; an operation not sent within MAX_LAG_S of its schedule is skipped and counted. Times are
time.monotonic() (system-wide on Linux, so they compare with the harness's fault timestamps).
Prints `START <t0>` once sending begins; writes every record as JSON to OUTPUT_JSON at the end.
"""

from __future__ import annotations

import bisect
import heapq
import http.client
import itertools
import json
import queue
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

MAX_LAG_S = 1.0
HTTP_TIMEOUT_S = 35.0  # above gunicorn's 30 s worker timeout: the server gives up first


@dataclass
class Op:
    due: float
    kind: str  # "read" | "disconnect" | "reset"
    user: int


@dataclass
class Recorder:
    # Lists of plain tuples: list.append is atomic under the GIL, so workers need no lock.
    reads: list[tuple[int, float, float, int, int, int, list[int] | None]] = field(
        default_factory=list
    )
    writes: list[tuple[int, str, float, float, int, list[int] | None]] = field(default_factory=list)
    # (user, commit time, versions read back or None if the read-back failed)
    external: list[tuple[int, float, list[int] | None]] = field(default_factory=list)
    skipped: list[float] = field(default_factory=list)
    noop_writes: int = 0
    external_errors: int = 0
    readback_errors: int = 0


class Load:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.users: list[str] = cfg["users"]
        self.providers: list[str] = cfg["providers"]
        self.headers = {"Authorization": f"Bearer {cfg['token']}"}
        self.rec = Recorder()
        self.tasks: queue.Queue[Op | None] = queue.Queue()
        self.user_locks = [threading.Lock() for _ in self.users]
        # Providers seen connected in the user's last read: disconnects pick one of them, so
        # most DELETEs change something instead of answering 404.
        self.connected: list[list[str]] = [[] for _ in self.users]
        self.reactivate: list[tuple[float, int]] = []
        self.reactivate_lock = threading.Lock()
        self.local = threading.local()
        self.stop = threading.Event()

    # --- Postgres (read-back and the external writer) ------------------------------------
    def db(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self.local, "db", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.cfg["dsn"], autocommit=True, connect_timeout=2)
            self.local.db = conn
        return conn

    def drop_db(self) -> None:
        conn = getattr(self.local, "db", None)
        if conn is not None:
            conn.close()
        self.local.db = None

    def versions_of(self, user: int) -> list[int]:
        sql = "SELECT provider, version FROM connectors_platformconnection WHERE user_id = %s"
        try:
            rows = self.db().execute(sql, (self.users[user],)).fetchall()
        except psycopg.Error:
            # This thread's connection may have died with an earlier Postgres restart without
            # anyone noticing: one more try on a new connection before giving up.
            self.drop_db()
            rows = self.db().execute(sql, (self.users[user],)).fetchall()
        found = {provider: int(version) for provider, version in rows}
        return [found.get(p, 0) for p in self.providers]

    # --- HTTP ------------------------------------------------------------------------------
    def http(self, method: str, path: str) -> tuple[int, bytes]:
        conn: http.client.HTTPConnection | None = getattr(self.local, "http", None)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.cfg["port"], timeout=HTTP_TIMEOUT_S)
            self.local.http = conn
        try:
            # http.client reopens by itself after a `Connection: close` answer (gunicorn's sync
            # workers close every connection), so one object per thread is enough.
            conn.request(method, path, headers=self.headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            return 0, b""  # status 0: connection refused/reset or client timeout

    def read(self, user: int) -> None:
        uid = self.users[user]
        start = time.monotonic()
        status, body = self.http("GET", f"/api/connectors/status/{uid}")
        end = time.monotonic()
        cached = stale = -1
        versions: list[int] | None = None
        if status == 200:
            try:
                doc = json.loads(body)
                platforms = doc["data"]["platforms"]
                versions = [int(platforms[p]["version"]) for p in self.providers]
                cached = int(bool(doc.get("cached")))
                stale = int(bool(doc.get("stale")))
                self.connected[user] = [p for p in self.providers if platforms[p]["connected"]]
            except (ValueError, KeyError, TypeError):
                status = -200  # a 200 whose body is not a status document: reported as such
        self.rec.reads.append((user, start, end, status, cached, stale, versions))

    def write(self, user: int, kind: str, rng: random.Random) -> None:
        uid = self.users[user]
        if kind == "disconnect":
            provider = rng.choice(self.connected[user] or self.providers)
            method, path = "DELETE", f"/api/connectors/{provider}/{uid}"
        else:
            method, path = "POST", f"/api/connectors/reset/{uid}"
        with self.user_locks[user]:
            start = time.monotonic()
            status, _ = self.http(method, path)
            end = time.monotonic()
            versions: list[int] | None = None
            if status == 200:
                try:
                    versions = self.versions_of(user)
                except psycopg.Error:
                    self.rec.readback_errors += 1
                    self.drop_db()
        if status == 404:
            self.rec.noop_writes += 1  # not connected: nothing changed, nothing to check
            return
        self.rec.writes.append((user, kind, start, end, status, versions))
        if status == 200:
            with self.reactivate_lock:
                heapq.heappush(self.reactivate, (time.monotonic() + rng.uniform(0.5, 2.0), user))

    # --- threads ---------------------------------------------------------------------------
    def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        while True:
            op = self.tasks.get()
            if op is None:
                return
            if time.monotonic() - op.due > MAX_LAG_S:
                self.rec.skipped.append(op.due)
                continue
            if op.kind == "read":
                self.read(op.user)
            else:
                self.write(op.user, op.kind, rng)

    def external_writer(self) -> None:
        while not self.stop.is_set():
            with self.reactivate_lock:
                item = (
                    heapq.heappop(self.reactivate)
                    if self.reactivate and self.reactivate[0][0] <= time.monotonic()
                    else None
                )
            if item is None:
                time.sleep(0.02)
                continue
            user = item[1]
            with self.user_locks[user]:
                try:
                    changed = (
                        self.db()
                        .execute(
                            "UPDATE connectors_platformconnection SET is_active = true, "
                            "status = 'connected', connected_at = now() "
                            "WHERE user_id = %s AND is_active = false RETURNING id",
                            (self.users[user],),
                        )
                        .fetchall()
                    )
                    end = time.monotonic()  # autocommit: committed when execute returned
                    if changed:
                        # Committed: recorded even if the read-back fails (Postgres stopping
                        # right after the commit), as a write whose versions are unknown.
                        try:
                            versions: list[int] | None = self.versions_of(user)
                        except psycopg.Error:
                            versions = None
                            self.rec.readback_errors += 1
                            self.drop_db()
                        self.rec.external.append((user, end, versions))
                except psycopg.Error:
                    # Postgres is down: try again later, as the other service would.
                    self.rec.external_errors += 1
                    self.drop_db()
                    with self.reactivate_lock:
                        heapq.heappush(self.reactivate, (time.monotonic() + 1.0, user))
                    time.sleep(0.1)

    def run(self) -> float:
        cfg = self.cfg
        rng = random.Random(cfg["seed"])
        s = float(cfg["zipf_s"])
        cdf = list(itertools.accumulate(1 / (k**s) for k in range(1, len(self.users) + 1)))
        rate, seconds = float(cfg["rate"]), float(cfg["seconds"])
        write_share = float(cfg["write_pct"]) / 100
        reset_share = float(cfg["reset_share"])
        workers = [
            threading.Thread(target=self.worker, args=(cfg["seed"] + i,), daemon=True)
            for i in range(int(cfg["threads"]))
        ]
        for t in workers:
            t.start()
        ext = threading.Thread(target=self.external_writer, daemon=True)
        ext.start()
        t0 = time.monotonic()
        print(f"START {t0:.6f}", flush=True)
        for i in itertools.count():
            due = t0 + i / rate
            if due - t0 >= seconds:
                break
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            user = bisect.bisect_left(cdf, rng.random() * cdf[-1])
            draw = rng.random()
            if draw < write_share * reset_share:
                kind = "reset"
            elif draw < write_share:
                kind = "disconnect"
            else:
                kind = "read"
            self.tasks.put(Op(due, kind, user))
        for _ in workers:
            self.tasks.put(None)
        deadline = time.monotonic() + HTTP_TIMEOUT_S
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))
        self.stop.set()
        ext.join(5)
        return t0


def main() -> None:
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    load = Load(cfg)
    t0 = load.run()
    rec = load.rec
    out = {
        "t0": t0,
        "reads": rec.reads,
        "writes": rec.writes,
        "external": rec.external,
        "skipped": rec.skipped,
        "noop_writes": rec.noop_writes,
        "external_errors": rec.external_errors,
        "readback_errors": rec.readback_errors,
    }
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
