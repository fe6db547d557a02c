"""All configuration comes from the environment, read once here.

Every variable is documented in `.env.example`. Bad values stop start-up with one
`ImproperlyConfigured` listing every problem, one line each, each naming the variable and what
it accepts (healthchecks' `hc/settings.py` is the model: tiny helpers, loud failures); manage.py
and wsgi.py print those lines without a traceback (connectors_site/startup.py).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Every problem found, reported together at the end: one restart fixes them all.
_errors: list[str] = []


def _fail(message: str) -> None:
    _errors.append(message)


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    _fail(f"{name}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no.")
    return default


def envint(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        _fail(f"{name}={raw!r} is not a whole number.")
        return default
    if value < minimum:
        _fail(f"{name}={raw!r} must be at least {minimum}.")
        return default
    return value


def envfloat(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        _fail(f"{name}={raw!r} is not a number (seconds, e.g. 0.25).")
        return default
    if value < minimum:
        _fail(f"{name}={raw!r} must be at least {minimum}.")
        return default
    return value


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def envurl(name: str, default: str = "", *, debug: bool, example: str = "") -> str:
    value = envstr(name, default)
    return checked_url(name, value, debug=debug, example=example) if value else value


def checked_url(name: str, value: str, *, debug: bool, example: str = "") -> str:
    """An http(s) URL this server calls: https, or plain http to a loopback IP (a local sidecar,
    the test suite's stand-ins), or anything http(s) with DJANGO_DEBUG (connectors.outbound
    enforces the same rule on every request). "" (and an error) for anything else."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        _fail(f"{name}={value!r} must be an https:// URL{example}.")
        return ""
    if parts.scheme == "http" and not debug:
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            _fail(
                f"{name}={value!r} must use https (plain http only to 127.0.0.1 / ::1, or "
                "with DJANGO_DEBUG=1)."
            )
            return ""
    return value


def envchoice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = envstr(name, default).lower()
    if value not in choices:
        _fail(f"{name}={value!r} is not one of: {', '.join(choices)}.")
        return default
    return value


def envlist(name: str, default: str = "") -> list[str]:
    """A comma-separated list, blanks dropped."""
    return [item.strip() for item in envstr(name, default).split(",") if item.strip()]


DEBUG = envbool("DJANGO_DEBUG", False)

# Development conveniences (a fixed secret key, a derived JWT secret and encryption key) exist
# only with DJANGO_DEBUG on, so `make run` needs no configuration while a production process
# without real secrets refuses to start.
_DEV_SECRET = "dev-only-insecure-secret-key-do-not-use-in-production"  # noqa: S105 - DEBUG only
SECRET_KEY = envstr("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        _fail(
            "DJANGO_SECRET_KEY is not set. Generate one with "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(50))'` "
            "(or set DJANGO_DEBUG=1 for local development)."
        )
    SECRET_KEY = _DEV_SECRET

ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
if not ALLOWED_HOSTS:
    _fail("DJANGO_ALLOWED_HOSTS is empty: list host names, comma-separated.")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # runserver leaves static files to whitenoise too, so development serves them as
    # production does.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    # Admin login brute-force protection (failed logins per IP and per username, database).
    "axes",
    # OpenAPI schema at /api/schema/; the sidecar ships Swagger UI / Redoc so docs work offline.
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # django.tasks' ORM backend: extraction jobs' tasks live in the same Postgres.
    "django_tasks_db",
    "connectors.apps.ConnectorsConfig",
    "extraction.apps.ExtractionConfig",
]

