"""JSON for django-redis values, with datetimes, dates, UUIDs and Decimals surviving the trip.

django-redis' own JSONSerializer turns a datetime into a string that comes back as a string;
pickle would let anyone who can write to Redis run code in this process.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django_redis.serializers.base import BaseSerializer

_TAG = "__t"


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {_TAG: "dt", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {_TAG: "d", "v": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {_TAG: "uuid", "v": str(value)}
    if isinstance(value, Decimal):
        return {_TAG: "dec", "v": str(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_DECODERS: dict[str, Callable[[str], Any]] = {
    "dt": dt.datetime.fromisoformat,
    "d": dt.date.fromisoformat,
    "uuid": uuid.UUID,
    "dec": Decimal,
}


def _decode(obj: dict[str, Any]) -> Any:
    tag = obj.get(_TAG)
    if tag is not None and len(obj) == 2 and tag in _DECODERS:
        return _DECODERS[tag](obj["v"])
    return obj


def dumps(value: Any) -> bytes:
    return json.dumps(value, default=_encode, separators=(",", ":")).encode()


def loads(value: bytes | str) -> Any:
    return json.loads(value, object_hook=_decode)


class TaggedJSONSerializer(BaseSerializer):
    def dumps(self, value: Any) -> bytes:
        return dumps(value)

    def loads(self, value: bytes) -> Any:
        return loads(value)
