"""Which cluster to talk to: the talosconfig and kubeconfig in use, and the external programs.

Everything here fails with a one-line `UsageError` (exit 2) that names the file, key or option
at fault, and never carries a secret from the config files. The `kubernetes` package is imported
only inside `load_kube_api_client` (it costs ~0.5 s at start-up).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checks.errors import UsageError, one_line, read_user_file, user_file_path
from checks.redact import redact

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from checks.redact import Redactor

DEFAULT_TALOSCONFIG = "~/.talos/config"
DEFAULT_KUBECONFIG = "~/.kube/config"
KUBE_CONNECT_RETRIES = 1
_QUOTE_LIMIT = 64


@dataclass(frozen=True)
class TalosTarget:
    """The Talos node to check and the talosconfig context that reaches it (no credentials kept)."""

    talosconfig: Path
    context: str | None
    node: str
    endpoints: tuple[str, ...] = ()


@dataclass(frozen=True)
class KubeTarget:
    """The kubeconfig file and context to use; `server` is for display only."""

    kubeconfig: Path
    context: str | None
    server: str | None = None


# --------------------------------------------------------------------------- helpers


def _quote(value: str) -> str:
    """`repr` of the value, cut to a readable length (control characters come out escaped)."""
    shown = value if len(value) <= _QUOTE_LIMIT else value[: _QUOTE_LIMIT - 1] + "…"
    return repr(shown)


def _expand_home(path_text: str, env: Mapping[str, str]) -> Path:
    if path_text == "~" or path_text.startswith("~/"):
        home = env.get("HOME") or str(Path.home())
        return Path(home + path_text[1:])
    return Path(path_text).expanduser()


def _read_yaml_config(path: Path, label: str) -> Mapping[str, Any]:
    """Parse a config file into a mapping, or raise a UsageError that quotes none of its content."""
    import yaml  # here, not at the top: `validate_node_address` and friends run before the TUI's first frame

    from checks import yamlsafe

    text = read_user_file(path, label)
    try:
        data = yamlsafe.safe_load(text)
    except yaml.YAMLError as exc:
        # PyYAML's message quotes the offending line, which may hold a key: give its number only.
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"{label}: is not valid YAML{where}") from None
    if data is None:
        raise UsageError(f"{label}: is empty")
    if not isinstance(data, Mapping):
        raise UsageError(f"{label}: is not a config file (expected a mapping at the top level)")
    return data


def check_config_file(path: Path, label: str) -> None:
    """The cheap half of reading a config file, without parsing it (no YAML import): it exists, is a
    readable UTF-8 file and is not blank. Raises the same one-line UsageError as the full read would."""
    if not read_user_file(path, label).strip():
        raise UsageError(f"{label}: is empty")


def _names(items: object) -> str:
    names = sorted(str(n) for n in items) if items else []
    return ", ".join(names) if names else "none"


def _string_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int) and str(v).strip()]
    return []


# --------------------------------------------------------------------------- Talos


def validate_node_address(value: str) -> str:
    """The address if it is an IPv4/IPv6 address or an RFC 1123 hostname; UsageError otherwise.

    Rejecting everything else (a leading '-', spaces, ';', '/', shell metacharacters) keeps a
    value such as `--help` from ever being read as an option by talosctl.
    """
    if not isinstance(value, str) or not _is_node_address(value):
        shown = _quote(value) if isinstance(value, str) else repr(value)
        raise UsageError(f"invalid node address {shown}: expected an IP address or a DNS hostname")
    return value


_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _is_node_address(value: str) -> bool:
    if not value or value.startswith("-") or value != value.strip():
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    hostname = value[:-1] if value.endswith(".") else value
    if not hostname or len(hostname) > 253:
        return False
    labels = hostname.split(".")
    if not all(_HOST_LABEL.match(label) for label in labels):
        return False
    # An all-numeric last label is a mistyped IP address (999.1.1.1, 10.0.0), not a hostname.
    return not labels[-1].isdigit()


def talosconfig_path(talosconfig: str | None, env: Mapping[str, str] = os.environ) -> Path:
    """The talosconfig file in use: the option, else $TALOSCONFIG, else ~/.talos/config."""
    return _expand_home(talosconfig or env.get("TALOSCONFIG") or DEFAULT_TALOSCONFIG, env)


def resolve_talos(
    talosconfig: str | None,
    context: str | None,
    node: str | None,
    env: Mapping[str, str] = os.environ,
) -> TalosTarget:
    """The talosconfig file, context and node to use, from the options, else the environment and file.

    Only the context's name, nodes and endpoints are kept; `key`, `crt`, `ca` and any auth
    password stay in the file.
    """
    path = talosconfig_path(talosconfig, env)
    label = f"talosconfig {path}"
    config = _read_yaml_config(path, label)

    contexts = config.get("contexts")
    if not isinstance(contexts, Mapping) or not contexts:
        raise UsageError(f"{label}: no contexts defined")
    name = context or config.get("context")
    if not name:
        raise UsageError(
            f"{label}: no current context set: pass --talos-context (available: {_names(contexts)})"
        )
    name = str(name)
    if name not in contexts:
        raise UsageError(f"{label}: context {_quote(name)} not found (available: {_names(contexts)})")
    entry = contexts[name]
    if not isinstance(entry, Mapping):
        raise UsageError(f"{label}: context {_quote(name)} is not a mapping")

    if node is None:
        nodes = _string_list(entry.get("nodes"))
        if not nodes:
            raise UsageError(
                f"no node given: pass -n/--node or set nodes in the talosconfig context {_quote(name)}"
            )
        node = nodes[0]
    node = validate_node_address(node)
    endpoints = tuple(_string_list(entry.get("endpoints")))
    # talosctl reads the file itself: a pipe's content (read once, above) is handed over as a private copy
    return TalosTarget(talosconfig=user_file_path(path), context=name, node=node, endpoints=endpoints)


def talosctl_global_args(target: TalosTarget) -> list[str]:
    """The flags every talosctl call carries: explicit config, context and node."""
    args = ["--talosconfig", str(target.talosconfig)]
    if target.context:
        args += ["--context", target.context]
    args += ["--nodes", target.node]
    return args


# --------------------------------------------------------------------------- Kubernetes


def _kubeconfig_source(kubeconfig: str | None, env: Mapping[str, str]) -> str:
    if kubeconfig:
        return kubeconfig
    for entry in (env.get("KUBECONFIG") or "").split(os.pathsep):
        if entry.strip():
            return entry.strip()
    return DEFAULT_KUBECONFIG


def kubeconfig_path(kubeconfig: str | None, env: Mapping[str, str] = os.environ) -> Path:
    """The kubeconfig file in use: the option, else the first entry of $KUBECONFIG, else ~/.kube/config."""
    return _expand_home(_kubeconfig_source(kubeconfig, env), env)


def _named_entries(config: Mapping[str, Any], key: str) -> dict[str, Mapping[str, Any]]:
    entries: dict[str, Mapping[str, Any]] = {}
    items = config.get(key)
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str | int):
            entries.setdefault(str(item["name"]), item)
    return entries


def resolve_kube(
    kubeconfig: str | None,
    context: str | None,
    env: Mapping[str, str] = os.environ,
) -> KubeTarget:
    """The kubeconfig file and context to use; the file must parse and the context must exist."""
    path = kubeconfig_path(kubeconfig, env)
    label = f"kubeconfig {path}"
    config = _read_yaml_config(path, label)

    contexts = _named_entries(config, "contexts")
    if not contexts:
        raise UsageError(f"{label}: no contexts defined")
    name = context or config.get("current-context")
    if not name:
        raise UsageError(f"{label}: no current-context set: pass --context (available: {_names(contexts)})")
    name = str(name)
    if name not in contexts:
        raise UsageError(f"{label}: context {_quote(name)} not found (available: {_names(contexts)})")
    context_body = contexts[name].get("context")
    cluster_name = context_body.get("cluster") if isinstance(context_body, Mapping) else None
    if not cluster_name:
        raise UsageError(f"{label}: context {_quote(name)} names no cluster")
    cluster_entry = _named_entries(config, "clusters").get(str(cluster_name))
    if cluster_entry is None:
        raise UsageError(
            f"{label}: context {_quote(name)} refers to cluster {_quote(str(cluster_name))}, which is not defined"
        )
    cluster = cluster_entry.get("cluster")
    server = cluster.get("server") if isinstance(cluster, Mapping) else None
    return KubeTarget(kubeconfig=user_file_path(path), context=name, server=server if isinstance(server, str) else None)


def load_kube_api_client(target: KubeTarget, *, redactor: Redactor | None, request_timeout: float = 5.0) -> ApiClient:
    """A Kubernetes `ApiClient` for the target that fails fast when the server is unreachable.

    Connection errors are retried at most once, and every request without its own
    `_request_timeout` gets `(request_timeout, request_timeout)` as (connect, read) timeouts.
    Any loader failure becomes a one-line, redacted UsageError (the loader's own messages can
    quote the file).

    `redactor` learns the kubeconfig's secrets as the file is now, before the loader reads it (pass
    `checks.redact.REDACTOR`, as `checks.target.build_target` does; None: nobody learns them, e.g. a
    test's throw-away client). The caller says so: nothing here registers a secret behind its back.
    """
    import yaml

    from checks.adapters.kube_import import kubernetes_client

    kube = kubernetes_client()
    kube_config = kube.config
    if redactor is not None:
        from checks.secrets import collect_secrets

        redactor.add(collect_secrets(kubeconfig=target.kubeconfig, talosconfig=None))
    label = f"kubeconfig {target.kubeconfig}"
    configuration = kube.Configuration()
    configuration.retries = _connect_retries()
    path_text = str(target.kubeconfig)
    loader_errors = _LoaderErrors()
    try:
        with loader_errors:
            api_client = _new_client(kube_config, target, path_text, configuration)
    except FileNotFoundError:
        raise UsageError(f"{label}: not found") from None
    except yaml.YAMLError as exc:  # its message quotes the offending line of the file
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"{label}: is not valid YAML{where}") from None
    except Exception as exc:  # noqa: BLE001 - the loader raises many kinds; all mean "bad kubeconfig"
        context = f" context {_quote(target.context)}" if target.context else ""
        raise UsageError(f"{label}:{context} cannot be loaded: {one_line(exc)}") from None
    if loader_errors.messages:
        # The loader logs (instead of raising) when the exec credential plugin fails, then carries on
        # without credentials: every request would be a bare 401. Name the real cause instead.
        raise UsageError(f"{label}: the credential plugin failed: {loader_errors.messages[0]}")
    _apply_default_timeout(api_client, request_timeout)
    return api_client


def _connect_retries() -> Any:
    """Retry a failed connection once; never sleep on a 429/503's Retry-After inside urllib3 (it would
    sleep the whole value, past the sweep's time limit): the reader decides (checks/adapters/kube.py)."""
    from urllib3.util.retry import Retry

    return Retry(total=KUBE_CONNECT_RETRIES, status=0, respect_retry_after_header=False, raise_on_status=False)


