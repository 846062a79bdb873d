"""Errors a payload function turns into a clear HTTP answer (or a failed invocation)."""

from __future__ import annotations


class PayloadError(Exception):
    """A request or invocation the function refuses; `status` is the HTTP status to answer.

    The message is shown to the caller, so it never contains a setting's value or a token."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BadRequest(PayloadError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class Unauthorized(PayloadError):
    def __init__(self, message: str = "missing or invalid X-Inter-Cloud-Token") -> None:
        super().__init__(401, message)


class UnknownDevice(PayloadError):
    """A message names a device the twin does not have: 422, so no sender retries it (no setting
    of this twin will ever route it)."""

    def __init__(self, device_id: str) -> None:
        super().__init__(422, f"device {device_id[:80]!r} is not a device of this twin")


class NotReady(PayloadError):
    """A dependency output is not wired yet (e.g. ADT_INSTANCE_URL before L4 exists)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)


class UpstreamError(PayloadError):
    """A call to another function, store or cloud failed after its retries."""

    def __init__(self, message: str) -> None:
        super().__init__(502, message)