MIDDLEWARE = [
    # Outermost: every response, static files and redirects included, gets a request id, is
    # timed, and is logged once if it is an error.
    "connectors.middleware.RequestIdMiddleware",
    "connectors.middleware.RequestMetricsMiddleware",
    "connectors.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Answers status hits itself, after everything above has shaped the response and before
    # what a hit does not use (connectors/api/fastpath.py; API_FAST_PATH).
    "connectors.api.fastpath.StatusFastPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Last, as django-axes requires: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]
# django-axes' backend first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "connectors_site.urls"
WSGI_APPLICATION = "connectors_site.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


# --- Database -------------------------------------------------------------------------------
def _database_config(pooler: str, variable: str = "DATABASE_URL") -> dict[str, Any]:
    url = envstr(variable)
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(BASE_DIR / "db.sqlite3"),
        }
    scheme = urlsplit(url).scheme
    if scheme not in {"postgres", "postgresql", "sqlite"}:
        _fail(
            f"{variable} has scheme {scheme!r}: use postgres://user:pass@host:5432/db "
            "(query options such as ?sslmode=require are passed to psycopg) or sqlite:///path."
        )
        return {"ENGINE": "django.db.backends.dummy"}
    try:
        # Unknown query options (sslmode, sslrootcert, options, ...) land in OPTIONS and so reach
        # psycopg unchanged.
        config: dict[str, Any] = dict(
            dj_database_url.parse(url, conn_max_age=envint("DATABASE_CONN_MAX_AGE", 60))
        )
    except ValueError as e:
        _fail(f"{variable} could not be parsed: {e}")
        return {"ENGINE": "django.db.backends.dummy"}
    if scheme == "sqlite":
        return config
    # Django's backend, with a health check that reads the socket instead of sending SELECT 1
    # before each request's first query (connectors_site/db/postgresql/base.py).
    config["ENGINE"] = "connectors_site.db.postgresql"
    config["CONN_HEALTH_CHECKS"] = True
    # Supavisor's transaction mode (port 6543) hands each transaction a different server
    # connection: server-side cursors (named cursors spanning transactions) break there. Django's
    # psycopg backend already turns prepared statements off (prepare_threshold=None).
    if pooler == "transaction" or (pooler == "auto" and urlsplit(url).port == 6543):
        config["DISABLE_SERVER_SIDE_CURSORS"] = True
    query = dict(parse_qsl(urlsplit(url).query))
    if "connect_timeout" not in query:
        config.setdefault("OPTIONS", {})["connect_timeout"] = envint("DATABASE_CONNECT_TIMEOUT", 5)
    return config


