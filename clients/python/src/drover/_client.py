"""The client: one object per node, every call one or a few requests of the node's HTTP API.

Only the standard library is used (``urllib``), so the package installs anywhere Python runs —
a notebook's kernel, Sage's own Python.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union, cast

from . import _discovery
from ._errors import DroverError, Unreachable, UntrustedCertificate, WaitTimeout, from_answer

#: The states a job ends in.
TERMINAL_STATES = frozenset({"succeeded", "failed", "timed_out", "cancelled", "lost"})

#: Variables of the submitting process that never go into a stored spec (the CLI's rule too).
NODE_SECRETS = ("DROVER_TOKEN", "DROVER_TOKEN_FILE", "DROVER_DATABASE_URL")

Spec = Dict[str, Any]


@dataclass(frozen=True)
class Job:
    """A job as the node records it. The fields most used are attributes; ``raw`` holds the
    whole record (spec, attempts, usage, …) as the API gives it."""

    id: str
    number: int
    name: str
    state: str
    reason: Optional[str]
    exit_code: Optional[int]
    result: Any
    raw: Dict[str, Any] = field(repr=False)

    @property
    def ended(self) -> bool:
        """Whether the job is in a state it ends in."""
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"

    @classmethod
    def from_json(cls, raw: Dict[str, Any]) -> "Job":
        return cls(
            id=raw["id"],
            number=raw.get("number", 0),
            name=raw.get("name", ""),
            state=raw["state"],
            reason=raw.get("reason"),
            exit_code=raw.get("exit_code"),
            result=raw.get("result"),
            raw=raw,
        )


@dataclass(frozen=True)
class Group:
    """A sweep or flow as submitted: its id, number, name and member job ids."""

    id: str
    number: int
    name: str
    jobs: List[str]


@dataclass(frozen=True)
class Event:
    """One state change, from ``GET /v1/events``. ``seq`` numbers them in commit order; resume
    from one with ``events(since=seq)``."""

    seq: int
    kind: str
    job_id: Optional[str]
    attempt: Optional[int]
    state: Optional[str]
    node: Optional[str]
    reason: Optional[str]
    at: Optional[str]


class Client:
    """A connection to one drover node.

    ``Client()`` finds the node as the ``drover`` CLI does (``DROVER_SERVER``, the data dir's
    ``serve.json``, the token from ``DROVER_TOKEN``/``DROVER_TOKEN_FILE``/``drover.toml``/the local
    node's own); pass ``server``, ``data_dir`` or ``token`` to choose. An ``https://`` node is
    verified against the system's certificates, or those in ``ca_file`` (else ``DROVER_CA_FILE``,
    else ``ca_file`` in ``drover.toml``): a self-signed node's certificate, or your CA's.
    """

    def __init__(
        self,
        server: Optional[str] = None,
        *,
        data_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
        token: Optional[str] = None,
        ca_file: Optional[Union[str, "os.PathLike[str]"]] = None,
        timeout: float = 120.0,
    ) -> None:
        found = _discovery.find(server, data_dir, token, ca_file)
        # Found through the data dir: after a restart it is looked up there again.
        self._data_dir: Optional[Union[str, "os.PathLike[str]"]] = None
        if not (server or os.environ.get("DROVER_SERVER")):
            self._data_dir = (
                data_dir or os.environ.get("DROVER_DATA_DIR") or _discovery.default_data_dir()
            )
        self.url = found.url
        self._token = found.token
        self._timeout = timeout
        self._tls = _tls_context(found.ca_file)

    def __repr__(self) -> str:
        return f"drover.Client({self.url!r})"

    # --- transport ------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: Optional[float] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> http.client.HTTPResponse:
        data = None
        all_headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        if self._token:
            all_headers["Authorization"] = f"Bearer {self._token}"
        all_headers.update(headers or {})
        for retry in (True, False):
            request = urllib.request.Request(self.url + path, data=data, method=method,
                                             headers=all_headers)
            try:
                answer = urllib.request.urlopen(
                    request, timeout=timeout or self._timeout, context=self._tls
                )
                return cast(http.client.HTTPResponse, answer)
            except urllib.error.HTTPError as e:
                with e:
                    raise from_answer(e.code, e.read()) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                if isinstance(reason, ssl.SSLCertVerificationError):
                    # Not retried: asking again gets the same certificate.
                    raise UntrustedCertificate(
                        self.url, reason.verify_message or str(reason)
                    ) from e
                refused = isinstance(getattr(e, "reason", e), ConnectionRefusedError)
                before = self.url
                # Refused: nothing was sent, so asking the node again where it now listens (a
                # restart may have moved it) and sending once more is safe, even for a submit.
                if retry and refused:
                    self._relocate()
                    if self.url != before:
                        continue
                raise Unreachable(f"cannot reach the drover node at {self.url}: {e}") from e
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        with self._request(method, path, body, **kw) as answer:
            return json.loads(answer.read())

    # --- submitting -----------------------------------------------------------------------

    def _complete(self, spec: Spec) -> Spec:
        """A spec as submitted from here: this process's directory and environment, as the CLI
        gives them, unless the spec names its own (``env_clear=True`` keeps only its ``env``)."""
        spec = dict(spec)
        spec.setdefault("cwd", os.getcwd())
        if not spec.get("env_clear"):
            env = {k: v for k, v in os.environ.items() if k not in NODE_SECRETS}
            env.update(spec.get("env") or {})
            spec["env"] = env
            spec["env_clear"] = True
        return spec

    @staticmethod
    def spec(argv: Union[str, Sequence[str]], **fields: Any) -> Spec:
        """A job spec: ``argv`` (a list, or one string run by ``sh -c``) and any field of
        ``POST /v1/jobs`` (``name``, ``timeout="2h"``, ``memory="4G"``, ``cpus=2``, ``retries``,
        ``env``, ``cwd``, ``priority``, ``queue``, ``after=[ids]``, …)."""
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        spec = {"argv": list(argv)}
        spec.update({k: v for k, v in fields.items() if v is not None})
        return spec

    def submit(self, argv: Union[str, Sequence[str]], **fields: Any) -> str:
        """Submits one job; returns its id. See :meth:`spec` for the fields."""
        answer = self._json("POST", "/v1/jobs", self._complete(self.spec(argv, **fields)))
        return str(answer["id"])

    def submit_batch(self, specs: Iterable[Spec]) -> List[str]:
        """Submits many jobs at once (all or none); returns their ids in order."""
        batch = [self._complete(s) for s in specs]
        return [str(id) for id in self._json("POST", "/v1/jobs", batch)["ids"]]

    def sweep(
        self,
        argv: Sequence[str],
        each: Union[str, Sequence[Any], Mapping[str, Union[str, Sequence[Any]]]],
        *,
        name: Optional[str] = None,
        **fields: Any,
    ) -> Group:
        """A parameter sweep: one job per value of ``each``, ``{}`` (or ``{NAME}`` for named axes)
        in ``argv`` replaced by it. ``each`` is a range (``"1..100"``, ``"0..1:0.1"``), a list, or
        ``{"n": "1..20", "seed": [1, 2, 3]}`` for their product."""
        step = self.spec(argv, **fields)
        step["each"] = each if isinstance(each, (str, Mapping)) else list(each)
        if name is None:
            name = os.path.basename(step["argv"][0]) if step["argv"] else "sweep"
        common = self._complete({})
        body = {"kind": "sweep", "flow": {"name": name, "steps": {"sweep": step}}, "common": common}
        answer = self._json("POST", "/v1/groups", body)
        return Group(answer["id"], answer["number"], answer["name"], answer["jobs"])

    # --- reading --------------------------------------------------------------------------

    def job(self, id: str) -> Job:
        """The job as recorded now."""
        return Job.from_json(self._json("GET", f"/v1/jobs/{_q(id)}"))

    def jobs(self, *, state: Optional[str] = None, limit: int = 100) -> List[Job]:
        """Recent jobs, newest first (``state`` filters)."""
        query = {"limit": str(limit)}
        if state:
            query["state"] = state
        return [Job.from_json(j) for j in self._json("GET", "/v1/jobs?" + urllib.parse.urlencode(query))]

    def wait(self, id: str, timeout: Optional[float] = None) -> Job:
        """Blocks until the job ends (or ``timeout`` seconds pass: :class:`WaitTimeout`), and
        returns it. Survives a restart of the node."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 30.0 if deadline is None else max(0.0, min(30.0, deadline - time.monotonic()))
            try:
                job = Job.from_json(
                    self._json("GET", f"/v1/jobs/{_q(id)}/wait?timeout={int(left * 1000)}ms",
                               timeout=left + 30)
                )
            except Unreachable:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
                self._relocate()
                continue
            if job.ended:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout([id])

    def wait_all(self, ids: Iterable[str], timeout: Optional[float] = None) -> List[Job]:
        """Waits for every job; returns them in the order given."""
        ids = list(ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        done = []
        for i, id in enumerate(ids):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                done.append(self.wait(id, left))
            except WaitTimeout:
                raise WaitTimeout(ids[i:]) from None
        return done

    def logs(self, id: str, stream: str = "stdout", *, attempt: Optional[int] = None,
             tail: Optional[int] = None) -> str:
        """What the job wrote to ``stream`` (``stdout`` or ``stderr``), of its latest attempt or
        of ``attempt``; ``tail=N``: its last N lines only."""
        query = {"stream": stream}
        if attempt is not None:
            query["attempt"] = str(attempt)
        if tail is not None:
            query["tail"] = str(tail)
        with self._request("GET", f"/v1/jobs/{_q(id)}/logs?" + urllib.parse.urlencode(query)) as a:
            return str(a.read().decode("utf-8", "replace"))

    def result(self, id: str) -> Any:
        """The result the job gave (``$DROVER_OUTPUT_DIR/result.json``), or ``None``."""
        return self.job(id).result

    def results(self, group: str) -> List[Dict[str, Any]]:
        """Every member's row of a sweep or flow: ``index``, ``values``, ``state``, ``result``, …"""
        rows = self._json("GET", f"/v1/groups/{_q(group)}/results")["results"]
        return cast(List[Dict[str, Any]], rows)

    def cancel(self, id: str) -> Dict[str, Any]:
        """Cancels a job (its whole tree gets SIGTERM, then SIGKILL after its grace)."""
        return cast(Dict[str, Any], self._json("POST", f"/v1/jobs/{_q(id)}/cancel", {}))

    def events(
        self,
        since: Optional[int] = None,
        *,
        job: Optional[str] = None,
        states: Optional[Sequence[str]] = None,
        follow: bool = True,
    ) -> Iterator[Event]:
        """Every state change, as it happens: a generator over ``GET /v1/events``.

        ``since`` resumes after that event's ``seq`` (0: from the oldest kept); without it,
        only what comes from now on. A dropped connection or a restart of the node is resumed
        from the last event seen, so nothing is missed and nothing comes twice. With
        ``follow=False`` it stops once it has caught up (the backlog only is not guaranteed:
        it ends at the first pause of 1 s).
        """
        last = since
        query: Dict[str, str] = {}
        if job:
            query["job"] = job
        if states:
            query["state"] = ",".join(states)
        while True:
            headers = {"Accept": "text/event-stream"}
            params = dict(query)
            if last is not None:
                params["since"] = str(last)
            path = "/v1/events" + ("?" + urllib.parse.urlencode(params) if params else "")
            try:
                # The node sends a keep-alive every 15 s: a minute of silence is a dead
                # connection, resumed from the last event. Not following: a pause of 1 s is
                # the end of the backlog.
                answer = self._request("GET", path, headers=headers,
                                       timeout=60.0 if follow else 1.0)
            except Unreachable:
                if not follow:
                    return
                time.sleep(0.5)
                self._relocate()
                continue
            try:
                with answer:
                    for event in _sse(answer):
                        if event.seq < 0:
                            # The stream's own note: the node stops, or this reader fell
                            # behind. Either way, reconnect from the last event seen.
                            break
                        last = event.seq
                        yield event
            except (OSError, TimeoutError):
                if not follow:
                    return
            if not follow:
                return
            time.sleep(0.2)
            self._relocate()

    def _relocate(self) -> None:
        """After a lost connection: the node may have restarted on another address."""
        if self._data_dir is None:
            return
        try:
            found = _discovery.find(None, self._data_dir, None)
        except DroverError:
            return
        self.url = found.url
        self._token = found.token or self._token


def _tls_context(ca_file: Optional[str]) -> Optional[ssl.SSLContext]:
    """The certificates an ``https://`` node is checked against: the system's, or ``ca_file``'s."""
    if ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise DroverError(f"reading the CA file {ca_file}: {e}") from e


def _sse(answer: Iterable[bytes]) -> Iterator[Event]:
    """The events of a Server-Sent Events stream. A state change has an ``id:`` (its ``seq``);
    the stream's own notes (``node_stopping``, ``dropped``) have only an ``event:`` type."""
    data: List[str] = []
    kind = ""
    seq: Optional[int] = None
    for raw in answer:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith(":"):
            continue  # a keep-alive comment
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            kind = value
        elif name == "id":
            seq = int(value) if value.isdigit() else None
        elif line == "":
            if data or kind:
                try:
                    payload = json.loads("\n".join(data)) if data else {}
                except ValueError:
                    payload = {}
                if not isinstance(payload, dict):
                    payload = {}
                yield Event(
                    seq=seq if seq is not None else -1,
                    kind=payload.get("kind") or kind,
                    job_id=payload.get("job_id"),
                    attempt=payload.get("attempt"),
                    state=payload.get("state"),
                    node=payload.get("node"),
                    reason=payload.get("reason"),
                    at=payload.get("at"),
                )
            data, kind, seq = [], "", None


def _q(id: str) -> str:
    return urllib.parse.quote(str(id), safe="")


def connect(server: Optional[str] = None, **kw: Any) -> Client:
    """The node, found as the ``drover`` CLI finds it (see :class:`Client`)."""
    return Client(server, **kw)
