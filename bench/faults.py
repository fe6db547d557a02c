"""`make faults` (`python -m bench.faults`): the status service under load while Redis or Postgres
fail (a: redis kill -9, b: redis SIGSTOP/SIGCONT, c: postgres stop; issue 12's d: Sentinel
failover, e: Sentinel split brain, f: Cluster node failover, g: CPU overload: bench/faults_ha.py),
each with the service's configuration and the naive one, after a DB-only baseline; every read is
checked against the writes that returned before it. Exits 1 if a target fails for the service
configuration.

How each run goes, the options and what it writes: bench/README.md.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import faults_ha
from bench.faults_analysis import Analysis, KeyTimeline, Marks, Run, analyse
from bench.faults_ha import sleep_until
from bench.faults_options import HA_SCENARIOS, Options, naive_env, parse_options
from bench.faults_report import Verdict, fmt, report, summary_lines, verdict
from bench.harness import tools
from bench.harness.cpu import CpuWatch
from bench.harness.env import PY, app_env, make_log, make_secrets
from bench.harness.postgres import create_database
from bench.harness.procs import Harness, interrupt_on_termination
from bench.loadgen import Load
from tests.support.procs import PostgresCluster, postgres_bindir, sh

log = make_log("faults")
DB_NAME = "connectors_faults"


@dataclass(kw_only=True)
class FaultsHarness(Harness):
    """A throwaway Postgres cluster (stopping it cannot touch the shared server), a redis-server
    started afresh for every run, and gunicorn."""

    opts: Options
    cluster: PostgresCluster
    # Filled by setup(): what the app's own settings say, so the checks use its real values.
    info: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=make_secrets)

    @property
    def dsn(self) -> str:
        return self.cluster.url(DB_NAME)

    def psql(self, sql: str) -> str:
        return self.cluster.psql(sql, DB_NAME)

    def app_env(
        self,
        *,
        config: str,
        redis: bool,
        prefix: str,
        scenario: str = "",
        topology: dict[str, str] | None = None,
    ) -> dict[str, str]:
        env = app_env(
            database_url=self.dsn,
            redis_url=self.redis.url if redis else None,
            prefix=prefix,
            secret_env=self.secrets,
        )
        env.update(topology or {})  # a Sentinel set or a Cluster instead of the redis-server
        # The service-role token is exempt anyway; off also covers a throttle that changes.
        for rate in ("USER", "IP", "OAUTH_USER", "OAUTH_IP"):
            env[f"THROTTLE_{rate}_RATE"] = "off"
        if config == "naive":
            env.update(naive_env(scenario))
        return env

    def serve(self, env: dict[str, str], name: str) -> subprocess.Popen[Any]:
        log_path = self.tmp / f"gunicorn-{name}.log"
        return self.start_app(env, workers=self.opts.workers, log=log_path, graceful_timeout=5)

    def manage(self, args: list[str], env: dict[str, str], timeout: float = 300) -> str:
        return sh([PY, "manage.py", *args], env=env, timeout=timeout)

    def start_monitor(self, path: Path) -> tuple[subprocess.Popen[Any], float]:
        """`redis-cli MONITOR` on the run's redis-server, into `path`; with the offset from
        time.monotonic() (the load generator's clock) to Redis' timestamps (wall clock).
        Returns once MONITOR has answered OK, so nothing after this call is missed."""
        cmd = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.redis.port), "monitor"]
        with open(path, "wb") as out:
            proc = self.spawn(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not path.read_bytes().startswith(b"OK"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-cli monitor failed: {path.read_text()[-500:]!r}")
            time.sleep(0.01)
        return proc, time.time() - time.monotonic()


SETUP_SCRIPT = """
import io, json
from django.conf import settings
from django.core.management import call_command
from connectors.cache import platform_status_key
from connectors.management.commands.seed_demo import demo_user_id
from connectors.providers import PROVIDERS
out = io.StringIO()
call_command("issue_token", "--service-role", "--ttl", "7200", stdout=out)
print("FAULTS_JSON " + json.dumps({
    "token": out.getvalue().strip(),
    "providers": list(PROVIDERS),
    "users": [demo_user_id(i) for i in range(%d)],
    "grace": settings.CACHE_OUTBOX_GRACE_SECONDS,
    "sweep": settings.CACHE_OUTBOX_SWEEP_SECONDS,
    "cooldown": settings.CACHE_BREAKER_COOLDOWN_SECONDS,
    "threshold": settings.CACHE_BREAKER_THRESHOLD,
    "socket_timeout": settings.REDIS_SOCKET_TIMEOUT,
    "connect_timeout": settings.REDIS_CONNECT_TIMEOUT,
    "stale_if_error": settings.CACHE_STALE_IF_ERROR_SECONDS,
    "status_key": [demo_user_id(0), platform_status_key(demo_user_id(0))],
}))
"""


def setup(h: FaultsHarness) -> None:
    started = time.monotonic()
    h.cluster.init()
    create_database(h.cluster.url("postgres"), DB_NAME)
    env = h.app_env(config="service", redis=False, prefix="faults-setup")
    h.manage(["migrate", "--noinput", "-v", "0"], env)
    seeded = h.manage(["seed_demo", "--users", str(h.opts.users)], env).strip().splitlines()
    h.psql("VACUUM ANALYZE")
    out = h.manage(["shell", "-v", "0", "-c", SETUP_SCRIPT % h.opts.users], env)
    line = next(x for x in out.splitlines() if x.startswith("FAULTS_JSON "))
    h.info = json.loads(line[len("FAULTS_JSON ") :])
    rows = h.psql("select count(*) from connectors_platformconnection").strip()
    log(
        f"postgres on :{h.cluster.port}, redis on :{h.redis.port}, gunicorn on :{h.http_port}; "
        f"{seeded[-1] if seeded else 'seeded'} ({rows} rows); setup {time.monotonic() - started:.0f} s"
    )


def inject(h: FaultsHarness, scenario: str, name: str, t0: float) -> tuple[float, float]:
    """The scenario's fault at t0 + fault_at, and its end; when each happened."""
    o = h.opts
    sleep_until(t0 + o.fault_at)
    fault_start = time.monotonic()
    if scenario == "c":
        h.cluster.stop("fast")
        log(f"  {name}: postgres stopped")
        sleep_until(t0 + o.fault_at + o.pg_down)
        h.cluster.start()
        log(f"  {name}: postgres started")
        return fault_start, time.monotonic()
    if scenario == "a":
        h.redis.kill()
        log(f"  {name}: redis killed")
    else:
        h.redis.pause()
        log(f"  {name}: redis paused")
    sleep_until(t0 + o.recover_at)
    if scenario == "a":
        h.start_redis()  # same port, empty: no persistence
    else:
        h.redis.resume()
    recovered = time.monotonic()
    log(f"  {name}: redis {'restarted (empty)' if scenario == 'a' else 'resumed'}")
    return fault_start, recovered


def run_one(h: FaultsHarness, scenario: str, config: str) -> Run:
    o = h.opts
    name = f"{scenario}-{config}"
    redis = scenario != "baseline"
    ha = scenario in HA_SCENARIOS
    seconds = o.baseline if scenario == "baseline" else o.duration
    if ha:
        # The split brain lasts until Sentinel demotes the old master, ~10 s after it is back.
        seconds = o.ha_duration + (5 if scenario == "e" else 0)
    prefix = f"faults-{os.getpid()}-{name}"
    monitor: subprocess.Popen[Any] | None = None
    monitor_path, clock_offset = h.tmp / f"monitor-{name}.log", 0.0
    topology: faults_ha.Topology | None = None
    if scenario in ("d", "e", "f"):
        topology = faults_ha.Topology.start(scenario, h.tmp / f"redis-{name}")
        h.on_cleanup(topology.stop)
    elif redis:
        h.start_redis()
    if scenario == "c":
        # Redis stays up in scenario c: record every command it executes from before the
        # warm-up on, so that the analysis knows which users' entries it held at any moment.
        monitor, clock_offset = h.start_monitor(monitor_path)
    # Rows the naive config never replays must not leak into the next run.
    h.psql("TRUNCATE connectors_pendinginvalidation")
    env = h.app_env(
        config=config,
        redis=redis and topology is None,
        prefix=prefix,
        scenario=scenario,
        topology=topology.env if topology else None,
    )
    # Started before gunicorn so that both boot at once: the run budget is tight on 2 cores.
    warmers = h.start_warm_cache(h.info["users"], env) if redis else []
    app = h.serve(env, name)
    warm_note = ""
    try:
        warm_started = time.monotonic()
        h.wait_warm_cache(warmers)
        if warmers:
            warm_note = f"{len(h.info['users']):,} users warmed by 2 x warm_cache (+{time.monotonic() - warm_started:.1f} s after gunicorn was up)"
        cfg = {
            "port": h.http_port,
            "token": h.info["token"],
            "users": h.info["users"],
            "providers": h.info["providers"],
            "dsn": h.dsn,
            "rate": o.rate,
            "seconds": seconds,
            "threads": o.threads,
            "zipf_s": o.zipf_s,
            "write_pct": o.ha_write_pct if scenario in ("d", "e") else o.write_pct,
            "reset_share": o.reset_share,
            "seed": 1000 + len(name),
        }
        cfg_path, out_path = h.tmp / f"load-{name}.json", h.tmp / f"out-{name}.json"
        cfg_path.write_text(json.dumps(cfg))
        loader = h.spawn(
            [PY, "-m", "bench.loadgen", str(cfg_path), str(out_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert loader.stdout is not None
        first = loader.stdout.readline()
        if not first.startswith("START "):
            raise RuntimeError(f"load generator failed to start: {first!r}")
        t0 = float(first.split()[1])
        watch = CpuWatch(also_ours=h.cluster.postmaster_pid)
        watch.start()
        fault_start = recovered = None
        marks: Marks | None = None
        if ha:
            marks = faults_ha.inject(
                scenario, topology, h.info["users"], t0, o, h.spawn, h.stop, log
            )
            fault_start, recovered = marks.fault_start, marks.recovered
            for note in marks.notes:
                log(f"  {name}: {note}")
        elif scenario != "baseline":
            fault_start, recovered = inject(h, scenario, name, t0)
        loader.wait(timeout=seconds + 90)
        other_cpu = watch.stop()
        h.forget(loader)
        if loader.returncode != 0:
            raise RuntimeError(f"load generator exited with {loader.returncode}")
        data = json.loads(out_path.read_text())
        checked: list[int] = []
        lost: list[int] | None = None
        if topology is not None:
            # Every write has had its invalidation, replay included, by now; then each user
            # written to is read once more, as the next user to ask would see it.
            time.sleep(float(h.info["grace"]) + float(h.info["sweep"]) + 1.0)
            checked = sorted(
                {w[0] for w in data["writes"] if w[4] == 200} | {x[0] for x in data["external"]}
            )
            lost = faults_ha.check_invalidations(Load(cfg), checked)
            log(f"  {name}: {len(lost)} of {len(checked)} written users read older than the DB")
    finally:
        h.stop(app)
        if topology is not None:
            topology.stop()
        elif redis:
            h.redis.stop()
        if monitor is not None:
            h.stop(monitor)  # normally gone already: redis-cli exits with its server
    log_text = (h.tmp / f"gunicorn-{name}.log").read_text(errors="replace")
    keys = None
    if monitor is not None:
        user_id, status_key = h.info["status_key"]
        keys = KeyTimeline.parse(
            monitor_path,
            prefix=prefix,
            status_key=status_key.replace(user_id, "{user}"),
            users=h.info["users"],
            clock_offset=clock_offset,
        )
    return Run(
        scenario,
        config,
        t0,
        t0 + seconds,
        fault_start,
        recovered,
        data,
        log_text,
        warm_note,
        other_cpu,
        keys,
        marks,
        len(checked),
        lost,
    )


def pg_bindir() -> Path:
    found = os.environ.get("FAULTS_PG_BIN") or postgres_bindir()
    if found is None:
        sys.exit("make faults needs PostgreSQL's server programs (set FAULTS_PG_BIN to their bin/)")
    return Path(found)


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    bindir = pg_bindir()
    tools.require("faults", "redis-server", "redis-cli", "psql")
    tools.require("faults", str(bindir / "initdb"), str(bindir / "pg_ctl"))
    tools.require_gunicorn("faults")
    started = time.monotonic()
    h = FaultsHarness.in_temp_dir("faults-", opts=opts, cluster=PostgresCluster(bindir))
    h.on_cleanup(h.cluster.destroy)
    atexit.register(h.cleanup)
    interrupt_on_termination()
    log(
        f"phase timings: runs {opts.duration:g} s, Redis fault at {opts.fault_at:g} s and recovery "
        f"at {opts.recover_at:g} s, Postgres down {opts.fault_at:g}-{opts.fault_at + opts.pg_down:g} s, "
        f"baseline {opts.baseline:g} s; {opts.rate:g} ops/s, {opts.workers} gunicorn workers"
    )
    try:
        setup(h)
        analyses: list[Analysis] = []
        plan = [("baseline", "db-only")] + [(s, c) for s in opts.scenarios for c in opts.configs]
        for scenario, config in plan:
            log(f"run {scenario}/{config}")
            a = analyse(run_one(h, scenario, config), opts, h.info)
            analyses.append(a)
            if a.ha is not None and a.ha.examples:
                log(
                    f"  stale reads (user, read start/end, last write, s after the fault): {a.ha.examples}"
                )
            for p in a.phases:
                log(
                    f"  {p.name}: {p.reads} reads, p99 {fmt(p.read_p99)} ms, non-2xx {p.non_2xx}, "
                    f"hit {fmt(None if p.hit_ratio is None else p.hit_ratio * 100)}%, "
                    f"stale {p.stale_api}/{p.stale_ext}"
                )
        baseline = next((a for a in analyses if a.run.scenario == "baseline"), None)
        verdicts: dict[str, Verdict] = {
            config: verdict([a for a in analyses if a.run.config == config], baseline, opts)
            for config in opts.configs
        }
        md, path = report(
            opts,
            h.info,
            analyses,
            verdicts,
            elapsed=time.monotonic() - started,
            postgres_port=h.cluster.port,
        )
        log(f"wrote {path} and {path.with_name('faults-latest.md')}")
    finally:
        h.cleanup()
        log("cleaned up: servers stopped, temp dirs removed")
    print()
    print(md[md.index("## Per scenario") : md.index("## Summary")].strip())
    print()
    for config, prefix in (("service", ""), ("naive", "naive ")):
        if config in verdicts:
            for line in summary_lines(verdicts[config], prefix):
                print(line)
    service = verdicts.get("service")
    return 0 if service is None or all(ok for _n, _m, ok in service.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
