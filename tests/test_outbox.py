"""connectors/cache/outbox.py: marking delivered invalidations without a transaction each."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import cache, selectors
from connectors.cache import outbox
from connectors.models import PendingInvalidation, PlatformConnection
from tests.support.procs import env_for_manage, manage

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent


def undelivered(user_id: str) -> bool:
    return PendingInvalidation.objects.filter(user_id=user_id, delivered_at__isnull=True).exists()


@pytest.fixture
def batched_acknowledgements(settings):
    # A sweeper thread starts in this process, but its first pass is an hour away: the test
    # runs the passes itself.
    settings.CACHE_OUTBOX_SWEEP_SECONDS = 3600
    outbox._acknowledged.take()
    yield
    outbox._acknowledged.take()


def test_a_delivered_invalidation_is_marked_by_the_next_sweep_and_not_replayed(
    alice_id, make_connection, batched_acknowledgements, settings
):
    make_connection(alice_id, "github")  # committed, DEL sent, row acknowledged

    # The write paid for no UPDATE of its own: the row waits for the sweeper.
    assert undelivered(alice_id)
    selectors.platform_status_for_user(user_id=alice_id)
    assert cache.get_cached_platform_status(alice_id) is not None
    settings.CACHE_OUTBOX_GRACE_SECONDS = 0  # every pending row is old enough to replay

    assert outbox.sweep_once()

    assert not undelivered(alice_id)
    # Kept (delivered) for the retention window, to be replayed if Redis' master changes.
    assert PendingInvalidation.objects.filter(user_id=alice_id).exists()
    # Marked in the sweep's transaction before it looked for rows to replay: the fresh entry
    # was not invalidated a second time.
    assert cache.get_cached_platform_status(alice_id) is not None
    assert selectors.platform_status_for_user(user_id=alice_id).cached


def test_without_a_sweeper_the_write_acknowledges_at_once(alice_id, make_connection, settings):
    assert settings.CACHE_OUTBOX_SWEEP_SECONDS == 0
    make_connection(alice_id, "github")

    assert not undelivered(alice_id)


def test_a_command_that_exits_before_the_sweep_still_deletes_what_it_acknowledged(alice_id):
    """A management command writes (batched acknowledgement, sweeper an hour away) and exits."""
    env = env_for_manage(CACHE_OUTBOX_SWEEP_SECONDS="3600")
    script = (
        "from connectors.models import PlatformConnection\n"
        f"PlatformConnection.objects.create(user_id='{alice_id}', provider='github')\n"
        "from connectors.cache import outbox\n"
        "assert outbox._acknowledged._ids, 'acknowledged at once, not batched'\n"
    )
    result = manage("shell", "-v", "0", "-c", script, env=env)

    assert result.returncode == 0, result.stderr
    assert PlatformConnection.objects.filter(user_id=alice_id).exists()
    assert not undelivered(alice_id)