DATABASES = {
    "default": _database_config(
        envchoice("DATABASE_POOLER", "auto", ("auto", "session", "transaction", "none"))
    )
}
# A transaction pooler (pgbouncer's transaction mode, Supavisor on 6543) delivers no NOTIFY, so
# `listen_invalidations` refuses it and takes LISTEN_DATABASE_URL (direct or session mode).
DATABASE_TRANSACTION_POOLER = bool(DATABASES["default"].get("DISABLE_SERVER_SIDE_CURSORS"))
LISTEN_DATABASE = (
    _database_config("session", "LISTEN_DATABASE_URL") if envstr("LISTEN_DATABASE_URL") else None
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# --- Cache ----------------------------------------------------------------------------------
REDIS_URL = envstr("REDIS_URL") or envstr("UPSTASH_REDIS_URL")
CACHE_KEY_PREFIX = envstr("CACHE_KEY_PREFIX", "connectors")
if not CACHE_KEY_PREFIX or any(c in CACHE_KEY_PREFIX for c in "{}* \t\n"):
    # Braces would hijack the per-user Redis Cluster hash tag ({user_id}) in every key.
    _fail(f"CACHE_KEY_PREFIX={CACHE_KEY_PREFIX!r} must be non-empty without braces, '*' or spaces.")
# Tens of milliseconds: on a local network a healthy Redis answers in well under 1 ms, and an
# unhealthy one should cost a request as little as possible before it falls back to the DB.
# With the breaker's threshold of 2, a paused Redis costs each worker 2 x 25 ms once; a
# remote Redis (Upstash, TLS) wants a few hundred ms instead.
REDIS_SOCKET_TIMEOUT = envfloat("REDIS_SOCKET_TIMEOUT", 0.025, minimum=0.001)
REDIS_CONNECT_TIMEOUT = envfloat("REDIS_CONNECT_TIMEOUT", 0.025, minimum=0.001)
REDIS_TLS_CA_FILE = envstr("REDIS_TLS_CA_FILE")
# Sentinel: REDIS_SENTINELS lists the sentinels and REDIS_URL names the service instead of a host
# (django-redis' convention). Cluster: REDIS_CLUSTER=1 and REDIS_URL is any one node. Credentials
# and rediss:// come from REDIS_URL in every shape. docs/architecture.md ("Failover").
REDIS_SENTINELS = envstr("REDIS_SENTINELS")
REDIS_SENTINEL_USERNAME = envstr("REDIS_SENTINEL_USERNAME")
REDIS_SENTINEL_PASSWORD = envstr("REDIS_SENTINEL_PASSWORD")
REDIS_CLUSTER = envbool("REDIS_CLUSTER", False)
# An invalidation counts as delivered once this many replicas acknowledged it (WAIT), or the
# node is confirmed master after the DEL; 0 turns WAIT off (the default without replicas).
REDIS_WAIT_REPLICAS = envint("REDIS_WAIT_REPLICAS", 1 if REDIS_SENTINELS or REDIS_CLUSTER else 0)


def _redis_tls_ca_file(path: str) -> str:
    if path:
        try:
            ssl.create_default_context(cafile=path)
        except (OSError, ssl.SSLError) as e:
            reason = getattr(e, "strerror", None) or e
            _fail(
                f"REDIS_TLS_CA_FILE={path!r} cannot be loaded ({reason}): "
                "point it at a readable PEM file of CA certificates, or leave it empty to verify "
                "against the system's CAs."
            )
            return ""
    return path


def _sentinel_addresses(raw: str) -> list[tuple[str, int]]:
    addresses = []
    for item in (part.strip() for part in raw.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            _fail(
                f"REDIS_SENTINELS has {item!r}: list host:port pairs, comma-separated "
                "(e.g. 10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379)."
            )
            continue
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def _redis_topology_options(url: str) -> dict[str, Any]:
    """CACHES OPTIONS for Sentinel or Cluster on top of the single-node ones (none for those)."""
    if REDIS_SENTINELS and REDIS_CLUSTER:
        _fail("Set REDIS_SENTINELS or REDIS_CLUSTER=1, not both.")
        return {}
    parts = urlsplit(url)
    if REDIS_CLUSTER:
        if parts.path.strip("/") not in ("", "0"):
            _fail(
                f"REDIS_URL selects database {parts.path.strip('/')!r}: Redis Cluster has only "
                "database 0 (use CACHE_KEY_PREFIX to share a cluster)."
            )
        return {"CLIENT_CLASS": "connectors.cache.clients.ClusterClient"}
    if not REDIS_SENTINELS:
        return {}
    if parts.port is not None or not parts.hostname:
        _fail(
            "With REDIS_SENTINELS set, REDIS_URL names the Sentinel service instead of a host: "
            "redis://[user:password@]<service name>/0 (rediss:// for TLS)."
        )
        return {}
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
        "username": REDIS_SENTINEL_USERNAME or None,
        "password": REDIS_SENTINEL_PASSWORD or None,
    }
    if parts.scheme == "rediss":  # the sentinels speak TLS too, verified the same way
        sentinel_kwargs.update(ssl=True, ssl_cert_reqs="required")
        if REDIS_TLS_CA_FILE:
            sentinel_kwargs["ssl_ca_certs"] = REDIS_TLS_CA_FILE
    return {
        "CLIENT_CLASS": "django_redis.client.SentinelClient",
        "CONNECTION_FACTORY": "connectors.cache.clients.SentinelFactory",
        "SENTINELS": _sentinel_addresses(REDIS_SENTINELS),
        "SENTINEL_KWARGS": sentinel_kwargs,
    }


CACHE_ENABLED = bool(REDIS_URL)
if CACHE_ENABLED:
    _redis_scheme = urlsplit(REDIS_URL).scheme
    if _redis_scheme not in {"redis", "rediss", "unix"}:
        _fail(
            f"REDIS_URL has scheme {_redis_scheme!r}: use redis://[:password@]host:6379/0, "
            "rediss:// for TLS (Upstash), or unix:///path/to/redis.sock."
        )
    REDIS_TLS_CA_FILE = _redis_tls_ca_file(REDIS_TLS_CA_FILE)
    _pool_kwargs: dict[str, Any] = {
        "health_check_interval": 30,
        # A pooled connection the server closed while idle (Upstash, `timeout` in redis.conf)
        # fails on first use: reconnect and retry that command once instead of failing. Only
        # connection errors are retried, so a paused server still costs one timeout, not two.
        # (redis-py's Retry would retry timeouts too by default: a paused server would then
        # cost every call two socket timeouts.)
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    if _redis_scheme == "rediss":
        _pool_kwargs["ssl_cert_reqs"] = "required"
        if REDIS_TLS_CA_FILE:
            _pool_kwargs["ssl_ca_certs"] = REDIS_TLS_CA_FILE
    CACHES: dict[str, dict[str, Any]] = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # JSON, never pickle: a value planted in a shared Redis must not become code.
                "SERIALIZER": "connectors.cache.serializer.TaggedJSONSerializer",
                "SOCKET_CONNECT_TIMEOUT": REDIS_CONNECT_TIMEOUT,
                "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
                # Redis failures degrade to the database instead of failing the request.
                "IGNORE_EXCEPTIONS": True,
                "CONNECTION_POOL_KWARGS": _pool_kwargs,
                **_redis_topology_options(REDIS_URL),
            },
        }
    }
