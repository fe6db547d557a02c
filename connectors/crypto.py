"""Tokens encrypted at rest with Fernet; several keys, newest first, so keys can be rotated.

Loading a row never decrypts: the column's ciphertext stays sealed until code reads the
attribute (`connection.access_token`). So a token that no configured key can open (a key
dropped before `rotate_token_key`, demo rows written with the development key) does not break
the admin list, a disconnect, or anything else that loads the row without using the token;
only a use of the token itself fails, with TokenDecryptionError naming the fixes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models
from django.db.models.query_utils import DeferredAttribute

from connectors.errors import DomainError


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.TOKEN_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    return fernet().decrypt(ciphertext.encode()).decode()


def reencrypt(ciphertext: str) -> str:
    """Re-encrypt under the newest key (MultiFernet.rotate)."""
    return fernet().rotate(ciphertext.encode()).decode()


class TokenDecryptionError(DomainError):
    """A stored token no configured key opens. A domain error: the API answers 409 with the
    fixes instead of a 500."""

    code = "token_unreadable"
    status_code = 409


def unreadable_message(what: str) -> str:
    return (
        f"{what} cannot be decrypted with any TOKEN_ENCRYPTION_KEY. If a key was removed before "
        "`manage.py rotate_token_key` ran, list it again after the newest one "
        "(TOKEN_ENCRYPTION_KEY=new,old) and run rotate_token_key; if it is lost, the user must "
        "reconnect the provider (rotate_token_key --forget-unreadable clears such tokens)."
    )


class Sealed:
    """Ciphertext as loaded from the database, not decrypted yet."""

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def __repr__(self) -> str:  # never the ciphertext in a log line or a traceback
        return "<sealed token>"


class _DecryptOnRead(DeferredAttribute):
    """A data descriptor (it has __set__), so every read comes here: a loaded value is
    decrypted when read, on each read (nothing plaintext is kept on the instance)."""

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        value = super().__get__(instance, cls)
        if instance is None or not isinstance(value, Sealed):
            return value
        try:
            return decrypt(value.ciphertext)
        except InvalidToken as e:
            raise TokenDecryptionError(
                unreadable_message(f"The stored {self.field.attname} of {instance}")
            ) from e

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    """Stores Fernet ciphertext; Python code reading the attribute sees the plaintext.

    Reads that do not need the tokens (the status endpoint) select only public columns, and a
    loaded row keeps its tokens sealed until one is read.
    """

    descriptor_class = _DecryptOnRead

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return value
        return Sealed(value)

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        # The stored value as it is: a token loaded and not changed is written back sealed,
        # without being decrypted.
        if self.attname in model_instance.__dict__:
            return model_instance.__dict__[self.attname]
        return getattr(model_instance, self.attname)  # deferred: fetched (and decrypted)

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, Sealed):
            return value.ciphertext
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)
