from __future__ import annotations

import uuid
from typing import Any

import pytest

from connectors import cache, selectors
from connectors.models import PlatformConnection

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_admin_needs_a_staff_login(client):
    response = client.get("/admin/connectors/platformconnection/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_list_filters_and_searches_by_user(admin_client, alice_id, bob_id, make_connection):
    make_connection(alice_id, "github")
    make_connection(bob_id, "spotify", last_sync_status="failed")
    page = admin_client.get("/admin/connectors/platformconnection/", {"q": alice_id})
    assert page.status_code == 200
    assert alice_id in page.content.decode() and bob_id not in page.content.decode()
    filtered = admin_client.get(
        "/admin/connectors/platformconnection/", {"last_sync_status__exact": "failed"}
    )
    assert bob_id in filtered.content.decode() and alice_id not in filtered.content.decode()
    junk = admin_client.get("/admin/connectors/platformconnection/", {"q": "'; drop table"})
    assert junk.status_code == 200


def test_tokens_never_appear_on_admin_pages(admin_client, alice_id, make_connection):
    row = make_connection(alice_id, "github")
    pages = [
        admin_client.get("/admin/connectors/platformconnection/"),
        admin_client.get(f"/admin/connectors/platformconnection/{row.pk}/change/"),
    ]
    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200
        assert row.access_token not in html and row.refresh_token not in html
        assert "access_token" not in html


@pytest.mark.redis
def test_an_admin_edit_invalidates(admin_client, alice_id, make_connection):
    row = make_connection(alice_id, "github")
    selectors.platform_status_for_user(user_id=alice_id)
    assert cache.get_cached_platform_status(alice_id) is not None
    form = {
        "user_id": alice_id,
        "provider": "github",
        "is_active": "",
        "status": "disconnected",
        "scopes": '["read:user"]',
        "last_sync_status": "failed",
        "last_sync_error": "",
        "connected_at_0": "",
        "connected_at_1": "",
        "token_expires_at_0": "",
        "token_expires_at_1": "",
        "last_sync_at_0": "",
        "last_sync_at_1": "",
    }
    response = admin_client.post(f"/admin/connectors/platformconnection/{row.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert cache.get_cached_platform_status(alice_id) is None
    data = selectors.platform_status_for_user(user_id=alice_id).data
    assert data["platforms"]["github"]["last_sync_status"] == "failed"
    assert data["platforms"]["github"]["connected"] is False
    # The edit did not wipe the tokens (they are not on the form).
    row.refresh_from_db()
    assert row.access_token


@pytest.mark.redis
def test_the_invalidate_action_drops_the_selected_users(
    admin_client, alice_id, bob_id, make_connection
):
    a = make_connection(alice_id, "github")
    make_connection(bob_id, "github")
    for user in (alice_id, bob_id):
        selectors.platform_status_for_user(user_id=user)
    response = admin_client.post(
        "/admin/connectors/platformconnection/",
        {
            "action": "invalidate_cache",
            "_selected_action": [a.pk],
        },
    )
    assert response.status_code == 302
    assert cache.get_cached_platform_status(alice_id) is None
    assert cache.get_cached_platform_status(bob_id) is not None


def test_the_extraction_job_admin_lists_jobs(admin_client, alice_id):
    from extraction.models import ExtractionJob

    job = ExtractionJob.objects.create(user_id=alice_id, provider="github")
    page = admin_client.get("/admin/extraction/extractionjob/", {"q": alice_id})
    assert str(job.pk) in page.content.decode()
    assert (
        admin_client.get("/admin/extraction/extractionjob/", {"q": str(uuid.uuid4())}).status_code
        == 200
    )
    assert PlatformConnection.objects.count() == 0


def _staff_with(*codenames: str) -> Any:
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(f"staff-{uuid.uuid4().hex[:8]}", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.mark.redis
def test_the_invalidate_action_needs_the_change_permission(client, alice_id, make_connection):
    row = make_connection(alice_id, "github")
    selectors.platform_status_for_user(user_id=alice_id)
    client.force_login(_staff_with("view_platformconnection"))
    page = client.get("/admin/connectors/platformconnection/")
    assert page.status_code == 200 and alice_id in page.content.decode()  # may look
    assert "invalidate_cache" not in page.content.decode()  # not offered
    client.post(
        "/admin/connectors/platformconnection/",
        {"action": "invalidate_cache", "_selected_action": [row.pk]},
    )
    assert cache.get_cached_platform_status(alice_id) is not None  # and not run when posted
    client.force_login(_staff_with("view_platformconnection", "change_platformconnection"))
    assert (
        "invalidate_cache" in client.get("/admin/connectors/platformconnection/").content.decode()
    )
    client.post(
        "/admin/connectors/platformconnection/",
        {"action": "invalidate_cache", "_selected_action": [row.pk]},
    )
    assert cache.get_cached_platform_status(alice_id) is None


def test_a_partial_user_id_search_says_it_needs_a_full_uuid(
    admin_client, alice_id, make_connection
):
    make_connection(alice_id, "github")
    page = admin_client.get("/admin/connectors/platformconnection/", {"q": alice_id[:8]})
    html = page.content.decode()
    assert page.status_code == 200
    assert "Search needs a full user id (a UUID such as" in html
    assert alice_id not in html.split("Search needs")[1]  # nothing listed
    jobs = admin_client.get("/admin/extraction/extractionjob/", {"q": "abc"})
    assert "Search needs a full user id" in jobs.content.decode()


@pytest.mark.redis
def test_the_invalidate_action_says_one_user_in_the_singular(
    admin_client, alice_id, make_connection
):
    row = make_connection(alice_id, "github")
    response = admin_client.post(
        "/admin/connectors/platformconnection/",
        {"action": "invalidate_cache", "_selected_action": [row.pk]},
        follow=True,
    )
    assert "Invalidated the cache of 1 user." in response.content.decode()