else:
    # The connectors.W001 system check says so (connectors/checks.py).
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_LOGGER = "connectors.cache"
# API throttling counters (connectors/api/throttling.py): the same Redis when there is one, so
# limits hold across processes; else per-process memory, so a zero-config `make run` throttles too.
if CACHE_ENABLED:
    CACHES["throttle"] = {**CACHES["default"]}
else:
    CACHES["throttle"] = {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "throttle",
    }

# Lease (Facebook memcache, NSDI 2013, section 3.2.1): how long a cold-miss filler may hold the
# right to fill before another reader may take over, and how long the others wait for it.
CACHE_LEASE_MS = envint("CACHE_LEASE_MS", 1000, minimum=10)
CACHE_LEASE_WAIT_MS = envint("CACHE_LEASE_WAIT_MS", 1500, minimum=0)
# XFetch (Vattani et al., VLDB 2015): beta = 1 is the paper's optimum; 0 turns early refresh off.
CACHE_XFETCH_BETA = envfloat("CACHE_XFETCH_BETA", 1.0)
# Scales every TTL of the cache layer (connectors/cache/keys.py): benchmarks use it to watch
# many expiries quickly.
CACHE_TTL_SCALE = envfloat("CACHE_TTL_SCALE", 1.0, minimum=0.001)
# Circuit breaker around every Redis call: this many consecutive failures skip Redis for the
# cool-down, then one probe tests it (0 turns the breaker off: django-redis' plain behaviour).
CACHE_BREAKER_THRESHOLD = envint("CACHE_BREAKER_THRESHOLD", 2)
CACHE_BREAKER_COOLDOWN_SECONDS = envfloat("CACHE_BREAKER_COOLDOWN_SECONDS", 2.0, minimum=0.01)
# Undelivered invalidations (connectors/cache/outbox.py): how often each process looks for them
# (0 = never), and how old a pending row must be before it counts as undelivered.
CACHE_OUTBOX_SWEEP_SECONDS = envfloat("CACHE_OUTBOX_SWEEP_SECONDS", 0.5)
CACHE_OUTBOX_GRACE_SECONDS = envfloat("CACHE_OUTBOX_GRACE_SECONDS", 1.0)
# After an outage each process re-reads (through the cache) up to this many users it served
# last, so a Redis that came back empty is warm again within a second or two (0 = off).
CACHE_WARM_ON_RECOVERY = envint("CACHE_WARM_ON_RECOVERY", 1000)
# If Redis came back empty, one process also re-warms up to this many most recently active
# users, as `manage.py warm_cache` would (0 = off).
CACHE_WARM_ON_EMPTY = envint("CACHE_WARM_ON_EMPTY", 10000)
# How long past its TTL an entry may still be served while the database is down
# (RFC 5861 stale-if-error); Redis keeps entries this much longer than their TTL.
CACHE_STALE_IF_ERROR_SECONDS = envint("CACHE_STALE_IF_ERROR_SECONDS", 300)
# Delivered invalidations are kept this long and replayed when Redis' master changes (failover,
# restart): no entry is served fresh past its TTL, so the status TTL covers every DEL a changed
# master could have lost (docs/architecture.md, "Failover").
CACHE_OUTBOX_RETENTION_SECONDS = envfloat(
    "CACHE_OUTBOX_RETENTION_SECONDS", 300 * CACHE_TTL_SCALE, minimum=0.0
)


# --- Supabase and secrets -------------------------------------------------------------------
SUPABASE_URL = envurl(
    "SUPABASE_URL", debug=DEBUG, example=": the project URL, e.g. https://<ref>.supabase.co"
).rstrip("/")
# Two ways to verify access tokens, either or both: the project's JWKS (ES256 / RS256 signing
# keys, what Supabase issues today) at SUPABASE_URL/auth/v1/.well-known/jwks.json, and the legacy
# HS256 shared secret, accepted only when SUPABASE_JWT_SECRET is set.
SUPABASE_JWT_SECRET = envstr("SUPABASE_JWT_SECRET")
if not SUPABASE_JWT_SECRET and DEBUG and not SUPABASE_URL:
    # Zero-config `make run` only: with a real project configured, HS256 stays off unless asked.
    SUPABASE_JWT_SECRET = hashlib.sha256(f"jwt:{SECRET_KEY}".encode()).hexdigest()
