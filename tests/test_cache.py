from __future__ import annotations

import builtins
import copy
import datetime as dt
import json
import threading
import time
import uuid
from decimal import Decimal

import pytest
import redis
from django.db import connection, transaction

from connectors import cache, selectors
from connectors.cache.entry import seal
from connectors.errors import InvalidJobId, InvalidUserId
from connectors.models import PlatformConnection
from tests.support.naive import naive_cache

USER = "7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a"


def test_keys_follow_the_contract_with_a_cluster_hash_tag():
    assert cache.platform_status_key(USER) == f"platform_status:{{{USER}}}"
    assert cache.user_profile_key(USER) == f"user_profile:{{{USER}}}"
    assert cache.soul_signature_key(USER) == f"soul_signature:{{{USER}}}"
    assert cache.extraction_job_key(USER) == f"extraction_job:{{{USER}}}"
    assert cache.platform_rate_limit_key(USER, "github") == f"platform_rate_limit:{{{USER}}}:github"
    assert cache.TTL_SECONDS == {
        "platform_status": 300,
        "user_profile": 600,
        "soul_signature": 900,
        "extraction_job": 60,
        "platform_rate_limit": 3600,
    }


def test_user_ids_are_canonicalised():
    upper = USER.upper()
    assert cache.platform_status_key(upper) == cache.platform_status_key(USER)
    assert cache.platform_status_key(uuid.UUID(USER)) == cache.platform_status_key(USER)


@pytest.mark.parametrize(
    "hostile",
    [
        "*",
        "user:1",
        "a b",
        "",
        None,
        42,
        USER + ":x",
        USER.replace("-", ":"),
        "ü" * 36,
        f"{{{USER[2:]}}}",
        " " + USER[:-1],  # uuid.UUID() would read this as another, valid id
        f"urn:uuid:{USER}"[:36],
        USER.replace("-", ""),
    ],
)
def test_no_key_is_built_from_anything_but_a_uuid(hostile):
    with pytest.raises(InvalidUserId):
        cache.platform_status_key(hostile)
    with pytest.raises(InvalidJobId):
        cache.extraction_job_key(hostile)


pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.redis
def test_generic_values_round_trip_as_json_with_datetimes():
    now = dt.datetime(2026, 11, 27, 12, 30, tzinfo=dt.UTC)
    value = {"at": now, "day": now.date(), "id": uuid.UUID(USER), "n": Decimal("1.5"), "x": [1]}
    cache.set_value(cache.user_profile_key(USER), value, cache.ttl_seconds("user_profile"))
    assert cache.get_value(cache.user_profile_key(USER)) == value
    raw = _raw_redis().get(cache.full_key(cache.user_profile_key(USER)))
    assert raw.startswith(b"{")  # JSON, not pickle
    ttl = _raw_redis().ttl(cache.full_key(cache.user_profile_key(USER)))
    assert 590 < ttl <= 600
    cache.delete_value(cache.user_profile_key(USER))
    assert cache.get_value(cache.user_profile_key(USER)) is None


def _raw_redis() -> redis.Redis:
    return cache.maintenance_client()


@pytest.mark.redis
def test_the_status_entry_is_fresh_for_its_contract_ttl_and_kept_for_stale_if_error(
    make_connection, settings
):
    make_connection(USER, "github")
    selectors.platform_status_for_user(user_id=USER)
    key = cache.full_key(cache.platform_status_key(USER))
    header, _ = _split(_raw_redis().get(key))
    assert 299 < header["exp"] - time.time() <= 300
    window_ms = settings.CACHE_STALE_IF_ERROR_SECONDS * 1000
    assert 299_000 + window_ms < _raw_redis().pttl(key) <= 300_000 + window_ms


@pytest.mark.redis
def test_an_entry_past_its_ttl_is_reloaded_not_served(make_connection):
    row = make_connection(USER, "github")
    selectors.platform_status_for_user(user_id=USER)
    key = cache.full_key(cache.platform_status_key(USER))
    header, body = _split(_raw_redis().get(key))
    header["exp"] = time.time() - 1  # as if the server had stored it 300 s ago
    # A change the cache never hears of (and the outbox not yet replayed): only the expiry
    # can reveal it.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE connectors_platformconnection SET last_sync_status = 'failed' WHERE id = %s",
            [row.pk],
        )
    _raw_redis().set(key, seal(key, header, body))
    result = selectors.platform_status_for_user(user_id=USER)
    assert result.cached is False
    assert result.data["platforms"]["github"]["last_sync_status"] == "failed"


def _split(raw: bytes) -> tuple[dict, bytes]:
    _mac, _, signed = raw.partition(b"\n")
    header, _, body = signed.partition(b"\n")
    return json.loads(header), body


def _entry(body: bytes, **header: object) -> bytes:
    """A stored entry as the server writes it (sealed for USER's key), any header overridden."""
    fields = {
        "s": cache.SCHEMA_VERSION,
        "k": USER,
        "etag": cache.etag_of(body),
        "delta": 0.001,
        "exp": time.time() + 300,
    }
    fields.update(header)
    return seal(cache.full_key(cache.platform_status_key(USER)), fields, body)


_DOC = json.dumps({"user_id": USER, "platforms": {}}, separators=(",", ":")).encode()
_OTHER_USER = "00000000-0000-0000-0000-000000000000"


