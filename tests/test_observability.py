"""Metrics, request ids and log lines, in process (the real server: test_production.py)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import pytest
from django.db import DatabaseError
from django.test import Client, override_settings
from prometheus_client import CollectorRegistry

from connectors import cache, logs, metrics, selectors
from connectors.cache import InvalidationListener, outbox
from connectors.cache.breaker import CircuitBreaker
from connectors.cache.entry import seal
from connectors.models import PendingInvalidation, PlatformConnection
from tests.support.clients import client_for

pytestmark = pytest.mark.django_db(transaction=True)


def sample(metric: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(metric, labels or None)
    return value or 0.0


def reads(outcome: str) -> float:
    return sample("connectors_cache_reads_total", outcome=outcome)


def invalidations(source: str) -> float:
    return sample("connectors_cache_invalidations_total", source=source)


# --- Cache outcomes ------------------------------------------------------------------------------
@pytest.mark.redis
def test_a_miss_then_a_hit_move_their_counters_and_label_the_request(alice, alice_id):
    miss, hit, fills = (
        reads("miss"),
        reads("hit"),
        sample("connectors_cache_fills_total", result="stored"),
    )
    latency = "connectors_http_request_duration_seconds_count"
    labels = {"route": "platform-status", "method": "GET", "status": "200"}
    before_hit = sample(latency, **labels, cache="hit")
    before_miss = sample(latency, **labels, cache="miss")
    assert alice.get(f"/api/connectors/status/{alice_id}").json()["cached"] is False
    assert alice.get(f"/api/connectors/status/{alice_id}").json()["cached"] is True
    assert (reads("miss") - miss, reads("hit") - hit) == (1, 1)
    assert sample("connectors_cache_fills_total", result="stored") - fills == 1
    assert sample(latency, **labels, cache="hit") - before_hit == 1
    assert sample(latency, **labels, cache="miss") - before_miss == 1


def test_a_read_that_cannot_use_redis_is_a_bypass(alice, alice_id):
    bypass, hit, miss = reads("bypass"), reads("hit"), reads("miss")
    for _ in range(cache.breaker.failure_threshold):  # the breaker opens: Redis is skipped
        cache.breaker.record_failure(RuntimeError("down"))
    assert alice.get(f"/api/connectors/status/{alice_id}").status_code == 200
    assert (reads("bypass") - bypass, reads("hit") - hit, reads("miss") - miss) == (1, 0, 0)


@pytest.mark.redis
def test_stale_serves_are_counted_apart_from_hits(alice_id, make_connection):
    make_connection(alice_id)
    document = selectors.platform_status_from_db(user_id=alice_id)
    body = json.dumps(document, separators=(",", ":")).encode()
    key = cache.full_key(cache.platform_status_key(alice_id))
    header = {"s": cache.SCHEMA_VERSION, "k": alice_id, "etag": cache.etag_of(body)}
    expired = seal(key, {**header, "delta": 0.001, "exp": time.time() - 1}, body)
    cache.maintenance_client().set(key, expired, ex=60)
    stale, hit = reads("stale"), reads("hit")

    def database_down() -> dict:
        raise DatabaseError("the database is down")

    assert cache.read_platform_status(alice_id, database_down).stale is True
    assert (reads("stale") - stale, reads("hit") - hit) == (1, 0)


# --- Invalidations by source ---------------------------------------------------------------------
@pytest.mark.redis
def test_invalidations_are_counted_by_source(alice_id, bob_id, make_connection, admin_client):
    counts = {s: invalidations(s) for s in ("signal", "update", "admin", "notify", "outbox_replay")}
    row = make_connection(alice_id)  # a save: signal
    PlatformConnection.objects.filter(user_id=bob_id).update(is_active=False)  # no rows: 0 users
    PlatformConnection.objects.filter(user_id=alice_id).update(is_active=False)  # update
    admin_client.post(
        "/admin/connectors/platformconnection/",
        {"action": "invalidate_cache", "_selected_action": [row.pk]},
    )
    InvalidationListener()._handle(alice_id)  # a NOTIFY
    PendingInvalidation.objects.create(user_id=bob_id)
    assert not outbox.replay()  # no shard left with undelivered invalidations
    delta = {s: invalidations(s) - n for s, n in counts.items()}
    assert delta == {"signal": 1, "update": 1, "admin": 1, "notify": 1, "outbox_replay": 1}


@pytest.mark.redis
def test_a_rolled_back_write_counts_no_invalidation(alice_id, make_connection):
    from django.db import transaction

    before = invalidations("signal")
    with pytest.raises(RuntimeError), transaction.atomic():
        make_connection(alice_id)
        raise RuntimeError("roll back")
    assert invalidations("signal") == before


# --- Breaker and errors --------------------------------------------------------------------------
def test_breaker_state_and_transitions_are_exported():
    breaker = CircuitBreaker("metrics-test", failure_threshold=1, cooldown=60)
    state = "connectors_breaker_state"
    opened = {"name": "metrics-test", "from_state": "closed", "to_state": "open"}
    before = sample("connectors_breaker_transitions_total", **opened)  # an earlier run's
    assert sample(state, name="metrics-test") == 0
    breaker.record_failure(RuntimeError("x"))
    assert sample(state, name="metrics-test") == 2
    assert sample("connectors_breaker_transitions_total", **opened) - before == 1
    breaker.reset()
    assert sample(state, name="metrics-test") == 0


def test_database_errors_are_counted_by_component(alice, alice_id, monkeypatch):
    from django.db import DatabaseError

    def broken(**kwargs: Any) -> Any:
        raise DatabaseError("gone")

    before = sample("connectors_db_errors_total", component="request")
    monkeypatch.setattr(selectors, "platform_status_from_db", broken)
    response = alice.get(f"/api/connectors/status/{alice_id}")
    assert response.status_code == 503
    assert sample("connectors_db_errors_total", component="request") - before == 1


# --- /metrics ------------------------------------------------------------------------------------
def test_metrics_need_a_service_role_token_or_the_metrics_token(alice, service, settings):
    anonymous = Client()
    assert anonymous.get("/metrics").status_code == 401
    assert alice.get("/metrics").status_code == 403
    response = service.get("/metrics")
    assert response.status_code == 200
    assert "connectors_cache_reads_total" in response.content.decode()
    assert "connectors_outbox_pending" in response.content.decode()
    settings.METRICS_TOKEN = "t" * 40
    assert Client(HTTP_AUTHORIZATION="Bearer " + "t" * 40).get("/metrics").status_code == 200
    assert Client(HTTP_AUTHORIZATION="Bearer " + "t" * 39).get("/metrics").status_code == 401
    # Loopback is no credential (REMOTE_ADDR is 127.0.0.1 for the test client too).
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 401


def test_the_outbox_backlog_is_read_at_scrape_time(service, alice_id):
    PendingInvalidation.objects.create(user_id=alice_id)
    PendingInvalidation.objects.create(user_id=alice_id)
    body = service.get("/metrics").content.decode()
    assert "connectors_outbox_pending 2.0" in body


def test_dead_workers_live_gauges_are_dropped_and_their_counters_kept(tmp_path):
    # Files as two workers would leave them: one alive (this process), one long gone.
    import os

    from prometheus_client.mmap_dict import MmapedDict

    def write(name: str, key: list[Any], value: float) -> None:
        d = MmapedDict(str(tmp_path / name))
        d.write_value(json.dumps(key, sort_keys=True), value, 0.0)
        d.close()

    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    for pid, value in ((os.getpid(), 1.0), (dead, 5.0)):
        write(
            f"counter_{pid}.db",
            ["connectors_redis_errors", "connectors_redis_errors_total", {}, "h"],
            value,
        )
        write(
            f"gauge_livemax_{pid}.db",
            ["connectors_breaker_state", "connectors_breaker_state", {"name": "redis"}, "h"],
            2.0 if pid == dead else 0.0,
        )
    metrics.forget_dead_gauges(str(tmp_path))
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    assert registry.get_sample_value("connectors_redis_errors_total") == 6.0
    assert registry.get_sample_value("connectors_breaker_state", {"name": "redis"}) == 0.0
    metrics.prepare_multiprocess_dir(str(tmp_path))  # a new run: the dead worker's files go
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"counter_{os.getpid()}.db",
        f"gauge_livemax_{os.getpid()}.db",
    ]


# --- Request ids and log lines -----------------------------------------------------------------
def test_the_request_id_is_echoed_or_generated(anonymous):
    response = anonymous.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    generated = anonymous.get("/healthz", HTTP_X_REQUEST_ID="x" * 300)["X-Request-ID"]
    assert len(generated) == 32 and generated != "x" * 300


def _records_for(caplog: pytest.LogCaptureFixture, path: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if path in r.getMessage()]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/connectors/status/not-a-uuid", 400),
        ("/api/no-such-endpoint", 404),
        ("/nothing-here", 404),
    ],
)
def test_each_4xx_is_logged_once_at_info(caplog, service, path, status):
    caplog.set_level(logging.DEBUG)
    assert service.get(path).status_code == status
    records = _records_for(caplog, path)
    assert [(r.levelno, r.name) for r in records] == [(logging.INFO, "connectors.request")]
    assert str(status) in records[0].getMessage()


def test_an_unauthenticated_call_is_one_info_line_naming_the_code(caplog, anonymous, alice_id):
    caplog.set_level(logging.DEBUG)
    path = f"/api/connectors/status/{alice_id}"
    assert anonymous.get(path).status_code == 401
    [record] = _records_for(caplog, path)
    assert record.levelno == logging.INFO
    assert record.getMessage() == f"GET {path} -> 401 not_authenticated"


def test_provider_not_configured_is_a_warning_not_an_error(caplog, alice, settings):
    caplog.set_level(logging.DEBUG)
    settings.OAUTH_CLIENTS = {**settings.OAUTH_CLIENTS, "spotify": {}}
    path = "/api/connectors/spotify/authorize"
    response = alice.get(path)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "provider_not_configured"
    records = _records_for(caplog, path)
    assert [r.levelno for r in records] == [logging.WARNING]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_json_lines_carry_the_request_id():
    formatter = logs.JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s")
    record = logging.LogRecord("connectors.cache", logging.INFO, __file__, 1, "Cache HIT", (), None)
    token = logs.request_id.set("req-1")
    try:
        logs.RequestIdFilter().filter(record)
    finally:
        logs.request_id.reset(token)
    line = json.loads(formatter.format(record))
    assert line["request_id"] == "req-1"
    assert (line["level"], line["logger"], line["message"]) == (
        "INFO",
        "connectors.cache",
        "Cache HIT",
    )
    assert "time" in line


def test_log_lines_written_while_serving_carry_that_requests_id(caplog, service, alice_id):
    caplog.set_level(logging.INFO)
    handler_filter = logs.RequestIdFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        service.get(f"/api/connectors/status/{alice_id}", HTTP_X_REQUEST_ID="trace-me")
    finally:
        caplog.handler.removeFilter(handler_filter)
    tagged = [r for r in caplog.records if getattr(r, "request_id", None) == "trace-me"]
    assert tagged, [r.getMessage() for r in caplog.records]


# --- Behind a TLS proxy --------------------------------------------------------------------------
PROXY = {
    "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
    "SECURE_SSL_REDIRECT": True,
}


@override_settings(**PROXY)
def test_ssl_redirect_spares_the_probes_and_the_scrape(service):
    plain = Client()
    for path in ("/healthz", "/readyz"):
        assert plain.get(path).status_code == 200, path
    assert service.get("/metrics").status_code == 200
    redirected = plain.get("/admin/login/")
    assert redirected.status_code == 301
    assert redirected["Location"] == "https://testserver/admin/login/"
    assert plain.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 200


def test_check_deploy_is_clean_with_the_documented_production_values():
    import subprocess
    import sys

    from tests.support.production import ROOT, base_env

    documented = _env_file(ROOT / "deploy" / "connectors.env.example")
    env = base_env(**documented)
    env.update(
        # Placeholders the file asks the operator to fill in (the secrets come from base_env).
        DATABASE_URL="postgres://connectors@127.0.0.1:5432/connectors",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def _env_file(path: Any) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            if value.strip():  # an empty one is a secret to fill in
                values[name.strip()] = value.strip()
    return values


def test_metric_labels_never_contain_a_user_id(service):
    # Labels are route names, never paths: a user id never becomes a series.
    user = str(uuid.uuid4())
    client_for(user).get(f"/api/connectors/status/{user}")
    assert user not in service.get("/metrics").content.decode()