if not SUPABASE_JWT_SECRET and not SUPABASE_URL:
    _fail(
        "Neither SUPABASE_URL nor SUPABASE_JWT_SECRET is set, so no access token could be "
        "verified: set SUPABASE_URL=https://<ref>.supabase.co (tokens are checked against the "
        "project's JWKS), and/or SUPABASE_JWT_SECRET to the legacy HS256 JWT secret "
        "(or set DJANGO_DEBUG=1 for a local development secret)."
    )
if SUPABASE_JWT_SECRET and len(SUPABASE_JWT_SECRET) < 32:
    _fail("SUPABASE_JWT_SECRET must be at least 32 characters long.")
SUPABASE_SERVICE_ROLE_KEY = envstr("SUPABASE_SERVICE_ROLE_KEY")
# The project's anon (publishable) key: the `apikey` header strict mode sends to Supabase Auth.
SUPABASE_ANON_KEY = envstr("SUPABASE_ANON_KEY")
JWT_LEEWAY_SECONDS = envint("JWT_LEEWAY_SECONDS", 30)
# The `iss` users' tokens must carry. Empty: <SUPABASE_URL>/auth/v1 (Supabase's own), or with
# HS256 only and no SUPABASE_URL, "supabase" (what manage.py issue_token signs with).
SUPABASE_JWT_ISSUER = envstr("SUPABASE_JWT_ISSUER")
# Longest accepted user-token lifetime (exp - iat): Supabase's own maximum JWT expiry is a week.
JWT_MAX_LIFETIME_SECONDS = envint("JWT_MAX_LIFETIME_SECONDS", 7 * 24 * 3600, minimum=60)
# Supabase's JWKS is edge-cached for 10 minutes, so caching it as long again is safe.
JWKS_CACHE_SECONDS = envint("JWKS_CACHE_SECONDS", 600, minimum=1)
# Short: a request waits at most this long for the JWKS before answering 503 auth_unavailable.
JWKS_TIMEOUT = envfloat("JWKS_TIMEOUT", 2.0, minimum=0.05)
# Minimum seconds between two JWKS fetches, whatever asks for one (an unknown kid, expiry, a
# failed fetch): a flood of tokens with random kids, or a failing JWKS, cannot turn into a flood
# of fetches.
JWKS_REFRESH_COOLDOWN_SECONDS = envfloat("JWKS_REFRESH_COOLDOWN_SECONDS", 30.0)
# How long past JWKS_CACHE_SECONDS the last good key set keeps verifying while fetches fail. A
# key revoked during an outage verifies at most this much longer; 0 = answer 503 instead.
JWKS_STALE_IF_ERROR_SECONDS = envint("JWKS_STALE_IF_ERROR_SECONDS", 3600)
# Strict mode: callback, disconnect and reset also ask Supabase Auth (GET /auth/v1/user) whether
# the session behind the token still exists (a signed-out or deleted user's token stays valid
# until it expires). One network call per sensitive write.
SUPABASE_STRICT_WRITES = envbool("SUPABASE_STRICT_WRITES", False)
SUPABASE_AUTH_TIMEOUT = envfloat("SUPABASE_AUTH_TIMEOUT", 2.0, minimum=0.05)
_SUPABASE_API_KEY = SUPABASE_ANON_KEY or SUPABASE_SERVICE_ROLE_KEY
if SUPABASE_STRICT_WRITES and not (SUPABASE_URL and _SUPABASE_API_KEY):
    _fail(
        "SUPABASE_STRICT_WRITES=1 needs SUPABASE_URL and SUPABASE_ANON_KEY (or "
        "SUPABASE_SERVICE_ROLE_KEY) to call Supabase Auth."
    )


def _fernet_keys() -> list[str]:
    raw = envstr("TOKEN_ENCRYPTION_KEY")
    if not raw:
        if not DEBUG:
            _fail(
                "TOKEN_ENCRYPTION_KEY is not set. Generate one with `python3 -c 'import base64, "
                "os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'` (a Fernet key)."
            )
            return []
        return [
            base64.urlsafe_b64encode(
                hashlib.sha256(f"fernet:{SECRET_KEY}".encode()).digest()
            ).decode()
        ]
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    for key in keys:
        try:
            if len(base64.urlsafe_b64decode(key.encode())) != 32:
                raise ValueError
        except ValueError:
            _fail(
                "TOKEN_ENCRYPTION_KEY must be comma-separated Fernet keys (newest first), each 32 "
                "url-safe base64-encoded bytes, as Fernet.generate_key() prints."
            )
            return []
    return keys


