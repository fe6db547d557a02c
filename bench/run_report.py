"""The report of `make bench`: the targets checked on one run's ratios, the table, the chart,
and the results files (bench/results/<date>-<commit>.md, latest.md, the PNG, the README block)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from bench.harness import results
from bench.harness.env import PY
from bench.run_express import CHECK_HITS, peer_versions
from bench.run_measure import (
    COLD_SECONDS,
    CONNS,
    DURATION,
    PROBES,
    REMOTE_MS,
    SERVER_SECONDS,
    THREADS,
    THROTTLE_RATE,
    USERS,
    WARMUP,
    WEB_THREADS,
    WORKERS,
    WRITE_PCT,
    ZIPF_S,
    BenchHarness,
    Row,
    fmt_ratio,
)

WORKERS_WHY = (
    "granian (WSGI), as `make serve` runs it (connectors_site/server.py: keep-alive, "
    "--blocking-threads), {w} worker processes x {t} threads: as many processes as the Express "
    "peer's cluster workers, so the two stacks get the same number of processes on this "
    "{c}-core machine. Keep-alive as browsers and proxies use it; row 3x sends "
    "`Connection: close` (a loopback TCP connect per request, as behind a proxy that does not "
    "pool upstream connections). Rows 3t and 3s run the same warm-hit load on gunicorn "
    "(gthread, {w} x {t} threads, keep-alive; sync, {w} workers, which closes every connection) "
    "for the server choice (README, Production)."
)
# Display order of the table and the chart: this service, then the seed's stack beside it.
ORDER = ["1", "2", "3", "3c", "3x", "E2", "E3", "E3c", "3t", "3s", "6b", "6a", "1c", "6c", "6d"]
ORDER += ["7", "4", "5"]
STACK_COLOURS = {"service": "#55a868", "express": "#dd8452"}


def ordered(rows: list[Row]) -> list[Row]:
    rank = {key: i for i, key in enumerate(ORDER)}
    return sorted(rows, key=lambda r: rank.get(r.key, len(rank)))


def ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def table(rows: list[Row]) -> str:
    head = (
        "| # | scenario | conns | req/s | p50 ms | p95 ms | p99 ms | hit ratio | DB queries/req "
        "| table scans/req | Redis cmds/req | non-2xx/3xx | other CPU | notes |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    lines = []
    for r in rows:
        w = r.wrk
        lines.append(
            f"| {r.key} | {r.name} | {r.conns} | {w['rps']:,.0f} | {ms(w['p50'])} | {ms(w['p95'])} | "
            f"{ms(w['p99'])} | {fmt_ratio(r.hit_ratio())} | {r.db_cell()} | "
            f"{r.pg['table_scans'] / max(1, r.served()):.3f} | {r.redis_per_req():.3f} | "
            f"{w['err_status']} | {r.other_cpu:.0f}% | {r.note} |"
        )
    return head + "\n".join(lines) + "\n"


def chart(rows: list[Row], buckets: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(20, 11))
    grid = fig.add_gridspec(2, 6)
    axes = [
        fig.add_subplot(grid[0, 0:3]),
        fig.add_subplot(grid[0, 3:6]),
        fig.add_subplot(grid[1, 0:2]),
        fig.add_subplot(grid[1, 2:4]),
        fig.add_subplot(grid[1, 4:6]),
    ]
    labels = [f"{r.key}" for r in rows]
    x = range(len(rows))
    width = 0.27
    for i, (p, colour) in enumerate((("p50", "#4c72b0"), ("p95", "#dd8452"), ("p99", "#c44e52"))):
        axes[0].bar(
            [xi + (i - 1) * width for xi in x],
            [r.wrk[p] / 1000 for r in rows],
            width,
            label=p,
            color=colour,
        )
    axes[0].set_yscale("log")
    axes[0].set_ylabel("latency, ms (log)")
    axes[0].set_title(f"Latency percentiles (wrk, {CONNS} conns unless noted)")
    axes[0].legend()
    axes[1].bar(list(x), [r.wrk["rps"] for r in rows], color=[STACK_COLOURS[r.stack] for r in rows])
    axes[1].set_ylabel("requests/s")
    axes[1].set_title("Throughput (green: this service, orange: Express seed)")
    for xi, r in zip(x, rows, strict=True):
        axes[1].text(xi, r.wrk["rps"], f"{r.wrk['rps']:.0f}", ha="center", va="bottom", fontsize=8)
    for ax in axes[:2]:
        ax.set_xticks(list(x), labels)
        for tick, r in zip(ax.get_xticklabels(), rows, strict=True):
            tick.set_color(STACK_COLOURS[r.stack] if r.stack == "express" else "black")
    legend = "\n".join(f"{r.key}: {r.name}" for r in rows)
    axes[4].axis("off")
    axes[4].text(0.0, 1.0, legend, transform=axes[4].transAxes, fontsize=9, va="top")
    secs = [b["second"] for b in buckets]
    ax = axes[2]
    ax.plot(secs, [b["p50"] / 1000 for b in buckets], "o-", label="probe p50 ms")
    ax.plot(secs, [b["p90"] / 1000 for b in buckets], "s-", label="probe p90 ms")
    ax.set_xlabel("second after cache clear")
    ax.set_ylabel("latency, ms")
    ax2 = ax.twinx()
    ax2.plot(secs, [(b["hit_ratio_client"] or 0) * 100 for b in buckets], "g^--", label="hit %")
    ax2.set_ylabel("hit ratio %")
    ax2.set_ylim(0, 105)
    ax.set_title("5: cold start")
    ax.legend(loc="upper center")
    ax2.legend(loc="center right")
    versus(axes[3], rows)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def versus(ax: Any, rows: list[Row]) -> None:
    """Both stacks side by side on issue 14's three measures (absolute values on the bars)."""
    by = {r.key: r for r in rows}
    measures = [
        ("warm hits\n100 conns, req/s", "3", "E3", "rps"),
        ("DB only\n100 conns, req/s", "2", "E2", "rps"),
        ("warm hit, 1 conn\np50 ms (lower: faster)", "3c", "E3c", "p50"),
    ]
    width = 0.38
    for i, (stack, pick) in enumerate((("service", 1), ("express", 2))):
        values = []
        for _, ours, theirs, field in measures:
            w = by[(ours, theirs)[pick - 1]].wrk
            values.append(w[field] / 1000 if field == "p50" else w[field])
        # Each measure relative to the Express seed's, so one axis holds all three.
        base = [
            by[theirs].wrk[field] / 1000 if field == "p50" else by[theirs].wrk[field]
            for _, _, theirs, field in measures
        ]
        xs = [j + (i - 0.5) * width for j in range(len(measures))]
        ax.bar(
            xs,
            [v / b for v, b in zip(values, base, strict=True)],
            width,
            color=STACK_COLOURS[stack],
            label="this service" if stack == "service" else "Express seed",
        )
        for xv, v, b, m in zip(xs, values, base, measures, strict=True):
            text = f"{v:.2f}" if m[3] == "p50" else f"{v:,.0f}"
            ax.text(xv, v / b, text, ha="center", va="bottom", fontsize=8)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(measures)), [m[0] for m in measures])
    ax.set_ylabel("relative to the Express seed (= 1)")
    ax.set_title("This service vs the Express seed (issue 14)")
    ax.legend()


