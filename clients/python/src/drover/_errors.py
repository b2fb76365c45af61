"""The errors a drover client raises. Each carries what the node said."""

from __future__ import annotations

from typing import List, Optional


class DroverError(Exception):
    """Anything that went wrong talking to a drover node."""


class NodeNotFound(DroverError):
    """No node could be found: no ``server`` given, no ``DROVER_SERVER``, and nothing serves from
    the data dir."""


class Unreachable(DroverError):
    """The node's address is known but it did not answer (it is stopped or restarting)."""


class UntrustedCertificate(DroverError):
    """The node serves HTTPS with a certificate this client does not trust (self-signed, signed
    by an unknown CA, or naming another host). Pass ``ca_file=`` (or set ``DROVER_CA_FILE``) with
    that certificate or the CA that signed it. ``reason`` is the TLS library's."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"the node at {url} presented a TLS certificate this client does not trust: {reason}; "
            "if you trust it, pass ca_file= (or set DROVER_CA_FILE) with that certificate or the "
            "CA that signed it"
        )
        self.url = url
        self.reason = reason


class ApiError(DroverError):
    """The node answered with an error. ``message`` is the node's own words (it starts with the
    field at fault, where there is one), ``field`` that field (``argv``, ``timeout``,
    ``[3].argv``, ``id``), ``status`` the HTTP status."""

    def __init__(self, status: int, message: str, field: Optional[str] = None) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message
        self.field = field


class InvalidRequest(ApiError):
    """400, 413, 422: what was sent is not valid (a bad spec, an unknown field, too large)."""


class Unauthorized(ApiError):
    """401 or 403: no token, a wrong one, or a request the node refuses from this origin."""


class NotFound(ApiError):
    """404: no such job, group, queue or node."""


class Conflict(ApiError):
    """409: the change cannot be made in the job's state (a job that already ended, say)."""


class WaitTimeout(DroverError):
    """``wait`` gave up before the jobs ended. ``pending`` are the ids still going."""

    def __init__(self, pending: List[str]) -> None:
        super().__init__(f"{len(pending)} job(s) had not ended: {', '.join(pending[:5])}")
        self.pending = pending


def from_answer(status: int, body: bytes) -> ApiError:
    """The error for an error answer of the node (``{"error": {"message", "field"}}``)."""
    import json

    message, field = body.decode("utf-8", "replace").strip() or f"HTTP {status}", None
    try:
        detail = json.loads(body)["error"]
        message, field = detail["message"], detail.get("field")
    except (ValueError, KeyError, TypeError):
        pass
    kind = {400: InvalidRequest, 413: InvalidRequest, 422: InvalidRequest, 401: Unauthorized,
            403: Unauthorized, 404: NotFound, 409: Conflict}.get(status, ApiError)
    return kind(status, message, field)
