from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions, serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from connectors.auth import METRICS_ROLE, SupabasePrincipal, confirm_session
from connectors.ids import strict_user_id


def acting_user_id(request: Request, user_id: object) -> str:
    """The validated user id the caller may act on, or 400 / 403.

    Users act only on themselves; the service role on anyone. The 403 is the same whether or not
    the other user exists, so it reveals nothing.
    """
    uid = strict_user_id(user_id)
    principal = request.user
    if isinstance(principal, SupabasePrincipal) and (
        principal.is_service_role or principal.user_id == uid
    ):
        return uid
    raise exceptions.PermissionDenied("You may only act on your own connections.")


def requester_user_id(request: Request, body_user_id: object | None) -> str:
    """For endpoints without a user in the URL: the token's user, or the body's for the
    service role."""
    principal = request.user
    if isinstance(principal, SupabasePrincipal) and principal.is_service_role:
        if body_user_id is None:
            raise exceptions.ValidationError({"user_id": ["Required with a service-role token."]})
        return strict_user_id(str(body_user_id))
    if not isinstance(principal, SupabasePrincipal) or principal.user_id is None:
        raise exceptions.NotAuthenticated()
    if body_user_id is not None:
        return acting_user_id(request, str(body_user_id))
    return principal.user_id


def validated_body(
    request: Request, serializer_class: type[serializers.Serializer]
) -> tuple[dict[str, Any], str]:
    """The request body validated by `serializer_class` (400 otherwise), and the user the
    caller acts for (requester_user_id with the body's optional `user_id`)."""
    body = serializer_class(data=request.data)
    body.is_valid(raise_exception=True)
    params: dict[str, Any] = body.validated_data
    return params, requester_user_id(request, params.get("user_id"))


class IsServiceRoleOrStaff(BasePermission):
    message = "Needs a service-role token or a staff session."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if isinstance(user, SupabasePrincipal):
            return user.is_service_role
        return bool(user and getattr(user, "is_staff", False) and user.is_active)


class CanScrapeMetrics(BasePermission):
    """A service-role token or the METRICS_TOKEN bearer; never "from loopback", since behind a
    reverse proxy on the same host every request comes from loopback."""

    message = "Needs the METRICS_TOKEN bearer or a service-role token."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return isinstance(user, SupabasePrincipal) and (
            user.is_service_role or user.role == METRICS_ROLE
        )


STRICT_WRITE_ACTIONS = frozenset({"callback", "disconnect", "reset"})


class ConfirmedSessionForWrites(BasePermission):
    """SUPABASE_STRICT_WRITES: the writes that change a user's connections also need Supabase
    Auth to confirm the session (one network call; a 401 when the session has ended).

    The service role is a key, not a session, so there is nothing to confirm for it.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        if not settings.SUPABASE_STRICT_WRITES:
            return True
        if getattr(view, "action", None) not in STRICT_WRITE_ACTIONS:
            return True
        principal = request.user
        if isinstance(principal, SupabasePrincipal) and not principal.is_service_role:
            confirm_session(principal, str(request.auth))
        return True