@pytest.mark.redis
@pytest.mark.parametrize(
    "planted",
    [
        b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94.",  # a pickle
        _entry(_DOC)[:-10],  # cut short
        _entry(_DOC, s=99),  # another schema version
        _entry(_DOC, k=_OTHER_USER),  # another user's entry under this user's key
        _entry(_DOC).replace(b"platforms", b"platformz"),  # altered after it was stored
        b"no header at all",
    ],
    ids=["pickle", "truncated", "schema", "other-user", "altered", "garbage"],
)
def test_an_unreadable_entry_is_a_miss_and_is_overwritten(planted, make_connection, caplog):
    make_connection(USER, "github")
    key = cache.full_key(cache.platform_status_key(USER))
    _raw_redis().set(key, planted)
    result = selectors.platform_status_for_user(user_id=USER)
    assert result.cached is False
    assert result.data["platforms"]["github"]["connected"] is True
    assert _raw_redis().get(key) != planted
    assert selectors.platform_status_for_user(user_id=USER).cached is True
    assert sum("Discarding unreadable" in r.message for r in caplog.records) == 1


@pytest.mark.redis
def test_a_fill_after_an_invalidation_is_refused(make_connection):
    """The memcache stale set, step by step: the lease makes the late SET a no-op."""
    make_connection(USER, "github")
    lease = cache.acquire_platform_status_lease(USER)
    assert lease is not None
    stale = selectors.platform_status_from_db(user_id=USER)
    PlatformConnection.objects.filter(user_id=USER).update(last_sync_status="failed")
    assert cache.set_cached_platform_status(USER, stale, lease=lease) is False
    assert cache.get_cached_platform_status(USER) is None
    fresh = selectors.platform_status_for_user(user_id=USER)
    assert fresh.data["platforms"]["github"]["last_sync_status"] == "failed"


@pytest.mark.redis
def test_a_second_lease_is_refused_while_the_first_is_held():
    assert cache.acquire_platform_status_lease(USER) is not None
    assert cache.acquire_platform_status_lease(USER) is None
    cache.invalidate_platform_status_cache(USER)
    assert cache.acquire_platform_status_lease(USER) is not None


def _race_reader_against_writer(make_connection) -> str:
    """A reader misses and reads the old row; a writer commits and invalidates; then the reader
    stores what it read. Returns what the next read shows."""
    row = make_connection(USER, "github", last_sync_status="running")
    read_done, write_done = threading.Event(), threading.Event()

    def slow_loader() -> dict:
        data = selectors.platform_status_from_db(user_id=USER)
        read_done.set()
        assert write_done.wait(5)
        return data

    def reader() -> None:
        try:
            cache.read_platform_status(USER, slow_loader)
        finally:
            from django.db import connection

            connection.close()

    thread = threading.Thread(target=reader)
    thread.start()
    assert read_done.wait(5)
    with transaction.atomic():
        row.last_sync_status = "success"
        row.save()
    write_done.set()
    thread.join(5)
    return selectors.platform_status_for_user(user_id=USER).data["platforms"]["github"][
        "last_sync_status"
    ]


@pytest.mark.redis
def test_a_reader_cannot_put_back_what_a_writer_replaced(make_connection):
    assert _race_reader_against_writer(make_connection) == "success"


@pytest.mark.redis
def test_the_same_race_leaves_the_naive_cache_stale(make_connection):
    """Proof the race test can fail: the textbook cache-aside keeps the old row."""
    with naive_cache():
        assert _race_reader_against_writer(make_connection) == "running"


@pytest.mark.redis
def test_clear_all_deletes_only_this_deployments_keys():
    foreign = "other-deployment:1:platform_status:{" + USER + "}"
    _raw_redis().set(foreign, b"keep me", ex=60)
    try:
        cache.set_value(cache.user_profile_key(USER), {"a": 1}, 60)
        assert cache.clear_all() >= 1
        assert cache.get_value(cache.user_profile_key(USER)) is None
        assert _raw_redis().get(foreign) == b"keep me"
    finally:
        _raw_redis().delete(foreign)


@pytest.mark.redis
@pytest.mark.parametrize("prefix", ["ci?x", "ci[xy]z"])
def test_a_prefix_with_glob_characters_clears_only_its_own_keys(prefix, settings):
    """SCAN MATCH treats ? and [ as patterns: the prefix must be matched literally."""
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = prefix
    settings.CACHES = caches
    lookalike = {"ci?x": "ciZx", "ci[xy]z": "cixz"}[prefix]
    foreign = f"{lookalike}:1:platform_status:{{{USER}}}"
    _raw_redis().set(foreign, b"keep me", ex=60)
    try:
        cache.set_value(cache.platform_status_key(USER), {"a": 1}, 60)
        assert cache.clear_all() == 1
        assert cache.invalidate_all_platform_status() == 0
        assert _raw_redis().get(foreign) == b"keep me"
    finally:
        _raw_redis().delete(foreign)


def test_the_cache_api_shadows_no_builtin():
    """`from connectors.cache import *` (or a reader skimming `cache.set`) meets no builtin."""
    assert not set(cache.__all__) & set(dir(builtins))


@pytest.mark.redis
def test_hits_and_misses_are_counted_for_cache_stats(make_connection):
    make_connection(USER, "github")
    before = cache.cache_stats()
    selectors.platform_status_for_user(user_id=USER)
    selectors.platform_status_for_user(user_id=USER)
    after = cache.cache_stats()
    assert after["misses"] - before["misses"] == 1
    assert after["hits"] - before["hits"] == 1
    assert after["keys"] >= 1
    assert after["backend"] == "RedisCache"
    assert after["redis_memory"]["used_memory"] > 0
