"""Domain errors. The API maps them to HTTP in one place (connectors/api/exceptions.py)."""

from __future__ import annotations


class DomainError(Exception):
    code = "error"
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidUserId(DomainError):
    code = "invalid_user_id"


class InvalidJobId(DomainError):
    code = "invalid_job_id"


class UnknownProvider(DomainError):
    code = "unknown_provider"


class InvalidOAuthState(DomainError):
    code = "invalid_state"


class OAuthStateAlreadyUsed(DomainError):
    """A callback replayed with a state that already completed a connection."""

    code = "state_already_used"


class OAuthExchangeFailed(DomainError):
    """The provider refused the code (its 4xx): the user must start over."""

    code = "oauth_exchange_failed"


class ProviderUnavailable(DomainError):
    """The provider could not be reached or answered with a 5xx / garbage."""

    code = "provider_unavailable"
    status_code = 502


class ProviderNotConfigured(DomainError):
    code = "provider_not_configured"
    status_code = 503


class NotConnected(DomainError):
    code = "not_connected"
    status_code = 404


class JobNotFound(DomainError):
    code = "not_found"
    status_code = 404


class CacheUnavailable(Exception):
    """Redis could not be used; callers fall back to the database."""


class CacheKeyUnreadable(CacheUnavailable):
    """Redis answered with an error for this key (a planted key of another type): a miss."""


class ConnectionRequired(DomainError):
    code = "not_connected"
    status_code = 409


class InvalidJobTransition(DomainError):
    code = "invalid_job_transition"
    status_code = 409
