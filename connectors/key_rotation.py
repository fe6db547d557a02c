"""Re-encrypt every stored OAuth token under the newest TOKEN_ENCRYPTION_KEY.

Rotation procedure: prepend a new key (TOKEN_ENCRYPTION_KEY="new,old"), deploy, run
`manage.py rotate_token_key`, then drop the old key. Tokens are read and written as raw
ciphertext, so no other column is written. The database trigger of migration 0002 still stamps
`version` and `updated_at` on every UPDATE, as it does for any writer; that costs clients one
ETag revalidation, and the status cache is invalidated on commit like after any bulk update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import transaction
from django.db.models import CharField, Q, TextField, Value
from django.db.models.functions import Cast

from connectors import crypto
from connectors.models import ConnectionStatus, PlatformConnection

TOKEN_FIELDS = ("access_token", "refresh_token")


@dataclass
class RotationResult:
    rows_seen: int = 0
    tokens_rotated: int = 0
    tokens_current: int = 0
    tokens_unreadable: int = 0
    tokens_forgotten: int = 0  # unreadable ones cleared (forget_unreadable)


def _is_current(ciphertext: str, newest: Fernet) -> bool:
    try:
        newest.decrypt(ciphertext.encode())
    except InvalidToken:
        return False
    return True


def token_key_rotate(
    *,
    batch_size: int = 500,
    forget_unreadable: bool = False,
    progress: Callable[[RotationResult], None] | None = None,
) -> RotationResult:
    """Re-encrypt, batch by batch, every token not already under the newest key.

    Idempotent: tokens the newest key already decrypts are left alone, so a second run (or a
    run interrupted and restarted) rewrites nothing twice. Each batch is one transaction whose
    rows are locked (select_for_update) so a concurrent OAuth callback cannot be overwritten
    with the ciphertext read before it. `forget_unreadable`: tokens no key opens (their key is
    lost) are cleared, and a connection whose access token went is marked expired, so its user
    is asked to reconnect instead of a job failing on it later.
    """
    newest = Fernet(settings.TOKEN_ENCRYPTION_KEYS[0].encode())
    result = RotationResult()
    has_token = Q(access_token__isnull=False) | Q(refresh_token__isnull=False)
    last_pk = 0
    while True:
        with transaction.atomic():
            # Cast to a plain text column: the raw ciphertext, not EncryptedTextField's
            # decrypted value.
            rows = list(
                PlatformConnection.objects.select_for_update()
                .filter(has_token, pk__gt=last_pk)
                .order_by("pk")
                .annotate(
                    raw_access=Cast("access_token", TextField()),
                    raw_refresh=Cast("refresh_token", TextField()),
                )
                .values_list("pk", "user_id", "raw_access", "raw_refresh")[:batch_size]
            )
            if not rows:
                break
            changed: list[PlatformConnection] = []
            fields: set[str] = set()
            for pk, user_id, *ciphertexts in rows:
                update = PlatformConnection(pk=pk, user_id=user_id)
                for name, ciphertext in zip(TOKEN_FIELDS, ciphertexts, strict=True):
                    if not ciphertext:
                        continue
                    if _is_current(ciphertext, newest):
                        result.tokens_current += 1
                        continue
                    try:
                        rotated = crypto.reencrypt(ciphertext)
                    except InvalidToken:
                        result.tokens_unreadable += 1
                        if forget_unreadable:
                            setattr(update, name, Value(None, output_field=TextField()))
                            fields.add(name)
                            result.tokens_forgotten += 1
                            if name == "access_token":
                                update.status = Value(
                                    ConnectionStatus.EXPIRED.value, output_field=CharField()
                                )
                                fields.add("status")
                        continue
                    # A Value with a plain TextField is written as is: EncryptedTextField's
                    # get_prep_value would encrypt the ciphertext a second time.
                    setattr(update, name, Value(rotated, output_field=TextField()))
                    fields.add(name)
                    result.tokens_rotated += 1
                if any(isinstance(getattr(update, n), Value) for n in TOKEN_FIELDS):
                    changed.append(update)
            for name in fields:
                # One UPDATE per column and batch; rows whose other column did not change keep
                # it, because only the rows carrying a Value for this column are listed.
                subset = [obj for obj in changed if isinstance(getattr(obj, name), Value)]
                PlatformConnection.objects.bulk_update(subset, [name])
            result.rows_seen += len(rows)
            last_pk = rows[-1][0]
        if progress:
            progress(result)
    return result
