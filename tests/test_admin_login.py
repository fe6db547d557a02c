"""The admin login form under a password-guessing attack (django-axes, database handler)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def limits(settings: Any) -> Any:
    settings.THROTTLE_ADMIN_LOGIN_FAILURES = settings.AXES_FAILURE_LIMIT = 3
    return settings


@pytest.fixture
def admin_user() -> User:
    return User.objects.create_superuser("root", "root@example.com", PASSWORD)


def login(username: str, password: str, ip: str = "198.51.100.7") -> Any:
    """What a browser does: fetch the form (and its CSRF token), then post it."""
    browser = Client(enforce_csrf_checks=True, REMOTE_ADDR=ip)
    form = browser.get("/admin/login/?next=/admin/")
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.content.decode())
    assert match, form.content[:500]
    return browser.post(
        "/admin/login/?next=/admin/",
        {
            "csrfmiddlewaretoken": match.group(1),
            "username": username,
            "password": password,
            "next": "/admin/",
        },
    )


def logged_in(response: Any) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def test_the_right_password_logs_in(limits, admin_user):
    assert logged_in(login("root", PASSWORD))


def test_wrong_passwords_lock_the_username_even_from_other_addresses(limits, admin_user, caplog):
    for i in range(2):
        response = login("root", f"guess-{i}", ip=f"203.0.113.{i + 1}")
        assert response.status_code == 200  # the form again, with its error
    assert login("root", "guess-2", ip="203.0.113.3").status_code == 429  # the third failure
    locked = login("root", PASSWORD, ip="192.0.2.99")  # the right password, a new address
    assert locked.status_code == 429
    assert "too many login attempts" in locked.content.decode()
    assert not logged_in(locked)
    lockout = next(r.getMessage() for r in caplog.records if "Locking out" in r.getMessage())
    assert 'ip_address: "203.0.113.3"' in lockout  # the address an operator can act on
    assert "root" not in lockout  # the username field sometimes holds a password


def test_wrong_passwords_lock_the_address_for_every_username(limits, admin_user):
    for name in ("alice", "bob"):
        assert login(name, "guess", ip="198.51.100.20").status_code == 200
    assert login("carol", "guess", ip="198.51.100.20").status_code == 429
    assert login("root", PASSWORD, ip="198.51.100.20").status_code == 429
    assert logged_in(login("root", PASSWORD, ip="198.51.100.21"))  # another address is fine


def test_the_lock_ends_after_the_cool_off(limits, admin_user):
    from axes.models import AccessAttempt  # django-axes' own record of failures

    for i in range(3):
        login("root", f"guess-{i}")
    assert login("root", PASSWORD).status_code == 429
    # As if THROTTLE_ADMIN_LOGIN_COOLOFF_SECONDS had passed since the last failure.
    cool_off = timedelta(seconds=limits.THROTTLE_ADMIN_LOGIN_COOLOFF_SECONDS)
    for attempt in AccessAttempt.objects.all():
        attempt.attempt_time -= cool_off + timedelta(seconds=1)
        attempt.save()
    assert logged_in(login("root", PASSWORD))


def test_failures_under_the_limit_do_not_lock(limits, admin_user):
    for i in range(2):
        login("root", f"typo-{i}")
    assert logged_in(login("root", PASSWORD))


def test_the_api_is_not_affected_by_a_locked_admin_address(limits, admin_user, alice, alice_id):
    for i in range(3):
        login("root", f"guess-{i}", ip="127.0.0.1")
    assert login("root", PASSWORD, ip="127.0.0.1").status_code == 429
    assert alice.get(f"/api/connectors/status/{alice_id}").status_code == 200


def test_the_knobs_come_from_the_environment():
    import subprocess
    import sys

    from tests.test_settings import BASE_ENV, _load

    probe = (
        "import connectors_site.settings as s; "
        "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), "
        "s.AXES_LOCKOUT_PARAMETERS)"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        **BASE_ENV,
        "THROTTLE_ADMIN_LOGIN_FAILURES": "7",
        "THROTTLE_ADMIN_LOGIN_COOLOFF_SECONDS": "60",
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split()[:2] == ["7", "60.0"]
    assert "'ip_address', 'username'" in result.stdout
    bad = _load(THROTTLE_ADMIN_LOGIN_FAILURES="0")
    assert bad.returncode != 0
    assert "THROTTLE_ADMIN_LOGIN_FAILURES='0' must be at least 1" in bad.stderr


def test_a_login_without_a_valid_client_address_is_counted_by_username(limits, admin_user):
    """No valid address (a misconfigured proxy): none is stored in axes' inet column (that
    would be a 500 on Postgres), and the username still locks."""
    for i in range(2):
        assert login("root", f"guess-{i}", ip="not-an-address").status_code == 200
    assert login("root", "guess-2", ip="not-an-address").status_code == 429
    assert login("root", PASSWORD, ip="198.51.100.50").status_code == 429
