"""The stored entry format: a one-line JSON header, a newline, then the document's JSON bytes.

A hit sends the document's bytes as they are (no decode, no re-encode); the header carries what
the read path needs (owner, ETag, XFetch's recompute time, expiry). See docs/architecture.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from connectors.cache.keys import Slot, ttl_seconds

logger = logging.getLogger("connectors.cache")

SCHEMA_VERSION = 2


def dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def etag_of(body: bytes) -> str:
    # The document carries every row's DB-assigned version, so any committed write changes it.
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'


class CachedRead:
    """What a read-through returns: the document as JSON bytes, ready to be sent as they are.

    `data` decodes it on demand, for callers that need to look inside.
    """

    __slots__ = ("_data", "body", "cached", "etag", "stale")

    def __init__(
        self,
        body: bytes,
        *,
        cached: bool,
        etag: str,
        stale: bool = False,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.body = body
        self.cached = cached
        self.etag = etag
        # Served past its TTL because the database could not be asked (RFC 5861 stale-if-error).
        self.stale = stale
        self._data = data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> CachedRead:
        body = dumps(data)
        return cls(body, cached=False, etag=etag_of(body), data=data)

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self.body)
        return self._data


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    etag: str
    delta: float  # seconds the fill took (XFetch's recompute time)
    expires_at: float

    def served(self, *, stale: bool = False) -> CachedRead:
        return CachedRead(self.body, cached=True, etag=self.etag, stale=stale)


def encode(slot: Slot, body: bytes, etag: str, fill_seconds: float) -> bytes:
    # Compact JSON never contains a raw newline, so the first one ends the header.
    header = {
        "s": SCHEMA_VERSION,
        "k": slot.ident,
        "etag": etag,
        "n": len(body),
        "delta": round(fill_seconds, 6),
        "exp": round(time.time() + ttl_seconds(slot.kind), 3),
    }
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body


def decode(raw: bytes | str, slot: Slot) -> Entry | None:
    """A stored entry, or None if it is not one we wrote (planted, truncated, old schema).

    The ETag is the SHA-256 of the document, so checking it (about 2 us for a status document)
    also catches a document cut short or altered.
    """
    try:
        if isinstance(raw, str):
            raw = raw.encode()
        header_bytes, separator, body = raw.partition(b"\n")
        header = json.loads(header_bytes)
        if not separator or header["s"] != SCHEMA_VERSION or header["k"] != slot.ident:
            raise ValueError("schema or owner mismatch")
        if header["n"] != len(body) or header["etag"] != etag_of(body):
            raise ValueError("document does not match its header")
        return Entry(body, header["etag"], float(header["delta"]), float(header["exp"]))
    except (ValueError, KeyError, TypeError) as e:
        logger.warning("Discarding unreadable %s entry (%s)", slot.describe(), e)
        return None
