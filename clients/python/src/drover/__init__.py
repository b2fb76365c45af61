"""A Python client for drover, for scripts, notebooks and Sage sessions.

    import drover
    node = drover.connect()                       # the node the `drover` CLI would use
    job = node.wait(node.submit(["gp", "-q", "scan.gp"], timeout="2h", memory="4G"))
    print(job.state, node.logs(job.id))
    sweep = node.sweep(["python3", "sim.py", "{}"], each="1..20")
    for row in node.results(sweep.id): ...

Errors carry the node's message: :class:`InvalidRequest` (a bad spec, naming its ``field``),
:class:`NotFound`, :class:`Unauthorized`, :class:`Conflict`, :class:`Unreachable`,
:class:`UntrustedCertificate` (an HTTPS node whose certificate is not trusted: pass ``ca_file=``),
:class:`WaitTimeout`, all :class:`DroverError`.
"""

from ._client import TERMINAL_STATES, Client, Event, Group, Job, connect
from ._errors import (
    ApiError,
    Conflict,
    DroverError,
    InvalidRequest,
    NodeNotFound,
    NotFound,
    Unauthorized,
    Unreachable,
    UntrustedCertificate,
    WaitTimeout,
)

__all__ = [
    "TERMINAL_STATES",
    "ApiError",
    "Client",
    "Conflict",
    "DroverError",
    "Event",
    "Group",
    "InvalidRequest",
    "Job",
    "NodeNotFound",
    "NotFound",
    "Unauthorized",
    "Unreachable",
    "UntrustedCertificate",
    "WaitTimeout",
    "connect",
]
