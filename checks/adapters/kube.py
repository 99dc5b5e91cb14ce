"""Kubernetes through the official client, exactly as kubectl would reach it.

The client is blocking: every method here is called from a worker thread (anyio.to_thread), with
short request timeouts and few retries. Responses are read as raw JSON (`_preload_content=False`):
the same objects kubectl sees, without the client's slow model deserialisation. Errors become
`KubeError` with a one-line, redacted reason; nothing else escapes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from checks.redact import redact

NOT_FOUND = 404
TOO_MANY_REQUESTS = 429
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # an answer larger than this is not read: the check says `unknown`
READ_CHUNK = 1024 * 1024
# words a reason carries when the API gave no usable answer (judged `unknown`, never `fail`)
COULD_NOT_CHECK = "could not check"


class KubeError(Exception):
    """A Kubernetes API call that did not succeed.

    `kind`: unreachable|timeout|tls|unauthorized|forbidden|notfound|notserved|invalid|server. `notfound` is
    an object that does not exist (a 404 Status naming it); `notserved` a 404 for the kind itself (the
    server does not serve that API group/version/resource), which says nothing about the object.
    """

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.message = message

    @property
    def is_not_found(self) -> bool:
        return self.kind == "notfound"


def _status_message(body: str | bytes | None) -> str:
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        return text.strip().splitlines()[0][:160] if text.strip() else ""
    if isinstance(data, dict):
        return str(data.get("message") or data.get("reason") or "")[:200]
    return ""


def translate_exception(exc: BaseException, what: str) -> KubeError:
    """Turn whatever the client raised into a KubeError with one readable line."""
    from checks.adapters.kube_import import kubernetes_client

    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, kubernetes_client().ApiException):
        status = exc.status or 0
        detail = _status_message(exc.body) or (exc.reason or "")
        kind = {401: "unauthorized", 403: "forbidden", 404: "notfound", 410: "gone", 422: "invalid", 409: "conflict",
                429: "throttled"}.get(status, "server" if status >= 500 else "invalid")
        if status == 0:
            kind = "unreachable"
        if status == NOT_FOUND and not _names_an_object(exc.body):
            return KubeError("notserved", redact(f"{what}: HTTP 404 {detail or 'page not found'} (the API server "
                                                 "does not serve this kind of object)"), status)
        return KubeError(kind, redact(f"{what}: HTTP {status} {detail}".strip()), status)
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return KubeError("timeout", redact(f"{what}: Kubernetes API timed out"))
    if any(marker in lowered for marker in _CLOSED_MARKERS):
        # the server (or a proxy in front of it) accepted the connection and closed it at once
        return KubeError("unreachable", redact(f"{what}: Kubernetes API unreachable (the server closed the "
                                               "connection before answering)"))
    if "ssl" in lowered or "certificate" in lowered:
        return KubeError("tls", redact(f"{what}: TLS error talking to the Kubernetes API ({_short_reason(text)})"))
    if "refused" in lowered or "max retries" in lowered or "name or service" in lowered or "unreachable" in lowered:
        return KubeError("unreachable", redact(f"{what}: Kubernetes API unreachable ({_short_reason(text)})"))
    return KubeError("server", redact(f"{what}: {_short_reason(text)}"))


_CLOSED_MARKERS = ("eof occurred in violation of protocol", "unexpected_eof_while_reading", "sslzeroreturnerror",
                   "remote end closed connection", "connection reset by peer", "connection aborted")


def _names_an_object(body: str | bytes | None) -> bool:
    """Whether a 404 body is a Status about one object (`details.name`), as for `pods "x" not found`;
    a kind the server does not serve answers `404 page not found` or a Status without a name."""
    if not body:
        return False
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return False
    details = data.get("details") if isinstance(data, dict) else None
    return isinstance(details, dict) and bool(details.get("name"))


_OPENSSL_REASON = re.compile(r"\[([A-Z0-9_]+: [A-Z0-9_]+)\]")  # [SSL: CERTIFICATE_VERIFY_FAILED], [X509: …]
_CAUSED_BY = re.compile(r"Caused by (\w+)\((?:\w+\()*['\"]?([^'\")]*)")


def _short_reason(text: str) -> str:
    for marker in ("Connection refused", "connection refused", "CERTIFICATE_VERIFY_FAILED", "Name or service not known",
                   "No route to host", "Connection reset", "Remote end closed"):
        if marker in text:
            return marker
    # urllib3's MaxRetryError: "HTTPSConnectionPool(host=…): Max retries exceeded with url: … (Caused by X(…))"
    openssl = _OPENSSL_REASON.search(text)
    if openssl:
        return openssl.group(1)
    caused = _CAUSED_BY.search(text)
    if caused:
        detail = re.sub(r"<[\w.]+ object at 0x[0-9a-fA-F]+>:?\s*", "", caused.group(2))
        return f"{caused.group(1)}: {detail}".rstrip(": ")[:160]
    return text.splitlines()[0][:160]


def node_with_address(nodes: Iterable[dict[str, Any]], address: str) -> dict[str, Any] | None:
    """Of `nodes`, in order, the first whose InternalIP equals `address`, else the first whose Hostname
    or name does (`KubeReader.find_node`)."""
    by_hostname: dict[str, Any] | None = None
    for node in nodes:
        addresses = (node.get("status") or {}).get("addresses") or []
        for entry in addresses:
            if entry.get("type") == "InternalIP" and entry.get("address") == address:
                return node
            if entry.get("type") == "Hostname" and entry.get("address") == address and by_hostname is None:
                by_hostname = node
        if by_hostname is None and (node.get("metadata") or {}).get("name") == address:
            by_hostname = node
    return by_hostname


@dataclass(frozen=True)
class NodePage:
    """One page of the Node list (`KubeReader.list_nodes_page`): its items, and whether no page follows."""

    items: list[dict[str, Any]]
    complete: bool

    def named(self, name: str) -> dict[str, Any] | None:
        return next((node for node in self.items if (node.get("metadata") or {}).get("name") == name), None)


class KubeReader:
    """Thin, blocking reads and writes of the few objects the checks and actions need."""

    def __init__(self, api_client: Any, request_timeout: float = 5.0, deadline: float | None = None) -> None:
        """`deadline` (time.monotonic()): a 429's Retry-After is waited for only when the retry still ends
        before it (by default, when it is shorter than one request timeout)."""
        from checks.adapters.kube_import import kubernetes_client

        self.client = kubernetes_client()
        self.api_client = api_client
        self.timeout = request_timeout
        self.core = self.client.CoreV1Api(api_client)
        self.apps = self.client.AppsV1Api(api_client)
        self.node_api = self.client.NodeV1Api(api_client)
        self.calls: list[str] = []  # "METHOD path-ish" of each call, for tests and the idle benchmark
        self.deadline = deadline

    def _answer(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        """The body of a successful answer, read in linear time and at most MAX_ANSWER_BYTES; a 429 is
        retried once after its Retry-After when that fits the time left, else it is `throttled`."""
        self.calls.append(what)
        for attempt in (1, 2):
            try:
                response = method(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
            except Exception as exc:  # noqa: BLE001 - every client failure becomes a KubeError
                error = translate_exception(exc, what)
                if error.status != TOO_MANY_REQUESTS:
                    raise error from None
                wait = _retry_after(exc)
                if attempt == 1 and wait is not None and self._fits(wait):
                    time.sleep(wait)
                    continue
                later = f" (Retry-After {wait:g}s is past the sweep's time limit)" if wait is not None else ""
                raise KubeError("throttled", f"{error.message}{later}: {COULD_NOT_CHECK} now", error.status) from None
            return _read_body(response, what)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _fits(self, wait: float) -> bool:
        if wait < 0:
            return False
        if self.deadline is None:
            return wait <= self.timeout
        return time.monotonic() + wait + min(1.0, self.timeout) < self.deadline

    def _json(self, what: str, method: Callable[..., Any], *args: Any, expect: str | None = None,
              **kwargs: Any) -> Any:
        """The answer as a JSON object; `expect` is the `kind` it must have (another kind, a cut or
        invalid body, or a non-object is `badanswer`: could not check, never an empty result)."""
        raw = self._answer(what, method, *args, **kwargs)
        if not raw:
            raise KubeError("badanswer", f"{what}: the API answered with an empty body: {COULD_NOT_CHECK}")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise KubeError("badanswer", f"{what}: the API answered with something that is not JSON (cut short?): "
                                         f"{COULD_NOT_CHECK}") from None
        if not isinstance(data, dict):
            raise KubeError("badanswer", f"{what}: the API answered a JSON {type(data).__name__}, not an object: "
                                         f"{COULD_NOT_CHECK}")
        kind = data.get("kind")
        if expect is not None and kind != expect:
            shown = repr(kind)[:60] if kind is not None else "no kind"
            raise KubeError("badanswer", redact(f"{what}: the API answered {shown}, not a {expect}: {COULD_NOT_CHECK}"))
        if expect is not None and expect.endswith("List"):
            items = data.get("items")
            if items is not None and (not isinstance(items, list) or not all(isinstance(i, dict) for i in items)):
                raise KubeError("badanswer", f"{what}: the {expect}'s items are not objects: {COULD_NOT_CHECK}")
        return data

    def _text(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
        return self._answer(what, method, *args, **kwargs).decode("utf-8", errors="replace")

    # ---- reads -------------------------------------------------------------------------------

    def server_version(self) -> dict[str, Any]:
        return self._json("GET /version", self.client.VersionApi(self.api_client).get_code)

    def read_node(self, name: str) -> dict[str, Any]:
        return self._json(f"GET node {name}", self.core.read_node, name, expect="Node")

    def iter_nodes(self, page_size: int = 500) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": page_size}
            if token:
                kwargs["_continue"] = token
            page = self._json("LIST nodes", self.core.list_node, expect="NodeList", **kwargs)
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    def find_node(self, address: str) -> dict[str, Any] | None:
        """The Node whose InternalIP equals `address`, else whose Hostname or name does."""
        return node_with_address(self.iter_nodes(), address)

    def list_nodes_page(self, limit: int) -> NodePage:
        """The first `limit` Nodes, each as a GET of it answers (a list's items carry no kind), and
        whether that is all of them."""
        page = self._json("LIST nodes", self.core.list_node, expect="NodeList", limit=limit)
        version = page.get("apiVersion") or "v1"
        items = [{"kind": "Node", "apiVersion": version, **item} for item in page.get("items") or []]
        return NodePage(items, complete=not (page.get("metadata") or {}).get("continue"))

    def read_runtime_class(self, name: str) -> dict[str, Any]:
        return self._json(f"GET runtimeclass {name}", self.node_api.read_runtime_class, name, expect="RuntimeClass")

    def list_daemonsets(self, label_selector: str) -> list[dict[str, Any]]:
        data = self._json(
            f"LIST daemonsets -l {label_selector}",
            self.apps.list_daemon_set_for_all_namespaces,
            label_selector=label_selector,
            expect="DaemonSetList",
        )
        return list(data.get("items") or [])

    def list_pods(self, namespace: str | None, *, label_selector: str | None = None,
                  field_selector: str | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if field_selector:
            kwargs["field_selector"] = field_selector
        if namespace:
            data = self._json(f"LIST pods -n {namespace}", self.core.list_namespaced_pod, namespace, expect="PodList",
                              **kwargs)
        else:
            data = self._json("LIST pods -A", self.core.list_pod_for_all_namespaces, expect="PodList", **kwargs)
        return list(data.get("items") or [])

    def list_events(self, namespace: str, involved_name: str) -> list[dict[str, Any]]:
        data = self._json(
            f"LIST events for {involved_name}",
            self.core.list_namespaced_event,
            namespace,
            field_selector=f"involvedObject.name={involved_name}",
            expect="EventList",
        )
        return list(data.get("items") or [])

    def read_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self._json(f"GET pod {namespace}/{name}", self.core.read_namespaced_pod, name, namespace, expect="Pod")

    def pod_log(self, namespace: str, name: str, *, container: str | None = None, tail_lines: int = 200,
                previous: bool = False) -> str:
        kwargs: dict[str, Any] = {"tail_lines": tail_lines}
        if container:
            kwargs["container"] = container
        if previous:
            kwargs["previous"] = True
        return self._text(f"GET log {namespace}/{name}", self.core.read_namespaced_pod_log, name, namespace, **kwargs)

    # ---- writes (actions only; `check` never calls these) ------------------------------------

    def create_runtime_class(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("CREATE runtimeclass", self.node_api.create_runtime_class, body)

    def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(f"CREATE pod in {namespace}", self.core.create_namespaced_pod, namespace, body)

    def delete_pod(self, namespace: str, name: str) -> None:
        try:
            self._json(f"DELETE pod {namespace}/{name}", self.core.delete_namespaced_pod, name, namespace,
                       grace_period_seconds=0)
        except KubeError as exc:
            if not exc.is_not_found:
                raise


def _retry_after(exc: BaseException) -> float | None:
    """The seconds of a 429's Retry-After header (an integer), else None."""
    headers = getattr(exc, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(int(str(value).strip())) if value is not None else None
    except ValueError:
        return None


def _read_body(response: Any, what: str) -> bytes:
    """Every byte of the answer, in chunks joined once (linear), refusing past MAX_ANSWER_BYTES; a body cut
    short (the connection closed before Content-Length) is `truncated`, never what arrived of it."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.stream(READ_CHUNK):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise KubeError("toolarge", f"{what}: the answer is larger than {MAX_ANSWER_BYTES // (1024 * 1024)} MB: "
                                            f"not read ({COULD_NOT_CHECK})")
            chunks.append(chunk)
    except KubeError:
        raise
    except Exception as exc:  # noqa: BLE001 - urllib3's ProtocolError, IncompleteRead, ReadTimeoutError …
        lowered = f"{type(exc).__name__}: {exc}".lower()
        if "timed out" in lowered or "timeout" in lowered:
            raise KubeError("timeout", f"{what}: Kubernetes API timed out") from None
        raise KubeError("truncated", f"{what}: the answer was cut short ({type(exc).__name__}): "
                                     f"{COULD_NOT_CHECK}") from None
    finally:
        release = getattr(response, "release_conn", None)
        if release is not None:
            release()
    return b"".join(chunks)


