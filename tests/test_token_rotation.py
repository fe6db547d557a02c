"""TOKEN_ENCRYPTION_KEY rotation: encrypt under A, rotate to "B,A", run rotate_token_key, drop A:
every token still decrypts, and nothing else about the rows changed."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from connectors.crypto import TokenDecryptionError
from connectors.models import PlatformConnection
from tests.support.clients import client_for

pytestmark = pytest.mark.django_db

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def raw_tokens(pk: int) -> tuple[str | None, str | None]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token, refresh_token FROM connectors_platformconnection WHERE id = %s",
            [pk],
        )
        row = cursor.fetchone()
    return row[0], row[1]


def rotate(**options: Any) -> str:
    out = io.StringIO()
    call_command("rotate_token_key", stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def rows(settings: Any, make_connection: Any) -> list[PlatformConnection]:
    settings.TOKEN_ENCRYPTION_KEYS = [KEY_A]
    users = [str(uuid.uuid4()) for _ in range(4)]
    made = [make_connection(user, "github") for user in users[:3]]
    made.append(make_connection(users[0], "spotify", refresh_token=None))
    made.append(
        make_connection(users[3], "reddit", is_active=False, access_token=None, refresh_token=None)
    )
    return made


def test_rotation_re_encrypts_everything_under_the_newest_key(settings, rows):
    plaintexts = {row.pk: (row.access_token, row.refresh_token) for row in rows}
    before = {
        row["id"]: row
        for row in PlatformConnection.objects.values(
            "id", "user_id", "provider", "status", "scopes", "connected_at", "token_expires_at"
        )
    }
    settings.TOKEN_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    output = rotate(batch_size=2)

    assert "Done! Re-encrypted 7 tokens in " in output  # 3 x 2 + 1 access token alone
    assert output.strip().endswith(" s")
    assert "connections checked" in output  # progress, batch by batch
    newest = Fernet(KEY_B.encode())
    for row in rows:
        for raw, plain in zip(raw_tokens(row.pk), plaintexts[row.pk], strict=True):
            assert (raw is None) == (plain is None)
            if raw is not None:
                assert newest.decrypt(raw.encode()).decode() == plain  # B alone reads it
    # Drop A: everything still decrypts, through the model as the app reads it.
    settings.TOKEN_ENCRYPTION_KEYS = [KEY_B]
    for row in PlatformConnection.objects.all():
        assert (row.access_token, row.refresh_token) == plaintexts[row.pk]
    after = {
        row["id"]: row
        for row in PlatformConnection.objects.values(
            "id", "user_id", "provider", "status", "scopes", "connected_at", "token_expires_at"
        )
    }
    # Nothing but the ciphertext changed (updated_at and version belong to the database trigger
    # of migration 0002, which stamps every UPDATE, so they are not compared).
    assert after == before


def test_rotation_is_idempotent(settings, rows):
    settings.TOKEN_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    rotate()
    raw_before = [raw_tokens(row.pk) for row in rows]
    output = rotate()
    assert "Done! Re-encrypted 0 tokens in " in output
    assert "7 tokens were already under the newest key" in output
    assert [raw_tokens(row.pk) for row in rows] == raw_before


def test_without_rotation_dropping_the_old_key_breaks_reads_loudly(settings, rows):
    settings.TOKEN_ENCRYPTION_KEYS = [KEY_B]
    with pytest.raises(TokenDecryptionError) as excinfo:
        PlatformConnection.objects.get(pk=rows[0].pk).access_token  # noqa: B018
    assert "If a key was removed before `manage.py rotate_token_key`" in str(excinfo.value)
    assert rows[0].access_token not in str(excinfo.value)
    assert raw_tokens(rows[0].pk)[0] not in str(excinfo.value)


def test_tokens_no_key_can_read_are_reported_and_left_alone(settings, rows):
    settings.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # an unrelated key
    orphan = PlatformConnection.objects.create(
        user_id=uuid.uuid4(), provider="discord", access_token="orphan-token"
    )
    orphan_raw = raw_tokens(orphan.pk)
    settings.TOKEN_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    with pytest.raises(CommandError, match="1 token could not be decrypted"):
        rotate()
    assert raw_tokens(orphan.pk) == orphan_raw
    settings.TOKEN_ENCRYPTION_KEYS = [KEY_B]
    assert PlatformConnection.objects.get(pk=rows[0].pk).access_token == rows[0].access_token


def test_the_command_explains_itself():
    from connectors.management.commands.rotate_token_key import Command

    assert Command.help.count("\n") == 0 and Command.help.endswith(".")
    with pytest.raises(CommandError, match="--batch-size must be positive"):
        rotate(batch_size=0)


# --- A token no configured key opens (a key dropped too early, demo rows, a lost key) --------
@pytest.fixture
def unreadable(settings: Any, rows: list[PlatformConnection]) -> PlatformConnection:
    """rows[0] (github) was encrypted under A; only an unrelated key is configured now."""
    settings.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    return rows[0]


def test_loading_rows_never_decrypts_so_lists_and_status_still_work(unreadable, admin_client):
    row = PlatformConnection.objects.get(pk=unreadable.pk)  # no error: nothing decrypted yet
    assert row.provider == "github"
    page = admin_client.get("/admin/connectors/platformconnection/")
    assert page.status_code == 200 and str(unreadable.user_id) in page.content.decode()
    change = admin_client.get(f"/admin/connectors/platformconnection/{row.pk}/change/")
    assert change.status_code == 200
    user = str(unreadable.user_id)
    status = client_for(user).get(f"/api/connectors/status/{user}")
    assert status.status_code == 200
    assert status.json()["data"]["platforms"]["github"]["connected"] is True


@pytest.mark.django_db(transaction=True)
def test_a_disconnect_does_not_need_the_token(unreadable):
    user = str(unreadable.user_id)
    response = client_for(user).delete(f"/api/connectors/github/{user}")
    assert response.status_code == 200, response.content
    assert raw_tokens(unreadable.pk) == (None, None)


def test_a_sync_status_write_keeps_the_sealed_token_as_it_was(unreadable):
    from connectors.models import SyncStatus
    from connectors.services import connection_set_sync_status

    before = raw_tokens(unreadable.pk)
    connection_set_sync_status(
        user_id=str(unreadable.user_id), provider="github", sync_status=SyncStatus.FAILED
    )
    row = PlatformConnection.objects.get(pk=unreadable.pk)
    row.last_sync_error = "saved whole, tokens untouched"
    row.save()  # every column written back: the ciphertext unchanged, never decrypted
    assert raw_tokens(unreadable.pk) == before


def test_a_job_that_needs_the_token_is_a_409_naming_the_fixes(unreadable):
    user = str(unreadable.user_id)
    response = client_for(user).post("/api/extraction/jobs", {"provider": "github"}, format="json")
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "token_unreadable"
    assert (
        "rotate_token_key" in error["message"]
        and "TOKEN_ENCRYPTION_KEY=new,old" in error["message"]
    )
    assert "reconnect" in error["message"]
    assert raw_tokens(unreadable.pk)[0] not in error["message"]


def test_forget_unreadable_clears_them_and_asks_the_user_to_reconnect(settings, unreadable, rows):
    with pytest.raises(CommandError, match="--forget-unreadable"):
        rotate()
    output = rotate(forget_unreadable=True)
    assert "unreadable tokens cleared" in output
    assert "Done! Re-encrypted 0 tokens" in output
    for row in rows:
        if row.access_token is not None or row.refresh_token is not None:
            assert raw_tokens(row.pk) == (None, None)
    after = PlatformConnection.objects.get(pk=unreadable.pk)
    assert after.status == "expired" and after.access_token is None
    user = str(unreadable.user_id)
    github = client_for(user).get(f"/api/connectors/status/{user}").json()["data"]["platforms"]
    assert github["github"]["connected"] is False and github["github"]["status"] == "expired"
    assert "Re-encrypted 0 tokens" in rotate()  # nothing unreadable is left
