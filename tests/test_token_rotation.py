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
