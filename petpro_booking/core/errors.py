"""The one error hierarchy of the service; the exception handler turns it into HTTP."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext


class ApplicationError(Exception):
    """A failure the caller can understand: a stable `code`, a message and details."""

    status_code = 400
    code = "application_error"
    default_message = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status_code: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.details = details or {}
        super().__init__(self.message)


class ValidationFailed(ApplicationError):
    status_code = 400
    code = "validation_error"
    default_message = "The request is not valid."


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class PermissionDeniedError(ApplicationError):
    status_code = 403
    code = "permission_denied"
    default_message = "You are not allowed to do this."


class Conflict(ApplicationError):
    """409: the request is valid but the current state forbids it (code says why)."""

    status_code = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class Contention(Conflict):
    """409, retryable: others are changing the same thing right now (a lock not free in time,
    a SERIALIZABLE transaction that kept failing to serialize). Apps name their own kind
    (`slots.locking.SlotBusy`); `details.retry_after_seconds` says when to try again."""

    code = "busy"
    default_message = "Others are changing this right now; retry in a moment."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.details.setdefault("retry_after_seconds", 1)


class VersionConflict(ApplicationError):
    status_code = 412
    code = "version_conflict"
    default_message = "The resource has changed since you read it; fetch it again."


class DependencyUnavailable(ApplicationError):
    status_code = 503
    code = "dependency_unavailable"
    default_message = "A service this request needs is unavailable; try again shortly."

    def __init__(self, dependency: str, message: str | None = None) -> None:
        super().__init__(
            message
            or gettext("The %(dependency)s is unavailable; try again shortly.")
            % {"dependency": dependency},
            details={"dependency": dependency},
        )
