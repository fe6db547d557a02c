"""API clients acting as a user (or the service role), and the status read most tests make."""

from __future__ import annotations

import copy
from typing import Any

from rest_framework.test import APIClient

from connectors.auth import issue_token


def client_for(user_id: str | None, *, service_role: bool = False) -> APIClient:
    client = APIClient()
    if user_id or service_role:
        token = issue_token(user_id=user_id, service_role=service_role)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def status_of(client: APIClient, user_id: str) -> dict[str, Any]:
    response = client.get(f"/api/connectors/status/{user_id}")
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def use_cache(settings: Any, location: str, *, timeout: float = 0.2, **pool_kwargs: Any) -> None:
    """Point the app's cache at another Redis (`location`) for the rest of the test, with
    `timeout` for its sockets and `pool_kwargs` added to its connection pool's."""
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = location
    options = caches["default"]["OPTIONS"]
    options["SOCKET_TIMEOUT"] = options["SOCKET_CONNECT_TIMEOUT"] = timeout
    options["CONNECTION_POOL_KWARGS"] = {**options["CONNECTION_POOL_KWARGS"], **pool_kwargs}
    settings.CACHES = caches


# A platform the user has not connected, as the API's contract spells it (written out here, not
# taken from the code under test).
NOT_CONNECTED: dict[str, Any] = {
    "connected": False,
    "status": "not_connected",
    "connected_at": None,
    "last_sync_at": None,
    "last_sync_status": None,
    "version": 0,
}
