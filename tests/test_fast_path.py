"""The status fast path answers hits (and refusals) with exactly the DRF viewset's bytes and
headers, and hands misses and everything else to the viewset, which then counts and reads
nothing twice."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.views import APIView

from connectors import cache
from tests.support.clients import client_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

REQUEST_ID = "fast-path-test"


class Dispatches:
    """Counts DRF's APIView.dispatch calls: the viewset answering, not the fast path."""

    def __init__(self, monkeypatch: Any) -> None:
        self.count = 0
        real = APIView.dispatch

        def counting(view: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return real(view, request, *args, **kwargs)

        monkeypatch.setattr(APIView, "dispatch", counting)


def _answer(settings: Any, fast: bool, client: Any, url: str, **extra: str) -> tuple[Any, ...]:
    settings.API_FAST_PATH = fast
    response = client.get(url, HTTP_X_REQUEST_ID=REQUEST_ID, **extra)
    return response.status_code, response.content, sorted(response.items())


@pytest.mark.parametrize("case", ["hit", "not_modified", "forbidden", "throttled", "anonymous"])
def test_the_fast_path_answers_what_the_viewset_answers(
    settings, case, alice_id, bob_id, make_connection
):
    make_connection(alice_id)
    alice = client_for(alice_id)
    url = f"/api/connectors/status/{bob_id if case == 'forbidden' else alice_id}"
    first = alice.get(f"/api/connectors/status/{alice_id}")  # the miss fills the entry
    extra = {"HTTP_IF_NONE_MATCH": first["ETag"]} if case == "not_modified" else {}
    client = client_for(None) if case == "anonymous" else alice
    if case == "throttled":
        settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "user": "3/min"}
    answers = {}
    for fast in (True, False, True, False) if case == "throttled" else (True, False):
        answers[fast] = _answer(settings, fast, client, url, **extra)
    assert answers[True] == answers[False]
    expected = {"hit": 200, "not_modified": 304, "forbidden": 403, "throttled": 429}
    assert answers[True][0] == expected.get(case, 401)
    headers = dict(answers[True][2])
    assert headers["X-Request-ID"] == REQUEST_ID
    if case in ("hit", "not_modified"):
        assert headers["ETag"] == first["ETag"]
        assert {"X-Frame-Options", "X-Content-Type-Options", "Allow"} <= set(headers)


def test_hits_and_refusals_skip_drfs_dispatch_misses_and_writes_reach_it(
    settings, monkeypatch, alice_id, bob_id, make_connection
):
    """Refusals (401, 403, 429) are answered by the viewset's own handle_exception() in the
    fast path; what it hands on reaches DRF's dispatch once."""
    settings.API_FAST_PATH = True
    make_connection(alice_id)
    alice = client_for(alice_id)
    url = f"/api/connectors/status/{alice_id}"
    dispatches = Dispatches(monkeypatch)
    assert alice.get(url).json()["cached"] is False  # a miss: the viewset
    assert dispatches.count == 1
    for _ in range(3):
        assert alice.get(url).json()["cached"] is True  # hits: the fast path
    assert alice.get(url, HTTP_IF_NONE_MATCH=alice.get(url)["ETag"]).status_code == 304
    assert dispatches.count == 1
    assert alice.get(f"/api/connectors/status/{bob_id}").status_code == 403
    assert client_for(None).get(url).status_code == 401
    assert dispatches.count == 1
    assert alice.post(f"/api/connectors/status/{alice_id}/warm").status_code == 200
    assert alice.head(url).status_code == 200
    assert dispatches.count == 3
    settings.API_FAST_PATH = False
    assert alice.get(url).json()["cached"] is True
    assert dispatches.count == 4


def test_a_request_handed_on_is_counted_once(settings, alice_id, bob_id):
    """A request the fast path counted and then handed to the viewset (a 403 here, a miss)
    is not counted again there."""
    settings.API_FAST_PATH = True
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "user": "4/min"}
    alice = client_for(alice_id)
    for _ in range(2):
        assert alice.get(f"/api/connectors/status/{bob_id}").status_code == 403
    assert alice.get(f"/api/connectors/status/{alice_id}").status_code == 200  # a miss
    assert alice.get(f"/api/connectors/status/{alice_id}").status_code == 200  # a hit
    assert alice.get(f"/api/connectors/status/{alice_id}").status_code == 429
    assert cache.enabled()