TOKEN_ENCRYPTION_KEYS = _fernet_keys()


# --- OAuth providers ------------------------------------------------------------------------
OAUTH_REDIRECT_URI = envstr("OAUTH_REDIRECT_URI", "http://127.0.0.1:8000/oauth/callback")
OAUTH_HTTP_TIMEOUT = envfloat("OAUTH_HTTP_TIMEOUT", 10.0, minimum=0.1)
# Per provider: OAUTH_<PROVIDER>_CLIENT_ID / _CLIENT_SECRET, and optionally _AUTHORIZE_URL /
# _TOKEN_URL to point at another endpoint (tests point them at a local server). Read for any
# <PROVIDER>, so a provider added to the registry (connectors/providers.py) needs nothing here;
# names the registry does not know are reported by the connectors.W002 system check.
_OAUTH_VARIABLE = re.compile(
    r"OAUTH_([A-Z0-9_]+?)_(CLIENT_ID|CLIENT_SECRET|AUTHORIZE_URL|TOKEN_URL)"
)


def oauth_clients(environ: Mapping[str, str], *, debug: bool) -> dict[str, dict[str, str]]:
    clients: dict[str, dict[str, str]] = {}
    for variable, raw in environ.items():
        match = _OAUTH_VARIABLE.fullmatch(variable)
        value = raw.strip()
        if match and value:
            if match[2].endswith("_URL"):
                value = checked_url(variable, value, debug=debug)
            clients.setdefault(match[1].lower(), {})[match[2].lower()] = value
    return clients


OAUTH_CLIENTS = oauth_clients(os.environ, debug=DEBUG)


# --- Extraction (syncs run by `manage.py run_worker`, docs/extraction.md) -----------------
# Tasks are rows in the same database, written in the transaction that creates the job, and
# claimed by workers with SELECT ... FOR UPDATE SKIP LOCKED (django-tasks-db).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
_API_BASE_VARIABLE = re.compile(r"PROVIDER_API_BASE_([A-Z0-9_]+)")


def provider_api_bases(environ: Mapping[str, str], *, debug: bool) -> dict[str, str]:
    """PROVIDER_API_BASE_<NAME>: another API root per provider (GitHub Enterprise, tests). https,
    or plain http only to a loopback IP or with DJANGO_DEBUG (connectors.outbound's rule)."""
    bases: dict[str, str] = {}
    for variable, raw in environ.items():
        match = _API_BASE_VARIABLE.fullmatch(variable)
        value = raw.strip().rstrip("/")
        if not match or not value:
            continue
        if urlsplit(value).query:
            _fail(f"{variable}={raw!r} must be an https:// URL without a query string.")
        elif checked_url(variable, value, debug=debug):
            bases[match[1].lower()] = value
    return bases


PROVIDER_API_BASES = provider_api_bases(os.environ, debug=DEBUG)
# One provider request (connect + headers + body) may take at most this long, and its body at
# most this many bytes (connectors.outbound enforces both).
EXTRACTION_HTTP_DEADLINE = envfloat("EXTRACTION_HTTP_DEADLINE", 30.0, minimum=0.1)
EXTRACTION_MAX_RESPONSE_BYTES = envint(
    "EXTRACTION_MAX_RESPONSE_BYTES", 5 * 1024 * 1024, minimum=1024
)
# 5xx answers and network errors are retried this many times, after exponential backoff from
# EXTRACTION_RETRY_BACKOFF_SECONDS (jittered, capped at EXTRACTION_RETRY_BACKOFF_MAX_SECONDS).
EXTRACTION_HTTP_RETRIES = envint("EXTRACTION_HTTP_RETRIES", 3)
EXTRACTION_RETRY_BACKOFF_SECONDS = envfloat("EXTRACTION_RETRY_BACKOFF_SECONDS", 1.0)
EXTRACTION_RETRY_BACKOFF_MAX_SECONDS = envfloat("EXTRACTION_RETRY_BACKOFF_MAX_SECONDS", 30.0)
# A running job whose worker has not reported for this long is presumed dead (killed, host
# lost): it is queued again, at most EXTRACTION_MAX_RECOVERIES times, then failed. Workers look
# for such jobs every EXTRACTION_RECOVER_INTERVAL_SECONDS.
EXTRACTION_STALE_SECONDS = envfloat("EXTRACTION_STALE_SECONDS", 300.0, minimum=1.0)
EXTRACTION_RECOVER_INTERVAL_SECONDS = envfloat(
    "EXTRACTION_RECOVER_INTERVAL_SECONDS", 30.0, minimum=0.05
)
EXTRACTION_MAX_RECOVERIES = envint("EXTRACTION_MAX_RECOVERIES", 3)
if EXTRACTION_STALE_SECONDS <= EXTRACTION_HTTP_DEADLINE + EXTRACTION_RETRY_BACKOFF_MAX_SECONDS:
    # A live worker reports before every request; one request plus one backoff must fit.
    _fail(
        f"EXTRACTION_STALE_SECONDS={EXTRACTION_STALE_SECONDS:g} must exceed "
        "EXTRACTION_HTTP_DEADLINE + EXTRACTION_RETRY_BACKOFF_MAX_SECONDS "
        f"({EXTRACTION_HTTP_DEADLINE + EXTRACTION_RETRY_BACKOFF_MAX_SECONDS:g}), or live jobs "
        "would be taken for dead ones."
    )
