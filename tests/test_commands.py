from __future__ import annotations

import uuid
from io import StringIO

import jwt
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from connectors import cache
from connectors.management.commands.seed_demo import demo_user_id
from connectors.models import PlatformConnection

pytestmark = pytest.mark.django_db(transaction=True)


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_seed_demo_creates_three_to_seven_connections_per_user_and_is_idempotent():
    first = _run("seed_demo", "--users", "20")
    assert "Done! Seeded 20 demo users" in first
    counts = [PlatformConnection.objects.filter(user_id=demo_user_id(i)).count() for i in range(20)]
    assert all(3 <= c <= 7 for c in counts)
    total = PlatformConnection.objects.count()
    _run("seed_demo", "--users", "20")
    assert PlatformConnection.objects.count() == total


@pytest.mark.redis
def test_warm_cache_fills_every_active_user_then_finds_them_cached():
    _run("seed_demo", "--users", "10")
    out = _run("warm_cache")
    users = PlatformConnection.objects.active().values("user_id").distinct().count()
    assert f"Done! Warmed {users} users" in out
    assert f"({users} filled, 0 already cached)" in out
    assert all(cache.get_cached_platform_status(demo_user_id(i)) is not None for i in range(3))
    assert f"(0 filled, {users} already cached)" in _run("warm_cache")


@pytest.mark.redis
def test_warm_cache_takes_named_users_and_refuses_bad_ids():
    _run("seed_demo", "--users", "3")
    out = _run("warm_cache", "--user", demo_user_id(1))
    assert "Warmed 1 user in" in out
    assert cache.get_cached_platform_status(demo_user_id(1)) is not None
    assert cache.get_cached_platform_status(demo_user_id(2)) is None
    with pytest.raises(CommandError, match="UUID"):
        _run("warm_cache", "--user", "nope")
    assert "Warmed" in _run("warm_cache", "--active-since", "1")


@pytest.mark.redis
def test_clear_cache_deletes_by_user_or_by_prefix_and_nothing_else():
    _run("seed_demo", "--users", "3")
    _run("warm_cache")
    out = _run("clear_cache", "--user", demo_user_id(0))
    assert "Deleted 1 key for 1 user in" in out
    assert cache.get_cached_platform_status(demo_user_id(0)) is None
    assert cache.get_cached_platform_status(demo_user_id(1)) is not None
    foreign = f"someone-else:1:platform_status:{{{uuid.uuid4()}}}"
    cache._redis().set(foreign, b"x", ex=60)
    try:
        assert "Done! Deleted" in _run("clear_cache")
        assert cache.get_cached_platform_status(demo_user_id(1)) is None
        assert cache._redis().get(foreign) == b"x"
    finally:
        cache._redis().delete(foreign)


def test_issue_token_signs_user_and_service_role_tokens():
    user = str(uuid.uuid4())
    claims = jwt.decode(
        _run("issue_token", user).strip(),
        settings.SUPABASE_JWT_SECRET,
        algorithms=["HS256"],
        audience="authenticated",
    )
    assert claims["sub"] == user and claims["role"] == "authenticated"
    service = jwt.decode(
        _run("issue_token", "--service-role", "--ttl", "60").strip(),
        settings.SUPABASE_JWT_SECRET,
        algorithms=["HS256"],
        options={"verify_aud": False},
    )
    assert service["role"] == "service_role" and service["exp"] - service["iat"] == 60
    with pytest.raises(CommandError):
        _run("issue_token", "not-a-uuid")
    with pytest.raises(CommandError):
        _run("issue_token")
