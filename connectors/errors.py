"""Domain errors. The API maps them to HTTP in one place (connectors/api/exceptions.py)."""

from __future__ import annotations


class DomainError(Exception):
    code = "error"
    status_code = 400
    # Machine-readable fields added to the error body next to code and message.
    extra: dict[str, str] = {}

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


class OAuthExchangeRedirected(OAuthExchangeFailed):
    """The token endpoint answered with a 3xx: never followed, and the provider's fault."""

    status_code = 502


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


class CacheTimedOut(CacheUnavailable):
    """Redis did not answer within the request timeout: the command may still have run.

    `isolated`: the first timeout since Redis last answered on that shard (a busy moment more
    likely than a dead server); False once they come in a row, or with no breaker to count them.
    """

    def __init__(self, message: str, *, isolated: bool = False) -> None:
        super().__init__(message)
        self.isolated = isolated


class CacheKeyUnreadable(CacheUnavailable):
    """Redis answered with an error for this key (a planted key of another type): a miss."""


class ConnectionRequired(DomainError):
    code = "not_connected"
    status_code = 409


class InvalidJobTransition(DomainError):
    code = "invalid_job_transition"
    status_code = 409


class JobAlreadyActive(DomainError):
    """A queued or running job exists for this user and provider; `job_id` names it."""

    code = "job_already_active"
    status_code = 409

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.extra = {"job_id": job_id}