# A provider asking us to wait longer than this (Retry-After, a daily quota) defers the job by
# this much at most.
EXTRACTION_MAX_DEFER_SECONDS = envint("EXTRACTION_MAX_DEFER_SECONDS", 86400, minimum=1)


# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["connectors.auth.SupabaseJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["connectors.api.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "connectors.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # One class checks every applicable limit (per user, per IP, stricter on OAuth) in a single
    # Redis round trip; the service role is exempt (connectors/api/throttling.py).
    "DEFAULT_THROTTLE_CLASSES": ["connectors.api.throttling.ApiRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}


def envrate(name: str, default: str) -> str:
    """A DRF rate such as "600/min" (s, min, hour, day), or "off"."""
    value = envstr(name, default).lower()
    if value == "off":
        return value
    count, _, period = value.partition("/")
    if not (count.isdigit() and int(count) > 0 and period[:1] in {"s", "m", "h", "d"}):
        _fail(
            f"{name}={value!r} is not a rate: use <requests>/<s|min|hour|day> (e.g. 600/min) "
            "or off."
        )
        return default
    return value


# Generous on the API (a dashboard polls a few times a minute), strict on the OAuth endpoints
# (a person clicks "connect" a handful of times). The service role is never throttled.
THROTTLE_RATES = {
    "user": envrate("THROTTLE_USER_RATE", "600/min"),
    "ip": envrate("THROTTLE_IP_RATE", "3000/min"),
    "oauth_user": envrate("THROTTLE_OAUTH_USER_RATE", "20/min"),
    "oauth_ip": envrate("THROTTLE_OAUTH_IP_RATE", "60/min"),
}
# Proxies in front of this server that append to X-Forwarded-For (0: use REMOTE_ADDR), so the
# per-IP limit counts clients rather than the load balancer.
THROTTLE_NUM_PROXIES = envint("THROTTLE_NUM_PROXIES", 0)

# Status hits answered in front of DRF, by the same rules (connectors/api/fastpath.py); 0 sends
# every request through the DRF viewset.
API_FAST_PATH = envbool("API_FAST_PATH", True)

# Admin login (django-axes, database handler): after this many failed logins for one username,
# or from one client IP, further logins for it (even with the right password) get 429 until
# the cool-off has passed with no new failure. Logged by the `axes` logger.
THROTTLE_ADMIN_LOGIN_FAILURES = envint("THROTTLE_ADMIN_LOGIN_FAILURES", 5, minimum=1)
THROTTLE_ADMIN_LOGIN_COOLOFF_SECONDS = envint(
    "THROTTLE_ADMIN_LOGIN_COOLOFF_SECONDS", 900, minimum=1
)
AXES_FAILURE_LIMIT = THROTTLE_ADMIN_LOGIN_FAILURES
AXES_COOLOFF_TIME = timedelta(seconds=THROTTLE_ADMIN_LOGIN_COOLOFF_SECONDS)
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]  # either one locks, separately
# The client's address as the API's per-IP limit sees it (THROTTLE_NUM_PROXIES).
AXES_CLIENT_IP_CALLABLE = "connectors.api.throttling.login_client_ip"
AXES_HTTP_RESPONSE_CODE = 429
# Log lines name the address (what an operator acts on) but not the username, where people
# sometimes type their password. The admin's "Access attempts" page has both.
AXES_SENSITIVE_PARAMETERS = ["username"]

SPECTACULAR_SETTINGS = {
    "TITLE": "connectors API",
    "DESCRIPTION": "Which platforms each user has connected, and their last sync status.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc assets come from drf-spectacular-sidecar (static files), not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["connectors.api.schema.only_api_paths"],
}
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("MAX_REQUEST_BODY_BYTES", 64 * 1024, minimum=1024)


