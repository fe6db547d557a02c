"""Rate limits per user and per IP, stricter on OAuth: a burst over a limit gets 429 with
Retry-After, traffic under it never does; the service role is never throttled."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.core.cache import caches
from rest_framework.test import APIClient

from connectors import cache
from connectors.api import throttling
from tests.support.clients import client_for
from tests.test_settings import _load

pytestmark = pytest.mark.django_db

GENEROUS = "1000/min"


@pytest.fixture(params=["redis", "locmem"])
def backend(request: Any, settings: Any) -> Iterator[str]:
    """Each test runs against the Redis throttle (one pipelined round trip) and against DRF's
    own throttle over LocMemCache (the zero-config fallback)."""
    if request.param == "redis":
        if not cache.enabled():
            pytest.skip("needs Redis (set REDIS_URL=redis://...)")
        assert "RedisCache" in settings.CACHES["throttle"]["BACKEND"]
    else:
        settings.CACHES = {
            **settings.CACHES,
            "throttle": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "LOCATION": f"throttle-test-{uuid.uuid4()}",
            },
        }
    yield request.param
    throttling.reset_local_counters()


def rates(settings: Any, **overrides: str) -> None:
    settings.THROTTLE_RATES = {
        "user": GENEROUS,
        "ip": GENEROUS,
        "oauth_user": GENEROUS,
        "oauth_ip": GENEROUS,
        **overrides,
    }


def assert_throttled(response: Any, window: int = 60) -> None:
    assert response.status_code == 429, response.content
    assert response.json() == {
        "success": False,
        "error": {"code": "rate_limited", "message": response.json()["error"]["message"]},
    }
    assert 1 <= int(response["Retry-After"]) <= window


def test_a_burst_over_the_user_limit_gets_429_and_under_it_never(
    backend, settings, alice, alice_id, bob, bob_id
):
    rates(settings, user="5/min")
    for _ in range(5):
        assert alice.get(f"/api/connectors/status/{alice_id}").status_code == 200
    assert_throttled(alice.get(f"/api/connectors/status/{alice_id}"))
    assert_throttled(alice.post(f"/api/connectors/reset/{alice_id}"))  # every endpoint counts
    # Per user: bob, from the same address, is not affected.
    for _ in range(5):
        assert bob.get(f"/api/connectors/status/{bob_id}").status_code == 200


def test_the_ip_limit_counts_every_user_from_one_address(backend, settings):
    rates(settings, ip="6/min")
    users = [str(uuid.uuid4()) for _ in range(3)]
    for user in users:
        for _ in range(2):
            assert client_for(user).get(f"/api/connectors/status/{user}").status_code == 200
    assert_throttled(client_for(users[0]).get(f"/api/connectors/status/{users[0]}"))
    other = client_for(users[0])
    response = other.get(f"/api/connectors/status/{users[0]}", REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 200


def test_oauth_endpoints_have_a_stricter_limit(backend, settings, alice, alice_id, oauth_provider):
    rates(settings, oauth_user="2/min")
    for _ in range(2):
        assert alice.get("/api/connectors/github/authorize").status_code == 200
    assert_throttled(alice.get("/api/connectors/github/authorize"))
    assert_throttled(
        alice.post(
            "/api/connectors/callback",
            {"provider": "github", "code": "c", "state": "s"},
            format="json",
        )
    )
    # The rest of the API still answers.
    assert alice.get(f"/api/connectors/status/{alice_id}").status_code == 200


def test_the_service_role_is_never_throttled(backend, settings, service):
    rates(settings, user="2/min", ip="2/min")
    for _ in range(20):
        user = str(uuid.uuid4())
        assert service.get(f"/api/connectors/status/{user}").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-token", "Bearer " + "e" * 40 + "." + "f" * 40 + ".sig", "Basic eA=="],
)
def test_failed_authentication_counts_towards_the_ip_limit(backend, settings, authorization):
    """DRF authenticates before it throttles: without the exception handler's count, a flood
    of bad tokens is 401s forever and never moves the IP counter."""
    rates(settings, ip="5/min")
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    for _ in range(5):
        response = APIClient().get(f"/api/connectors/status/{uuid.uuid4()}", **headers)
        assert response.status_code == 401
    assert_throttled(APIClient().get(f"/api/connectors/status/{uuid.uuid4()}", **headers))
    # The address is over its limit for everyone behind it, a valid token included...
    user = str(uuid.uuid4())
    assert_throttled(client_for(user).get(f"/api/connectors/status/{user}"))
    # ...and only that address.
    other = client_for(user).get(f"/api/connectors/status/{user}", REMOTE_ADDR="10.9.8.7")
    assert other.status_code == 200


def test_a_failed_token_and_a_good_one_share_the_ip_budget(backend, settings):
    rates(settings, ip="4/min")
    user = str(uuid.uuid4())
    good, bad = client_for(user), APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer forged")
    assert good.get(f"/api/connectors/status/{user}").status_code == 200
    assert bad.get(f"/api/connectors/status/{user}").status_code == 401
    assert good.get(f"/api/connectors/status/{user}").status_code == 200
    assert bad.get(f"/api/connectors/status/{user}").status_code == 401
    assert_throttled(good.get(f"/api/connectors/status/{user}"))
    assert_throttled(bad.get(f"/api/connectors/status/{user}"))


def test_a_forged_x_forwarded_for_does_not_reach_a_key(backend, settings):
    settings.THROTTLE_NUM_PROXIES = 1
    rates(settings, ip="3/min")
    user = str(uuid.uuid4())
    client = client_for(user)
    for _ in range(3):
        response = client.get(
            f"/api/connectors/status/{user}", HTTP_X_FORWARDED_FOR="1.2.3.4, *:{x} evil"
        )
        assert response.status_code == 200
    assert_throttled(
        client.get(f"/api/connectors/status/{user}", HTTP_X_FORWARDED_FOR="*:{y} evil2")
    )  # both malformed: one "unknown" bucket, not one per string


@pytest.mark.redis
def test_the_redis_throttle_is_one_round_trip_and_none_for_the_service_role(
    settings, alice, alice_id, service, monkeypatch
):
    rates(settings)
    sends: list[int] = []  # round trips made while a throttle check runs, on this thread
    checking = threading.local()
    real_send = redis.connection.Connection.send_packed_command
    real_allow = throttling.ApiRateThrottle.allow_request

    def counting_send(self: Any, command: Any, check_health: bool = True) -> None:
        if getattr(checking, "on", False):
            sends.append(1)
        real_send(self, command, check_health)

    def counting_allow(self: Any, request: Any, view: Any) -> bool:
        checking.on = True
        try:
            return bool(real_allow(self, request, view))
        finally:
            checking.on = False

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting_send)
    monkeypatch.setattr(throttling.ApiRateThrottle, "allow_request", counting_allow)
    url = f"/api/connectors/status/{alice_id}"
    assert service.get(url).status_code == 200
    assert sends == []
    assert alice.get(url).status_code == 200
    assert alice.get(url).status_code == 200
    assert len(sends) == 2  # one pipelined round trip per request (user + IP counters)
    keys = list(cache.maintenance_client().scan_iter(match=cache.full_key("throttle:*")))
    assert {k.decode().split(":")[-1] for k in keys} == {f"{{{alice_id}}}", "{127.0.0.1}"}


class RoundTrips:
    """Counts redis-py's sends (one per command, one per pipeline: one per round trip) made by
    this thread while `counting`."""

    def __init__(self, monkeypatch: Any) -> None:
        self.sends: list[bytes] = []
        self._on = threading.local()
        real_send = redis.connection.Connection.send_packed_command

        def counting_send(conn: Any, command: Any, check_health: bool = True) -> None:
            if getattr(self._on, "value", False):
                self.sends.append(command if isinstance(command, bytes) else b"".join(command))
            real_send(conn, command, check_health)

        monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting_send)

    def commands(self) -> list[str]:
        """Each round trip as its first command and how many it sent, for a failure message."""
        described = []
        for send in self.sends:
            lines = send.split(b"\r\n")
            count = sum(1 for line in lines if line.startswith(b"*"))
            described.append(f"{lines[2].decode()} x{count}")
        return described

    def during(self, call: Any) -> Any:
        self._on.value = True
        try:
            return call()
        finally:
            self._on.value = False


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)  # committed rows: reads use the cache
def test_a_users_status_hit_is_one_redis_round_trip_throttling_included(
    settings, alice, alice_id, make_connection, monkeypatch
):
    """The rate limits' counters and the entry's read share one round trip (one script), for
    a 200 and for a 304; and the counters still count."""
    rates(settings, user="50/min")
    make_connection(alice_id)
    url = f"/api/connectors/status/{alice_id}"
    first = alice.get(url)
    assert first.json()["cached"] is False  # the miss: lease, query, fill
    trips = RoundTrips(monkeypatch)
    for _ in range(3):
        response = trips.during(lambda: alice.get(url))
        assert response.status_code == 200 and response.json()["cached"] is True
    etag = response["ETag"]
    assert trips.during(lambda: alice.get(url, HTTP_IF_NONE_MATCH=etag)).status_code == 304
    assert len(trips.sends) == 4, trips.commands()
    backend = caches["throttle"]
    counter = backend.client.get_client(write=True).get(
        backend.make_key(f"throttle:user:{{{alice_id}}}")
    )
    assert int(counter) == 5


def test_rates_are_validated_at_start_up():
    result = _load(THROTTLE_USER_RATE="lots")
    assert result.returncode != 0
    assert "THROTTLE_USER_RATE='lots' is not a rate" in result.stderr
    assert _load(THROTTLE_OAUTH_IP_RATE="off", THROTTLE_IP_RATE="10/s").returncode == 0


@pytest.mark.redis
@pytest.mark.parametrize("planted", ["string", "huge", "hash"])
def test_a_broken_counter_in_redis_limits_and_is_repaired(settings, alice, alice_id, planted):
    """A counter that INCR cannot increment (planted, or corrupted) must not switch the limit
    off: that request is refused, the key is replaced, and counting resumes."""
    rates(settings, user="3/min")
    backend = caches["throttle"]
    key = backend.make_key(f"throttle:user:{{{alice_id}}}")
    client = backend.client.get_client(write=True)
    if planted == "string":
        client.set(key, "not-a-number")
    elif planted == "huge":
        client.set(key, "9" * 30)  # out of INCR's 64-bit range
    else:
        client.hset(key, "count", 0)
    url = f"/api/connectors/status/{alice_id}"
    assert_throttled(alice.get(url))
    for _ in range(3):
        assert alice.get(url).status_code == 200
    assert_throttled(alice.get(url))
