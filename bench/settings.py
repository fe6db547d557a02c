"""The product's settings plus bench-only knobs; every app process a harness starts uses this
module (DJANGO_SETTINGS_MODULE=bench.settings).

BENCH_DB_LATENCY_MS  milliseconds slept before every query: a simulated remote database (0 = off)
BENCH_CEILING        route /api/bench/ceiling/<user_id>: a constant body through the same stack
BENCH_CACHE_MODE     service (default) | naive: the textbook cache-aside (tests/support/naive.py)
BENCH_HA_MODE        service (default) | naive: the pre-HA breaker and timeouts (tests/support/naive_ha.py)
"""

from __future__ import annotations

from connectors_site.settings import *  # noqa: F403
from connectors_site.settings import INSTALLED_APPS, envbool, envchoice, envfloat

BENCH_DB_LATENCY_MS = envfloat("BENCH_DB_LATENCY_MS", 0.0)
BENCH_CEILING = envbool("BENCH_CEILING", False)
BENCH_CACHE_MODE = envchoice("BENCH_CACHE_MODE", "service", ("service", "naive"))
BENCH_HA_MODE = envchoice("BENCH_HA_MODE", "service", ("service", "naive"))

INSTALLED_APPS = [*INSTALLED_APPS, "bench.app.BenchConfig"]
ROOT_URLCONF = "bench.urls"