# --- Static files, served by the app itself (whitenoise) ---------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"  # filled by `collectstatic` (make serve runs it)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names (cached forever by browsers and proxies) and gzip/brotli copies.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}


# --- Behind a TLS-terminating proxy ---------------------------------------------------------
# The header the proxy sets to "https" on requests that came in over TLS (usually
# X-Forwarded-Proto). Only set it when the proxy always sets or overwrites that header: a
# client could otherwise claim HTTPS.
_proxy_header = envstr("DJANGO_SECURE_PROXY_SSL_HEADER")
if _proxy_header:
    if not all(c.isalnum() or c == "-" for c in _proxy_header):
        _fail(
            f"DJANGO_SECURE_PROXY_SSL_HEADER={_proxy_header!r} is not a header name: use the "
            "header your proxy sets to 'https', e.g. X-Forwarded-Proto."
        )
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS")
for _origin in CSRF_TRUSTED_ORIGINS:
    if urlsplit(_origin).scheme not in {"http", "https"} or not urlsplit(_origin).netloc:
        _fail(
            f"DJANGO_CSRF_TRUSTED_ORIGINS has {_origin!r}: list origins with their scheme, "
            "e.g. https://connectors.example.com"
        )
SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", False)
if SECURE_SSL_REDIRECT and not _proxy_header:
    _fail(
        "DJANGO_SECURE_SSL_REDIRECT=1 needs DJANGO_SECURE_PROXY_SSL_HEADER (e.g. "
        "X-Forwarded-Proto): without it every request looks like plain HTTP behind the proxy "
        "and would be redirected forever."
    )
# Probes and the Prometheus scrape talk to the app's port directly, in plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", False)
SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("DJANGO_HSTS_PRELOAD", False)


# --- Production server (`manage.py serve`, `make serve`) --------------------------------------
def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


SERVE_HOST = envstr("HOST", "127.0.0.1")
SERVE_PORT = envint("PORT", 8000, minimum=1)
if SERVE_PORT > 65535:
    _fail(f"PORT={SERVE_PORT} is not a TCP port (1-65535).")
# One worker process per core: a cache hit is CPU-bound Python, so more processes than cores
# only queue; the threads below overlap the waits of misses (database, Redis).
WEB_CONCURRENCY = envint("WEB_CONCURRENCY", _cores(), minimum=1)
# Threads per worker, and so also the database connections each worker may hold open.
WEB_THREADS = envint("WEB_THREADS", 4, minimum=1)


# --- Metrics (/metrics, Prometheus) -----------------------------------------------------------
# A bearer token Prometheus sends (authorization.credentials in its scrape config); a
# service-role token works too. Empty: service-role tokens only.
METRICS_TOKEN = envstr("METRICS_TOKEN")
if METRICS_TOKEN and len(METRICS_TOKEN) < 32:
    _fail(
        "METRICS_TOKEN must be at least 32 characters: "
        "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )


# Several worker processes add up their samples through files here (prometheus-client's
# multi-process mode); `manage.py serve` makes a private one when it is not set. Created now,
# before prometheus-client opens its files in it.
_metrics_dir = envstr("PROMETHEUS_MULTIPROC_DIR")
if _metrics_dir:
    try:
        os.makedirs(_metrics_dir, mode=0o700, exist_ok=True)
    except OSError as e:
        _fail(f"PROMETHEUS_MULTIPROC_DIR={_metrics_dir!r} cannot be created: {e.strerror}.")


# --- Misc -----------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOG_LEVEL = envchoice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
# plain: one human-readable line per event; json: one JSON object per line, for log shippers.
LOG_FORMAT = envchoice("LOG_FORMAT", "plain", ("plain", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "connectors.logs.RequestIdFilter"},
        # The development server's own line for a 4xx/5xx would repeat the app's.
        "no_error_responses": {"()": "connectors.logs.DropErrorResponses"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "connectors.logs.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "connectors": {"level": LOG_LEVEL},
        "extraction": {"level": LOG_LEVEL},
        "axes": {"level": LOG_LEVEL},
        # Error responses are logged once, by connectors.middleware.RequestLogMiddleware.
        "django.server": {
            "handlers": ["console"],
            "level": "INFO",
            "propagate": False,
            "filters": ["no_error_responses"],
        },
    },
}

if _errors:
    raise ImproperlyConfigured("\n".join(_errors))
