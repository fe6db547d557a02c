"""Issue 13, item 3: whoever can write to the Redis can delete entries, never make the API serve
something else. Each attack is planted twice: in the format entries had before they carried a
MAC (what the attack used), and in today's format with a MAC the attacker had to guess."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from connectors import cache
from tests.support.clients import status_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def _key(user_id: str) -> str:
    return cache.full_key(cache.platform_status_key(user_id))


def _header(user_id: str, body: bytes, **fields: object) -> bytes:
    header = {
        "s": cache.SCHEMA_VERSION,
        "k": user_id,
        "etag": cache.etag_of(body),
        "n": len(body),
        "delta": 0.001,
        "exp": time.time() + 300,
        **fields,
    }
    return json.dumps(header, separators=(",", ":")).encode()


def _forgeries(user_id: str, body: bytes, **fields: object) -> list[bytes]:
    """The same planted entry without a MAC line, and with one keyed by a guessed secret."""
    unsealed = _header(user_id, body, **fields) + b"\n" + body
    guessed = hashlib.sha256(b"connectors.cache.entry\x00guessed-secret").digest()
    mac = hmac.digest(guessed, _key(user_id).encode() + b"\x00" + unsealed, "sha256")
    return [unsealed, mac[:16].hex().encode() + b"\n" + unsealed]


def _document(user_id: str, **extra: object) -> bytes:
    return json.dumps(
        {"user_id": user_id, "platforms": {}, **extra}, separators=(",", ":")
    ).encode()


def _plant_and_read(client, user_id: str, value: bytes, **headers: str):
    cache.maintenance_client().set(_key(user_id), value, ex=60)
    return client.get(f"/api/connectors/status/{user_id}", **headers)


@pytest.mark.parametrize("variant", [0, 1], ids=["unsealed", "guessed-mac"])
def test_another_users_document_under_a_users_key_is_not_served(
    variant, alice, alice_id, bob_id, make_connection
):
    make_connection(alice_id, "github")
    stolen = _document(bob_id)  # bob's document, with a header rewritten for alice's key
    response = _plant_and_read(alice, alice_id, _forgeries(alice_id, stolen)[variant])
    body = response.json()
    assert body["cached"] is False
    assert body["data"]["user_id"] == alice_id
    assert body["data"]["platforms"]["github"]["connected"] is True


def test_an_entry_moved_from_another_users_key_is_not_served(
    alice, alice_id, bob, bob_id, make_connection
):
    """A genuine entry, sealed by this server, copied from bob's key to alice's."""
    make_connection(bob_id, "github")
    status_of(bob, bob_id)
    genuine = cache.maintenance_client().get(_key(bob_id))
    response = _plant_and_read(alice, alice_id, genuine)
    assert response.json()["cached"] is False
    assert response.json()["data"]["user_id"] == alice_id


@pytest.mark.parametrize("variant", [0, 1], ids=["unsealed", "guessed-mac"])
@pytest.mark.parametrize(
    "body",
    [
        b"</script><script>alert(1)</script>",
        b'{"user_id":"%(u)s","platforms":{}},"success":false,"injected":1',
    ],
    ids=["not-json", "envelope-splice"],
)
def test_a_planted_body_is_never_sent(variant, body, alice, alice_id):
    planted = body.replace(b"%(u)s", alice_id.encode())
    response = _plant_and_read(alice, alice_id, _forgeries(alice_id, planted)[variant])
    assert response.status_code == 200
    assert planted not in response.content
    assert response.json()["cached"] is False
    assert "injected" not in response.json()


def test_an_oversized_value_is_a_miss_and_is_replaced(alice, alice_id):
    huge = _document(alice_id, padding="x" * (30 * 1024 * 1024))
    response = _plant_and_read(alice, alice_id, _forgeries(alice_id, huge)[0])
    assert response.json()["cached"] is False
    assert len(response.content) < 10_000
    assert len(cache.maintenance_client().get(_key(alice_id)) or b"") < 10_000


@pytest.mark.parametrize("variant", [0, 1], ids=["unsealed", "guessed-mac"])
def test_a_forged_entrys_etag_gets_no_304(variant, alice, alice_id):
    """A 304 would tell the client that the forged document is the current one."""
    forged = _document(alice_id, injected=1)
    etag = cache.etag_of(forged)
    planted = _forgeries(alice_id, forged)[variant]
    response = _plant_and_read(alice, alice_id, planted, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200
    assert response["ETag"] != etag


def test_rejected_entries_are_counted(alice, alice_id):
    before = cache.cache_stats()["rejected"]
    _plant_and_read(alice, alice_id, _forgeries(alice_id, _document(alice_id))[1])
    assert cache.cache_stats()["rejected"] == before + 1


def test_an_entry_sealed_under_another_secret_is_a_miss(alice, alice_id, settings):
    """Rotating DJANGO_SECRET_KEY turns every stored entry into a miss, never an error."""
    status_of(alice, alice_id)
    assert status_of(alice, alice_id)["cached"] is True
    settings.SECRET_KEY = "another-secret-" + "z" * 40
    assert status_of(alice, alice_id)["cached"] is False
    assert status_of(alice, alice_id)["cached"] is True