def report(
    h: BenchHarness,
    rows: list[Row],
    buckets: list[dict[str, Any]],
    micro: dict[str, Any],
    profile: str,
    info: dict[str, Any],
) -> None:
    rows = ordered(rows)
    by = {r.key: r for r in rows}
    ceiling, db_only, warm, mix = by["1"], by["2"], by["3"], by["4"]
    throughput_ratio = warm.wrk["rps"] / ceiling.wrk["rps"]
    tail = warm.wrk["p99"] / warm.wrk["p50"]
    rt_per_hit_http = warm.round_trips_per_hit()
    cmds_per_hit_http = warm.redis_cmds() / max(1, warm.hits)
    # Issue 14: this service / the Express seed, same load, same run.
    e_warm, e_one, e_db = by["E3"], by["E3c"], by["E2"]
    vs_warm = warm.wrk["rps"] / e_warm.wrk["rps"]
    vs_p50 = by["3c"].wrk["p50"] / e_one.wrk["p50"]
    vs_db = db_only.wrk["rps"] / e_db.wrk["rps"]
    # What a cache costing nothing would reach on this stack: the ceiling against the seed's.
    vs_warm_bound = ceiling.wrk["rps"] / e_warm.wrk["rps"]
    vs_p50_bound = by["1c"].wrk["p50"] / e_one.wrk["p50"]
    rt_micro = micro["redis_round_trips_per_hit"]
    db_per_hit = round(warm.db_net() / max(1, warm.hits), 4)
    remote_ratio_loaded = by["6a"].wrk["p50"] / by["6b"].wrk["p50"]
    remote_ratio = by["6d"].wrk["p50"] / by["6c"].wrk["p50"]
    # What a cache costing nothing at all would reach: DB-only against the bare stack.
    remote_ratio_bound = by["6d"].wrk["p50"] / by["1c"].wrk["p50"]
    mix_requests = mix.requests + int(mix.side.get("writes", 0))
    mix_per_1000 = mix.db_net() / mix_requests * 1000
    mix_per_1000_raw = mix.pg["xacts"] / mix_requests * 1000
    writes = int(mix.wrk["writes"]) + int(mix.side.get("writes", 0))
    bound = (writes + mix.misses) / mix_requests * 1000
    etag = by["7"]
    etag_304 = etag.wrk["reads_304"] / max(1, etag.requests)

    commit, dirty = results.git_commit()
    today = dt.date.today().isoformat()
    stem = f"{today}-{commit}"
    results.RESULTS.mkdir(parents=True, exist_ok=True)
    png = results.RESULTS / f"{stem}.png"
    chart(rows, buckets, png)
    results.copy_latest(png, "latest.png")

    def check(ok: bool) -> str:
        return "PASS" if ok else "**FAIL**"

    summary = [
        f"warm/ceiling throughput ratio: {throughput_ratio:.2f}",
        f"redis round trips per hit: {rt_micro:g}",
        f"db queries per hit: {db_per_hit:g}",
        f"remote-db p50 ratio (db-only/cached): {remote_ratio:.1f}",
        f"remote-db p50 bound (db-only/ceiling, 1 connection): {remote_ratio_bound:.1f}",
        f"db queries per 1000 requests (mix): {mix_per_1000:.0f}",
        f"warm hits vs express seed (throughput ratio): {vs_warm:.2f}",
        f"1-conn hit p50 vs express seed (ratio): {vs_p50:.2f}",
        f"db-only vs express seed (throughput ratio): {vs_db:.2f}",
        f"redis round trips per hit (user token): {rt_per_hit_http:.2f}",
    ]
    v = results.versions(wrk=True)
    disturbed = [r.key for r in rows if r.other_cpu > 20]
    disturbance = (
        f"**Warning: other programs used more than 20% of a CPU during scenario(s) "
        f"{', '.join(disturbed)} (column *other CPU*): those rows measure a shared, busy machine; "
        f"rerun on an idle one before trusting their ratios.**"
        if disturbed
        else "No other program used more than 20% of a CPU during any scenario."
    )
    server_log = (h.tmp / "server.log").read_text(errors="replace").splitlines()
    counted: dict[str, int] = {}
    for line in server_log:
        if (
            "WARNING" in line or "ERROR" in line or "Traceback" in line
        ) and "caching is OFF" not in line:
            message = line.split(" ", 3)[-1][:160]
            counted[message] = counted.get(message, 0) + 1
    log_summary = (
        "\n".join(f"- {n} x `{m}`" for m, n in sorted(counted.items(), key=lambda x: -x[1])[:8])
        or "- none (apart from DB-only runs' 'caching is OFF' start-up notice)"
    )
    cold_lines = [
        "| second | responses | hit ratio (responses) | probe p50 ms | probe p90 ms | probe max ms | probe samples |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in buckets:
        cold_lines.append(
            f"| {b['second']} | {b['rps']:,.0f} | {fmt_ratio(b['hit_ratio_client'])} | "
            f"{ms(b['p50'])} | {ms(b['p90'])} | {ms(b['max'])} | {b['probes']} |"
        )
    md = f"""# `make bench` results: {today}, commit {commit}{" (working tree with uncommitted changes)" if dirty else ""}

GET /api/connectors/status/<user_id> over HTTP on loopback: granian ({WORKERS} workers x {WEB_THREADS} threads,
keep-alive, as `make serve` runs it) serving the real app with production settings (DJANGO_DEBUG=0,
LOG_LEVEL=warning so per-request INFO log lines are off), local Postgres {v["postgres"]} ({info["rows"]} rows:
{USERS:,} users x 3-7 connections, seeded in {info["seed_seconds"]:.1f} s), a throwaway local
redis-server {v["redis-server"]}; wrk {CONNS} connections, {THREADS} threads, keep-alive, {DURATION} s per scenario
after a {WARMUP} s warm-up, users drawn by Zipf (s={ZIPF_S:g}) over all {USERS:,} users, each request with its
own user's token, as a dashboard's browsers send them, so throttling runs on every request
(THROTTLE_USER_RATE and THROTTLE_IP_RATE = {THROTTLE_RATE}: far above what this run sends, so
nothing is answered 429). The E rows are the seed's own stack (Express 4 + ioredis + pg, Node's
cluster with {WORKERS} workers: bench/peers/express-seed/) on the same table, redis-server and load,
checked first to answer every user the same document byte for byte. Whole run: {info["elapsed"]:.0f} s.

{disturbance}

{table(rows)}
Columns: *req/s* and latency percentiles from wrk (not corrected for coordinated omission: wrk
waits for each answer before sending the next request on that connection). *hit ratio* = the
service's own hit/miss counters (cache-stats) over the measured phase. *DB queries/req* =
Postgres' `xact_commit + xact_rollback` delta for the bench database (pg_stat_statements is not
preloaded on this shared server); Django autocommits, so every query outside an atomic block is
one transaction and an atomic block (a write) is one. The connection health check sends nothing
on a quiet socket (connectors_site/db/postgresql), so a request that reads the table costs one
transaction, not two. *table scans/req* = seq + index scans of `connectors_platformconnection`
(pg_stat_user_tables). With the cache on, each gunicorn worker's outbox sweeper thread
(CACHE_OUTBOX_SWEEP_SECONDS) queries Postgres in the background whatever the traffic: an idle
server measured {h.background_rate:.1f} transactions/s, and the figure in brackets is per request net of
that rate times the time its server ran from its first request to its stop. The outbox rows that writes leave are deleted in
those same sweeper transactions (connectors/cache/outbox.py), so they cost writes nothing extra. *Redis cmds/req* = every command
(INFO commandstats on the benchmark's own redis-server) per request: the read (GETRANGE on a hit),
the throttle's (INCR, EXPIRE, PTTL per limit), the commands the lease scripts run inside Redis
(so a miss counts several), background ones (leader election); not the harness's INFO and
HGETALL, nor the once-a-second HINCRBY of the hit counters. Per-request denominators are the requests the server
handled: with the cache on, its own hit + miss counters (they include the up to {CONNS} requests in
flight when wrk stops, which wrk does not count) plus writes, including the side writer's in
scenario 4; without it, wrk's count. *other CPU* = CPU time used during the measurement by
processes that are not this benchmark's (nor its Postgres backends), in % of one CPU: this
machine is shared, and anything well above a few % means the run was disturbed.

Scenario notes:
- 1: `/api/bench/ceiling/<user_id>` (bench-only route, bench/ceiling.py, BENCH_CEILING=1): same middleware, same DRF
  authentication (JWT verification), permission and user-id check, constant body of
  {micro["ceiling_body_bytes"]} bytes (a status response here: {micro["status_body_bytes"]} bytes), no cache, no DB.
- 2 and 6a/6d: no REDIS_URL, so Django's DummyCache and every read goes to Postgres.
- 3: every user was cached beforehand by the service's `manage.py warm_cache` (two processes),
  checked key by key. 3c: the same over one connection. 3x: the same load with
  `Connection: close` on every request (a new loopback TCP connection each time).
- 3t, 3s: the load of 3 ({SERVER_SECONDS} s, after a 1 s warm-up on the same server) on gunicorn
  gthread ({WORKERS} x {WEB_THREADS} threads, keep-alive) and gunicorn sync ({WORKERS} workers; it closes
  every connection), for the choice of the production server (BENCH_SERVER_ROWS=0 skips them).
- E2, E3, E3c: the Express seed peer with the same {WORKERS} processes, its pg Pool of 10 per
  worker, ioredis, `SETEX 300` (its own key prefix, DB 13 of the same redis-server). Before any
  timing, both stacks answered every one of the {USERS:,} users (the peer's database path), then
  the {CHECK_HITS:,} most requested ones again (its Redis path), with the same compact JSON document
  (bench/peers/express.py, `compare_documents`); E3/E3c are measured right after, on the
  entries that check left. E2 is
  the peer without REDIS_URL: every read from Postgres, the seed's own path. The peer keeps no
  hit counters: its hit ratio is the answers' `cached` field as wrk saw them.
- 6: BENCH_DB_LATENCY_MS={REMOTE_MS:g}: a `time.sleep` before every query through Django's cursor
  (bench/latency.py): a DB-only read is one query, so one simulated round trip. Connection
  set-up (once per worker: connections persist) is not delayed. 6a/6b at {CONNS} connections are
  throughput-bound (4 sync workers: latency ~ connections / throughput, Little's law); 6c/6d with
  1 connection show the per-request latency, which is what the seed's "200 ms -> 5 ms" describes,
  and 1c is the same stack answering a constant body over that one connection: no cache, however
  fast, can beat it, so 6d / 1c bounds the ratio on this machine.
- 7: each wrk thread remembers the ETag last returned for a user and sends it as If-None-Match;
  {etag.wrk["reads_304"]:,} of {etag.requests:,} answers were 304 ({etag_304 * 100:.1f}%) (first requests per user and
  thread are 200s).
- 4: {mix.wrk["writes"]:,} DELETE /api/connectors/<provider>/<user_id> through the API from wrk
  ({WRITE_PCT / 2:g}% of its requests, provider chosen at random: {mix.wrk["writes_ok"]:,} disconnected
  a connection, {mix.wrk["writes_noop"]:,} answered 404 not_connected after locking/reading),
  plus {mix.side.get("writes", 0):,} ORM writes by bench/mix_writer.py at {info["side_rate"]:.0f}/s
  (reconnect = QuerySet.update of the user's inactive rows, sync status =
  services.connection_set_sync_status; both invalidate after commit; {mix.side.get("noop", 0):,} found
  nothing to change): {writes:,} writes in {mix_requests:,} requests = {writes / mix_requests * 100:.1f}%.
  Server-side misses: {mix.misses:,}. The non-2xx/3xx count of this row is those 404s.
- 5: `manage.py clear_cache` (deletes this run's prefix only) at t=0 with the server up, then one
  {COLD_SECONDS}-second wrk run at {CONNS - PROBES} connections plus {PROBES} Python threads doing timed
  sequential requests (same Zipf law), so {CONNS} in all. Per wall-clock second: responses and hit
  ratio (from the responses' `cached` field, wrk + probes), and the probes' latencies (wrk cannot
  report latency per second). The row above gives wrk's percentiles over the whole {COLD_SECONDS} s.

### 5: cold start, per second

{chr(10).join(cold_lines)}

### Server warnings and errors (the service's servers, all scenarios)

{log_summary}

## Targets (ratios from this run)

| target | measured | |
|---|---|---|
| warm Redis >= 0.8x ceiling throughput | {throughput_ratio:.2f}x ({warm.wrk["rps"]:,.0f} vs {ceiling.wrk["rps"]:,.0f} req/s) | {check(throughput_ratio >= 0.8)} |
| warm p99 <= 10x its p50 | p99/p50 = {tail:.1f} ({ms(warm.wrk["p99"])} / {ms(warm.wrk["p50"])} ms) | {check(tail <= 10)} |
| exactly 1 Redis round trip per hit, user token (throttle included) | HTTP, scenario 3: {rt_per_hit_http:.3f} (redis-server read events per server-counted hit; {cmds_per_hit_http:.2f} commands per hit); micro: {rt_micro:g} | {check(round(rt_per_hit_http, 2) <= 1.0 and abs(rt_micro - 1) < 1e-9)} |
| no DB query on a hit (scenario 3) | {warm.pg["xacts"]} transactions in {warm.window_s:.1f} s (idle background estimate {warm.db_background():.0f}, so {warm.db_net():.0f} for {warm.hits:,} hits, {warm.misses} misses); {warm.pg["table_scans"]} scans of the connections table | {check(warm.db_net() <= 0.5 and warm.pg["table_scans"] == 0)} |
| mix: DB queries per 1,000 requests <= writes + distinct cold misses | {mix_per_1000:.1f} net of background ({mix_per_1000_raw:.1f} raw) vs ({writes:,} writes + {mix.misses:,} misses) per 1,000 = {bound:.1f} | {check(mix_per_1000 <= bound)} |
| remote DB: cached p50 >= 40x lower than DB-only p50 (per request: 1 connection, 6d / 6c) | {remote_ratio:.1f}x ({ms(by["6d"].wrk["p50"])} vs {ms(by["6c"].wrk["p50"])} ms); the bare stack (1c, {ms(by["1c"].wrk["p50"])} ms) bounds it at {remote_ratio_bound:.1f}x, so 40x leaves a hit {(by["6d"].wrk["p50"] / 40 - by["1c"].wrk["p50"]):.0f} us over that stack for everything, while a GET over a bare socket alone takes {micro["socket_get_us"]:.0f} us here; at {CONNS} connections, where both queue: {remote_ratio_loaded:.1f}x ({ms(by["6a"].wrk["p50"])} vs {ms(by["6b"].wrk["p50"])} ms) | {check(remote_ratio >= 40)} |

### Against the seed's own stack (issue 14)

| measure | this service | Express seed | ratio | target | |
|---|---:|---:|---:|---|---|
| warm hits, {CONNS} conns, req/s (3 vs E3) | {warm.wrk["rps"]:,.0f} | {e_warm.wrk["rps"]:,.0f} | {vs_warm:.2f} | >= 1.00 | {check(vs_warm >= 1.0)} |
| warm hit, 1 conn, p50 ms (3c vs E3c) | {ms(by["3c"].wrk["p50"])} | {ms(e_one.wrk["p50"])} | {vs_p50:.2f} | <= 1.00 | {check(vs_p50 <= 1.0)} |
| DB only, {CONNS} conns, req/s (2 vs E2) | {db_only.wrk["rps"]:,.0f} | {e_db.wrk["rps"]:,.0f} | {vs_db:.2f} | >= 0.50 | {check(vs_db >= 0.5)} |

Bounds measured in this run: the ceiling (1: this stack with a cache that costs nothing) serves
{ceiling.wrk["rps"]:,.0f} req/s, {vs_warm_bound:.2f}x the seed's warm hits, and answers one connection at a p50 of
{ms(by["1c"].wrk["p50"])} ms, {vs_p50_bound:.2f}x the seed's; a warm-hit ratio above those needs a faster
stack (server, middleware, DRF, authentication), not a faster cache.

For comparison, the seed claims 200 ms -> 5 ms (40x) per hit and, for 100 concurrent dashboard
loads, 8 ms average / 15 ms P95, 90% hit rate, 95% fewer DB queries. DB-only vs mix here:
{db_only.db_per_req():.3f} vs {mix.db_per_req():.3f} DB queries/request
({(1 - mix.db_per_req() / db_only.db_per_req()) * 100:.0f}% fewer).

## Micro benchmark (in-process, bench/micro.py)

Django's WSGIHandler called directly ({micro["n"]:,} requests each, {micro["users"]} cached users, same
settings and Redis as above, no HTTP server):

| path | us per request |
|---|---:|
| /healthz (Django + middleware, JsonResponse) | {micro["healthz_us"]:.0f} |
| ceiling (+ DRF, JWT auth, permission, user-id check, JSONRenderer) | {micro["ceiling_us"]:.0f} |
| status hit (+ cache read) | {micro["hit_us"]:.0f} |
| `selectors.platform_status_for_user` alone, hit | {micro["selector_hit_us"]:.0f} |
| redis-py GET of an entry alone ({micro["entry_bytes"]} bytes) | {micro["redis_get_us"]:.0f} |
| the same GET over a bare socket (no client library: the round trip itself) | {micro["socket_get_us"]:.0f} |
| decoding that entry alone (header + SHA-256 of the document) | {micro["decode_entry_us"]:.1f} |

Redis round trips per hit: {rt_micro:g} (every `send_packed_command` by the request thread; the ceiling
view: {micro["ceiling_redis_round_trips"]:g}). DB queries per hit: {micro["db_queries_per_hit"]:g}; a DB connection was
{"opened" if micro["db_connection_opened"] else "never opened"} during the hits. Statuses: {micro["hit_statuses"]}.

```
{profile.strip()}
```

## Set-up

- Machine: {results.machine()}. Load generator, server, Redis and Postgres share the {os.cpu_count()} CPUs.
- Versions: {", ".join(f"{k} {val}" for k, val in v.items())}; the Express peer: {", ".join(f"{k} {val}" for k, val in peer_versions().items())}.
- Workers: {WORKERS_WHY.format(w=WORKERS, t=WEB_THREADS, c=os.cpu_count())}
- Postgres: the shared local server, own database `{h.db_name}` (created and dropped by the run,
  `VACUUM ANALYZE` after seeding). Redis: own redis-server, DB 12, key prefix `{h.prefix}`.
- Commands:

```
make bench   # = {PY} -m bench.run
{chr(10).join(h.commands)}
DJANGO_SETTINGS_MODULE=bench.settings DJANGO_DEBUG=0 LOG_LEVEL=warning BENCH_CEILING=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/{h.db_name} REDIS_URL=redis://127.0.0.1:{h.redis.port}/12 CACHE_KEY_PREFIX={h.prefix} THROTTLE_USER_RATE={THROTTLE_RATE} THROTTLE_IP_RATE={THROTTLE_RATE} PROMETHEUS_MULTIPROC_DIR=<a new directory> [BENCH_DB_LATENCY_MS={REMOTE_MS:g}] \\
  {" ".join(h.granian_cmd(workers=WORKERS, threads=WEB_THREADS)).replace(PY, "python")}
# 3t, 3s: the same environment (without PROMETHEUS_MULTIPROC_DIR) under
  {" ".join(h.gunicorn_cmd(workers=WORKERS, graceful_timeout=10, worker_class="gthread", threads=WEB_THREADS))}
  {" ".join(h.gunicorn_cmd(workers=WORKERS, graceful_timeout=10))}
# E rows (bench/peers/express-seed/, `npm ci` first):
NODE_ENV=production DATABASE_URL=postgres://postgres@127.0.0.1:5432/{h.db_name} [REDIS_URL=redis://127.0.0.1:{h.redis.port}/13] CACHE_KEY_PREFIX={h.prefix}-express: PORT={h.peer_port} WORKERS={WORKERS} PG_POOL_MAX=10 SUPABASE_JWT_SECRET=... node server.js
```

## Summary

```
{chr(10).join(summary)}
```

{chr(10).join(summary)}
"""
    latest = md.replace(
        "## Set-up", f"Chart: [{png.name}]({png.name})\n\n![chart]({png.name})\n\n## Set-up", 1
    )
    out = results.write(stem, latest, latest="latest.md")
    results.update_readme(
        f"Latest `make bench` ({stem}; the full report, with set-up, columns and notes, is "
        "[bench/results/latest.md](bench/results/latest.md)):\n\n"
        f"{table(rows).rstrip()}\n\n"
        "![make bench: throughput and latency per scenario](bench/results/latest.png)\n\n"
        "```\n" + "\n".join(summary) + "\n```\n"
    )
    print()
    print(table(rows))
    print("\n".join(cold_lines))
    print()
    print(disturbance.replace("**", ""))
    print(
        f"micro: hit {micro['hit_us']:.0f} us, ceiling {micro['ceiling_us']:.0f} us, healthz "
        f"{micro['healthz_us']:.0f} us per request in-process"
    )
    latest_md = results.shown(results.RESULTS / "latest.md")
    print(f"results: {results.shown(out)}, {results.shown(png)}, {latest_md}")
    print()
    print("\n".join(summary))