class _LoaderErrors(logging.Handler):
    """Collects the ERROR records the kubernetes config loader logs in this thread, so that they
    become the reason of a UsageError (one redacted line) instead of raw lines on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread or record.levelno < logging.ERROR:
            return
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad record must not break loading
            text = str(record.msg)
        self.messages.append(" ".join(redact(text).split())[:300])

    def __enter__(self) -> _LoaderErrors:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        logging.getLogger().removeHandler(self)


def _new_client(kube_config: Any, target: KubeTarget, path_text: str, configuration: Any) -> ApiClient:
    options = {"context": target.context, "persist_config": False, "client_configuration": configuration}
    if os.pathsep in path_text:
        # The loader splits a path on ':' like $KUBECONFIG; hand it the open file instead.
        with open(target.kubeconfig, encoding="utf-8") as stream:
            return kube_config.new_client_from_config(config_file=stream, **options)
    return kube_config.new_client_from_config(config_file=path_text, **options)


def _apply_default_timeout(api_client: ApiClient, request_timeout: float) -> None:
    """Give every request a timeout unless the caller passed `_request_timeout` itself.

    The generated API methods pass `_request_timeout=None` by default, which urllib3 reads as
    "wait forever"; the client has no setting for a default, so wrap the REST layer's `request`.
    """
    rest_client = api_client.rest_client
    send = rest_client.request
    default = (request_timeout, request_timeout)

    def request_with_default_timeout(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return send(*args, _request_timeout=_request_timeout or default, **kwargs)

    rest_client.request = request_with_default_timeout  # type: ignore[method-assign]
    api_client.default_request_timeout = request_timeout  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- external programs


def _find_program(variable: str, name: str, env: Mapping[str, str]) -> str | None:
    search_path = env.get("PATH", os.defpath)
    configured = env.get(variable)
    if configured:
        if os.sep in configured:
            candidate = _expand_home(configured, env)
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
            raise UsageError(f"${variable}={configured!r}: not an executable file")
        found = shutil.which(configured, path=search_path)
        if found is None:
            raise UsageError(f"${variable}={configured!r}: not found on PATH")
        return found
    return shutil.which(name, path=search_path)


def talosctl_path(env: Mapping[str, str] = os.environ) -> str:
    """`$TALOSCTL`, else `talosctl` on PATH; UsageError when neither is there."""
    found = _find_program("TALOSCTL", "talosctl", env)
    if found is None:
        raise UsageError("talosctl not found: install it or set $TALOSCTL")
    return found


def find_helm(env: Mapping[str, str] = os.environ) -> str | None:
    """`$HELM`, else `helm` on PATH, else None (only the device-plugin action needs helm)."""
    try:
        return _find_program("HELM", "helm", env)
    except UsageError:
        return None


def helm_path(env: Mapping[str, str] = os.environ) -> str:
    """`$HELM`, else `helm` on PATH; UsageError (naming a bad `$HELM`) when neither is there."""
    found = _find_program("HELM", "helm", env)
    if found is None:
        raise UsageError("helm not found: install it or set $HELM")
    return found
