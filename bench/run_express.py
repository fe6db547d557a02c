"""`make bench`'s Express rows (issue 14): the seed's own stack (bench/peers/express-seed/) on the
same table, the same redis-server and the same load as this service, checked to answer every
user the same document, byte for byte, before anything is timed."""

from __future__ import annotations

import json
import subprocess
import time

from bench.harness.env import envint
from bench.peers.express import PEER_DIR, compare_documents, ensure_installed, node_binary
from bench.run_measure import (
    STATUS,
    WARMUP,
    BenchHarness,
    Row,
    Stack,
    log,
    measure,
    measure_one_connection,
)

# Users checked a second time, on the peer's Redis path (the Zipf head: most of the load).
CHECK_HITS = envint("BENCH_CHECK_HITS", 1000)


class DifferentDocuments(SystemExit):
    """The two stacks disagree: comparing their speeds would mean nothing."""


def check_identical_documents(h: BenchHarness, service: Stack) -> None:
    """Both stacks up; every user's status from each with the user's own token: first every
    user (the peer's cache is empty: its database path), then the CHECK_HITS most requested
    users again (its Redis path: JSON.stringify, SETEX, GET, JSON.parse). Ends the run on any
    difference. Both caches hold every user afterwards."""
    log("installing the Express seed peer (npm ci, once per package-lock.json)")
    ensure_installed()
    everyone = list(h.tokens)
    ours = h.serve(service)
    peer = h.serve(h.express(redis=True))
    try:
        for what, users in (
            ("the peer's database path", everyone),
            ("the peer's Redis path", everyone[:CHECK_HITS]),
        ):
            started = time.monotonic()
            mismatches = compare_documents(
                f"http://127.0.0.1:{peer.port}",
                f"http://127.0.0.1:{ours.port}",
                users,
                h.tokens.__getitem__,
                concurrency=16,
            )
            if mismatches:
                shown = "\n".join(f"  {m.user_id}: {m.kind}: {m.detail}" for m in mismatches[:10])
                raise DifferentDocuments(
                    f"The Express seed peer and this service answer {len(mismatches):,} of "
                    f"{len(users):,} users differently ({what}); nothing was timed. First ones:\n"
                    f"{shown}"
                )
            log(
                f"identical documents for {len(users):,} users ({what}, "
                f"{time.monotonic() - started:.1f} s)"
            )
    finally:
        peer.stop()
        ours.stop()
        h.wait_db_idle()


def peer_versions() -> dict[str, str]:
    """Node and the peer's packages as installed from its lock file, for the report."""
    node = subprocess.run(
        [node_binary(), "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    out = {"node": node.removeprefix("v")}
    for package in ("express", "ioredis", "pg", "jsonwebtoken"):
        manifest = PEER_DIR / "node_modules" / package / "package.json"
        out[package] = str(json.loads(manifest.read_text())["version"])
    return out


def express_rows(h: BenchHarness, unloaded_s: int) -> list[Row]:
    """Warm hits at 100 connections and at 1, while the check's entries are fresh (the peer's
    TTL is the seed's 300 s), then the peer without Redis: the seed's database path."""
    cached, db_only = h.express(redis=True), h.express(redis=False)
    return [
        measure(
            h,
            "E3",
            "Express seed: Redis, warm (all users cached)",
            cached,
            path=STATUS,
            mode="zipf",
            warmup=WARMUP,
        ),
        measure_one_connection(
            h, "E3c", "Express seed: Redis, warm", cached, path=STATUS, seconds=unloaded_s
        ),
        measure(
            h,
            "E2",
            "Express seed: DB only (no REDIS_URL)",
            db_only,
            path=STATUS,
            mode="zipf",
            warmup=WARMUP,
        ),
    ]
