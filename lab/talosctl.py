"""The lab's ``talosctl``: the subset of the real CLI that talos-gpu uses, against the simulated node.

Run as ``python -m lab.talosctl ...`` (``lab/bin/talosctl`` and the wrappers ``lab/runtime.py`` writes
do exactly that). The state directory is the directory of the talosconfig (``--talosconfig``, else
``$TALOSCONFIG``, else ``~/.talos/config``). Output formats follow the real tool (see the samples in
``tests/fixtures/samples/talos``): tables aligned like Go's tabwriter with 3-space gaps, ``-o yaml``
documents that start with ``node:``, ``-o json`` as a stream of indented objects with sorted keys,
``health`` and ``patch`` reporting on stderr. Secrets are never printed: ``get machineconfig`` is
refused.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import faults as lab_faults
from lab import jsonpatch, releases, schematics
from lab import node as lab_node
from lab import state as lab_state
from lab.machineconfig import (
    CommandError,
    config_document,
    config_from_document,
    display_document,
    strategic_merge,
)
from lab.talos_resources import (
    NodeContext,
    node_context,
    render_resources,
    resolve_resource_type,
    tabwrite,
)

CLIENT_VERSION = "v1.11.5"  # the default release; a lab started on another one records its own (client_version)
CLIENT_SHA = "6e0ff4a2"  # lab placeholder, not the real build's commit
GO_VERSION = "go1.24.9"
TALOS_API_PORT = 50000
DEFAULT_HEALTH_TIMEOUT_S = 20 * 60.0
LAB_HEALTH_WAIT_CAP_S = 3.0
HEALTH_POLL_S = 1.0
UPGRADE_POLL_S = 0.1
VALID_PATCH_MODES = ("auto", "no-reboot", "reboot", "staged", "try")


# --- command line ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    name: str
    takes_value: bool
    short: str | None = None


def _flags(*flags: Flag) -> dict[str, Flag]:
    return {flag.name: flag for flag in flags}


GLOBAL_FLAGS = _flags(
    Flag("talosconfig", True),
    Flag("context", True),
    Flag("nodes", True, "n"),
    Flag("endpoints", True, "e"),
    Flag("cluster", True, "c"),
    Flag("help", False, "h"),
)

COMMAND_FLAGS: dict[str, dict[str, Flag]] = {
    "version": _flags(Flag("short", False), Flag("client", False), Flag("insecure", False, "i")),
    "health": _flags(
        Flag("wait-timeout", True),
        Flag("server", False),
        Flag("control-plane-nodes", True),
        Flag("worker-nodes", True),
        Flag("init-node", True),
        Flag("k8s-endpoint", True),
        Flag("run-e2e", False),
    ),
    "get": _flags(Flag("output", True, "o"), Flag("insecure", False, "i"), Flag("namespace", True)),
    "read": _flags(),
    "ls": _flags(Flag("long", False, "l"), Flag("recurse", False, "r"), Flag("humanize", False, "H"),
                 Flag("depth", True, "d"), Flag("type", True, "t")),
    "list": _flags(Flag("long", False, "l"), Flag("recurse", False, "r"), Flag("humanize", False, "H"),
                   Flag("depth", True, "d"), Flag("type", True, "t")),
    "services": _flags(),
    "service": _flags(),
    "logs": _flags(Flag("follow", False, "f"), Flag("tail", True), Flag("kubernetes", False, "k")),
    "dmesg": _flags(Flag("follow", False, "f"), Flag("tail", False)),
    "patch": _flags(
        Flag("patch", True, "p"),
        Flag("patch-file", True),
        Flag("dry-run", False),
        Flag("mode", True, "m"),
        Flag("timeout", True),
    ),
    "upgrade": _flags(
        Flag("image", True, "i"),
        Flag("preserve", False, "p"),
        Flag("stage", False, "s"),
        Flag("force", False, "f"),
        Flag("wait", False),
        Flag("debug", False),
        Flag("timeout", True),
        Flag("reboot-mode", True, "m"),
        Flag("insecure", False),
    ),
    "reboot": _flags(Flag("wait", False), Flag("debug", False), Flag("timeout", True), Flag("mode", True, "m")),
}
COMMAND_ALIASES = {"machineconfig": "machineconfig"}


@dataclass
class Invocation:
    words: list[str] = field(default_factory=list)  # the command and its positional arguments
    values: dict[str, list[str]] = field(default_factory=dict)

    @property
    def command(self) -> str:
        return self.words[0] if self.words else ""

    def value(self, name: str, default: str | None = None) -> str | None:
        found = self.values.get(name)
        return found[-1] if found else default

    def all(self, name: str) -> list[str]:
        return list(self.values.get(name, []))

    def flag(self, name: str, default: bool = False) -> bool:
        found = self.values.get(name)
        if not found:
            return default
        return found[-1].lower() not in ("false", "0", "f")


def _known_flags(command: str) -> dict[str, Flag]:
    known = dict(GLOBAL_FLAGS)
    known.update(COMMAND_FLAGS.get(command, {}))
    return known


def parse_args(argv: list[str]) -> Invocation:
    """Cobra-like parsing: flags anywhere, ``--x=v``, ``--x v``, ``-xv``, ``-x v``, ``--`` ends flags."""
    invocation = Invocation()
    index = 0
    only_positionals = False
    while index < len(argv):
        token = argv[index]
        index += 1
        if only_positionals or token == "-" or not token.startswith("-"):
            invocation.words.append(token)
            continue
        if token == "--":
            only_positionals = True
            continue
        known = _known_flags(invocation.command)
        if token.startswith("--"):
            name, has_inline, inline = token[2:].partition("=")
            flag = known.get(name)
            if flag is None:
                raise CommandError(f"Error: unknown flag: --{name}")
        else:
            letter = token[1]
            flag = next((candidate for candidate in known.values() if candidate.short == letter), None)
            if flag is None:
                raise CommandError(f"Error: unknown shorthand flag: '{letter}' in {token}")
            rest = token[2:]
            has_inline = "=" if rest else ""
            inline = rest[1:] if rest.startswith("=") else rest
        if flag.takes_value:
            if has_inline:
                value = inline
            elif index < len(argv):
                value = argv[index]
                index += 1
            else:
                raise CommandError(f"Error: flag needs an argument: --{flag.name}")
        else:
            value = inline if has_inline else "true"
        invocation.values.setdefault(flag.name, []).append(value)
    return invocation


USAGE = """\
A CLI for out-of-band management of Kubernetes nodes created by Talos (talos-gpu lab simulation)

Usage:
  talosctl [command]

Available Commands:
  dmesg       Retrieve kernel logs
  get         Get a specific resource or list of resources (use 'talosctl get rd' to see all available resource types).
  health      Check cluster health
  list        Retrieve a directory listing
  logs        Retrieve logs for a service
  patch       Update field(s) of a resource using a JSON patch.
  read        Read a file on the machine
  reboot      Reboot a node
  service     Retrieve the state of a service (or all services), control service state
  upgrade     Upgrade Talos on the target node
  version     Prints the version

Flags:
      --cluster string       Cluster to connect to if a proxy endpoint is used.
      --context string       Context to be used in command
  -e, --endpoints strings    override default endpoints in Talos configuration
  -h, --help                 help for talosctl
  -n, --nodes strings        target the specified nodes
      --talosconfig string   The path to the Talos configuration file.
"""


# --- talosconfig and node resolution ----------------------------------------------------------------


@dataclass
class Session:
    state_dir: Path
    nodes: list[str]
    endpoint: str


def _default_talosconfig() -> Path:
    from_env = os.environ.get("TALOSCONFIG")
    if from_env:
        return Path(from_env)
    return Path.home() / ".talos" / "config"


_UNUSUAL_YAML = ("{", "[", "&", "*", "!", "|", ">", '"', "'", "#", "%", "\t")


def _plain_block_yaml(text: str) -> dict[str, Any] | None:
    """Read a block-style YAML mapping of plain scalars and lists (what a talosconfig is) without
    importing PyYAML; None for anything else, which then goes to PyYAML."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, Any]] = [(-1, root)]
    pending_key: tuple[int, dict[str, Any], str] | None = None
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if any(mark in raw for mark in _UNUSUAL_YAML):
            return None
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        if pending_key is not None:
            key_indent, parent, key = pending_key
            pending_key = None
            if indent > key_indent:
                container: Any = [] if line.startswith("- ") else {}
                parent[key] = container
                stack.append((key_indent, container))
            else:
                parent[key] = None
        while stack and indent <= stack[-1][0] and len(stack) > 1:
            stack.pop()
        container = stack[-1][1]
        if line.startswith("- "):
            if not isinstance(container, list) or ":" in line:
                return None
            container.append(line[2:].strip())
            continue
        if not isinstance(container, dict) or ":" not in line:
            return None
        key, _, value = line.partition(":")
        if value and not value.startswith(" "):
            return None
        if value.strip():
            container[key.strip()] = value.strip()
        else:
            pending_key = (indent, container, key.strip())
    if pending_key is not None:
        pending_key[1][pending_key[2]] = None
    return root


def _load_yaml(text: str) -> Any:
    """PyYAML, imported only when a YAML file is actually read (it costs ~30 ms per call)."""
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from None


def _load_all_yaml(text: str) -> list[Any]:
    import yaml

    try:
        return list(yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))  # noqa: S506
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from None


def _split_addresses(values: list[str]) -> list[str]:
    addresses: list[str] = []
    for value in values:
        addresses.extend(part.strip() for part in value.split(",") if part.strip())
    return addresses


def open_session(invocation: Invocation) -> Session:
    path = Path(invocation.value("talosconfig") or _default_talosconfig()).expanduser()
    try:
        text = path.read_text()
        config = _plain_block_yaml(text)
        if config is None:
            config = _load_yaml(text) or {}
    except FileNotFoundError:
        config = {}
    except (OSError, ValueError) as error:
        raise CommandError(f"error reading config: {error}") from error
    contexts = config.get("contexts") or {}
    context_name = invocation.value("context") or config.get("context")
    if invocation.value("context") and context_name not in contexts:
        raise CommandError(f'error constructing client: context "{context_name}" not found')
    context = contexts.get(context_name) or {}
    endpoints = _split_addresses(invocation.all("endpoints")) or list(context.get("endpoints") or [])
    if not endpoints:
        raise CommandError("error constructing client: failed to determine endpoints")
    nodes = _split_addresses(invocation.all("nodes")) or list(context.get("nodes") or []) or endpoints[:1]
    return Session(state_dir=path.parent.resolve(), nodes=list(dict.fromkeys(nodes)), endpoint=endpoints[0])


def connection_error(address: str, reason: str = "connection refused") -> str:
    return (
        'rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: '
        f'dial tcp {address}:{TALOS_API_PORT}: connect: {reason}"'
    )


def _known_address(state: dict[str, Any], address: str) -> bool:
    talos = state["talos"]
    return address in (talos.get("node"), talos.get("hostname"))


def check_reachable(state: dict[str, Any], session: Session, view: lab_node.NodeView) -> None:
    if not _known_address(state, session.endpoint):
        raise CommandError(connection_error(session.endpoint))
    for address in session.nodes:
        if not _known_address(state, address):
            raise CommandError(connection_error(address, "no route to host"))
    if not view.api_up:
        raise CommandError(connection_error(session.endpoint))


def client_version(state: dict[str, Any] | None) -> str:
    """The lab talosctl's own version: the release the lab was started on (talosctl and node match)."""
    return str((state or {}).get("talosctl_version") or CLIENT_VERSION)


def version_skew_warning(view: lab_node.NodeView, node: str, client: str = CLIENT_VERSION) -> str | None:
    def numbers(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", version)[:3])

    server = view.talos_version
    if numbers(server) < numbers(client):
        return f"WARNING: {node}: server version {server.lstrip('v')} is older than client version {client.lstrip('v')}\n"
    return None


# --- the node as seen by one command --------------------------------------------------------------------


def _read_state(session: Session) -> dict[str, Any]:
    try:
        return lab_state.load(session.state_dir)
    except FileNotFoundError as error:
        raise CommandError(connection_error(session.endpoint)) from error


def _reachable_context(session: Session, out: lab_faults.Output) -> NodeContext:
    state = _read_state(session)
    ctx = node_context(state, time.time())
    check_reachable(state, session, ctx.view)
    warning = version_skew_warning(ctx.view, session.nodes[0], client_version(state))
    if warning:
        out.err(warning)
    return ctx


# --- commands -------------------------------------------------------------------------------------------


def cmd_version(invocation: Invocation, session: Session | None, out: lab_faults.Output) -> int:
    try:
        client = client_version(_read_state(session)) if session is not None else CLIENT_VERSION
    except CommandError:
        client = CLIENT_VERSION
    go_version = releases.get(client).go_version
    if invocation.flag("short"):
        out.out(f"Client:\n\tTalos {client}\n")
    else:
        out.out(
            "Client:\n"
            f"\tTag:         {client}\n"
            f"\tSHA:         {CLIENT_SHA}\n"
            "\tBuilt:       \n"
            f"\tGo version:  {go_version}\n"
            "\tOS/Arch:     linux/amd64\n"
        )
    if invocation.flag("client"):
        return 0
    assert session is not None
    out.out("Server:\n")
    try:
        ctx = _reachable_context(session, out)
    except CommandError as error:
        raise CommandError(f"error getting version: {error.message}") from error
    for node in session.nodes:
        out.out(
            f"\tNODE:        {node}\n"
            f"\tTag:         {ctx.view.talos_version}\n"
            f"\tSHA:         {CLIENT_SHA}\n"
            "\tBuilt:       \n"
            f"\tGo version:  {releases.get(ctx.view.talos_version).go_version}\n"
            "\tOS/Arch:     linux/amd64\n"
            "\tEnabled:     RBAC\n"
        )
    return 0


def cmd_get(invocation: Invocation, session: Session, out: lab_faults.Output) -> int:
    if len(invocation.words) < 2:
        raise CommandError('Error: requires at least 1 arg(s), only received 0')
    resolved = resolve_resource_type(invocation.words[1])
    if resolved is None:
        raise CommandError(f'rpc error: code = NotFound desc = resource "{invocation.words[1]}" is not registered')
    type_name, builder = resolved
    output = invocation.value("output", "table") or "table"
    if builder is None:
        raise CommandError(f'rpc error: code = NotFound desc = resource "{invocation.words[1]}" is not served')
    ctx = _reachable_context(session, out)
    resources = builder(ctx)
    namespace = invocation.value("namespace")
    if namespace:
        resources = [resource for resource in resources if resource.namespace == namespace]
    node_label = "" if invocation.flag("insecure") else session.nodes[0]
    if len(invocation.words) > 2:
        wanted = invocation.words[2]
        resources = [resource for resource in resources if resource.id == wanted]
        if not resources:
            namespace_name = namespace or {"PCIDevices.hardware.talos.dev": "hardware",
                                           "Nodenames.kubernetes.talos.dev": "k8s",
                                           "Members.cluster.talos.dev": "cluster"}.get(type_name, "runtime")
            raise CommandError(
                f"rpc error: code = NotFound desc = resource {type_name}({namespace_name}/{wanted}@undefined) doesn't exist"
            )
    out.out(render_resources(resources, node_label, output, type_name))
    return 0


def node_file(ctx: NodeContext, path: str) -> str | None:
    view = ctx.view
    normalized = "/" + path.strip("/")
    if normalized == "/proc/modules":
        return lab_node.proc_modules(view)
    if normalized == "/proc/driver/nvidia/version":
        return lab_node.nvidia_version_file(view.driver_version) if view.driver_version else None
    if normalized == "/proc/sys/net/core/bpf_jit_harden":
        return view.bpf_jit_harden + "\n"
    if normalized == "/proc/sys/kernel/osrelease":
        return releases.get(ctx.view.talos_version).kernel + "\n"
    if view.boot_error is None:
        written = lab_node.config_file(ctx.talos, normalized)
        if written is not None:
            return written
    return lab_node.rootfs_files(ctx.talos).get(normalized)


def cmd_read(invocation: Invocation, session: Session, out: lab_faults.Output) -> int:
    if len(invocation.words) != 2:
        raise CommandError(f"Error: accepts 1 arg(s), received {len(invocation.words) - 1}")
    path = invocation.words[1]
    ctx = _reachable_context(session, out)
    content = node_file(ctx, path)
    if content is None:
        raise CommandError(f"rpc error: code = Unknown desc = stat {path}: no such file or directory")
    out.out(content)
    return 0


def cmd_dmesg(invocation: Invocation, session: Session, out: lab_faults.Output) -> int:
    ctx = _reachable_context(session, out)
    boot, records = lab_node.kernel_records(ctx.state, ctx.now)
    node = session.nodes[0]
    lines = [
        f"{node}: {record.facility}: {record.level:>7}: [{lab_node.rfc3339_nano(boot + record.offset_s)}]: {record.message}\n"
        for record in records
    ]
    out.out("".join(lines))
    if invocation.flag("follow"):
        out.close()
        lab_faults.hang_forever()
    return 0


# the machine config (its secrets are lab markers: whoever reads it must keep them off every screen) -----


# ls / services / logs ---------------------------------------------------------------------------------


def node_tree(ctx: NodeContext) -> dict[str, tuple[str, int]]:
    """Every file the lab node has (path -> (mode string, size)), directories included."""
    files: dict[str, tuple[str, int]] = {}
    for path, content in lab_node.rootfs_files(ctx.talos).items():
        mode = "-rw-------" if path == lab_node.CRI_CONFIG else "-rw-r--r--"
        files[path] = (mode, len(content.encode()))
    if ctx.view.boot_error is None:
        for entry in (ctx.talos.get("config") or {}).get("files") or []:
            content = lab_node.config_file(ctx.talos, str(entry.get("path", ""))) or ""
            files[str(entry.get("path", ""))] = ("-r--r--r--", len(content.encode()))
    tree: dict[str, tuple[str, int]] = dict(files)
    for path in files:
        parent = path.rsplit("/", 1)[0]
        while parent:
            tree.setdefault(parent, ("drwxr-xr-x", 4096))
            parent = parent.rsplit("/", 1)[0]
    tree.setdefault("/", ("drwxr-xr-x", 4096))
    if ctx.view.cdi:
        tree.setdefault("/run", ("drwxr-xr-x", 4096))
        tree.setdefault("/run/cdi", ("drwxr-xr-x", 4096))  # containerd's cdi_spec_dirs, there even when empty
    return tree


def _ls_time(epoch: float, now: float) -> str:
    stamp = time.gmtime(epoch)
    if now - epoch < 6 * 30 * 86400:
        return time.strftime("%b ", stamp) + f"{stamp.tm_mday:>2} " + time.strftime("%H:%M:%S", stamp)
    return time.strftime("%b ", stamp) + f"{stamp.tm_mday:>2} " + time.strftime("%Y %H:%M", stamp)


def cmd_ls(invocation: Invocation, session: Session, out: lab_faults.Output) -> int:
    if len(invocation.words) > 2:
        raise CommandError(f"Error: accepts at most 1 arg(s), received {len(invocation.words) - 1}")
    root = "/" + (invocation.words[1] if len(invocation.words) > 1 else "/").strip("/")
    ctx = _reachable_context(session, out)
    node = session.nodes[0]
    tree = node_tree(ctx)
    long = invocation.flag("long")
    rows = [["NODE", "MODE", "UID", "GID", "SIZE(B)", "LASTMOD", "NAME"]] if long else [["NODE", "NAME"]]
    if root not in tree:
        out.out(tabwrite(rows))
        out.err(f"{node}: error reading file {root}: lstat {root}: no such file or directory\n")
        return 0
    prefix = root.rstrip("/") + "/"
    if tree[root][0].startswith("d"):
        entries = [(".", root)] + sorted(
            (path[len(prefix):], path) for path in tree
            if path.startswith(prefix) and path != root and "/" not in path[len(prefix):])
    else:
        entries = [(root.rsplit("/", 1)[1], root)]
    modified = float(ctx.talos.get("boot_time") or ctx.now)
    for name, path in entries:
        mode, size = tree[path]
        if long:
            rows.append([node, mode, "0", "0", str(size), _ls_time(modified, ctx.now), name])
        else:
            rows.append([node, name])
    out.out(tabwrite(rows))
    return 0


def _services(ctx: NodeContext) -> list[tuple[str, str, str, str]]:
    """(id, state, health, last event) of the node's services, as machined lists them."""
    view = ctx.view
    if view.boot_stuck:
        return [
            ("apid", "Running", "OK", "Health check successful"),
            ("machined", "Running", "OK", "Health check successful"),
            ("udevd", "Running", "OK", "Health check successful"),
        ]
    services = [
        ("apid", "Running", "OK", "Health check successful"),
        ("containerd", "Running", "OK", "Health check successful"),
        ("cri", "Running", "OK", "Health check successful"),
        ("etcd", "Running", "OK", "Health check successful"),
    ]
    if view.toolkit_ext_driver is not None and view.cdi:
        # Talos >= 1.13: the toolkit extension's one-shot CDI generator (nvidia-ctk cdi generate)
        if view.cdi_spec:
            services.append((lab_node.CDI_SERVICE, "Finished", "?", "Service finished successfully"))
        else:
            services.append((lab_node.CDI_SERVICE, "Failed", "?",
                             "Failed to run service: exit status 1"))
    if view.toolkit_ext_driver is not None:
        services.append((lab_node.TOOLKIT_SERVICE, "Running", "?",
                         f"Started task {lab_node.TOOLKIT_SERVICE} (PID 2877) for container {lab_node.TOOLKIT_SERVICE}"))
    services += [
        ("kubelet", "Running", "OK", "Health check successful"),
        ("machined", "Running", "OK", "Health check successful"),
        ("syslogd", "Running", "OK", "Health check successful"),
        ("trustd", "Running", "OK", "Health check successful"),
        ("udevd", "Running", "OK", "Health check successful"),
    ]
    return services


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def cmd_services(invocation: Invocation, session: Session, out: lab_faults.Output) -> int:
    ctx = _reachable_context(session, out)
    node = session.nodes[0]
    since = _ago(ctx.now - float(ctx.talos.get("boot_time") or ctx.now) - 12)
    services = _services(ctx)
    if len(invocation.words) < 2:
        rows = [["NODE", "SERVICE", "STATE", "HEALTH", "LAST CHANGE", "LAST EVENT"]]
        rows += [[node, sid, state, health, f"{since} ago", event] for sid, state, health, event in services]
        out.out(tabwrite(rows))
        return 0
    wanted = invocation.words[1]
    found = next((service for service in services if service[0] == wanted), None)
    if found is None:
        raise CommandError(f'service "{wanted}" is not registered on any nodes')
    sid, state, health, event = found
    rows = [["NODE", node], ["ID", sid], ["STATE", state], ["HEALTH", health],
            ["EVENTS", f"[{state}]: {event} ({since} ago)"],
            ["", f"[Preparing]: Creating service runner ({since} ago)"]]
    out.out(tabwrite(rows))
    return 0


def cmd_logs(invocation: Invocation, session: Session, out: lab_faults.Output) -> int:
    if len(invocation.words) != 2:
        raise CommandError(f"Error: accepts 1 arg(s), received {len(invocation.words) - 1}")
    ctx = _reachable_context(session, out)
    node = session.nodes[0]
    wanted = invocation.words[1]
    if not any(service[0] == wanted for service in _services(ctx)):
        raise CommandError(f"error getting logs: 1 error occurred:\n\t* {node}: rpc error: code = Unknown desc = "
                           f'service "{wanted}" is not registered\n')
    if wanted == lab_node.CDI_SERVICE:
        if ctx.view.cdi_spec:
            lines = [f'{node}: level=info msg="Generated CDI spec with version 0.5.0"',
                     f'{node}: level=info msg="Wrote CDI spec to {lab_node.CDI_SPEC}"']
        else:
            lines = [f'{node}: level=error msg="failed to generate CDI spec: failed to create device CDI specs: '
                     'failed to initialize NVML: ERROR_LIBRARY_NOT_FOUND"']
    elif wanted == lab_node.TOOLKIT_SERVICE:
        driver = ctx.view.toolkit_ext_driver
        lines = [f"{node}: NVIDIA Persistence Daemon, version {driver}",
                 f"{node}: Started (2877)"]
    else:
        lines = [f"{node}: {wanted} started"]
    out.out("".join(line + "\n" for line in lines))
    return 0


# health ---------------------------------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Go ``time.ParseDuration`` for the units talosctl users write (h, m, s, ms)."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise CommandError(f'Error: invalid argument "{text}" for "--wait-timeout" flag: time: invalid duration "{text}"')
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    for number, unit in parts:
        total += float(number) * scale[unit]
    return total


HealthCheck = Callable[[NodeContext, str], str | None]


def _check_apid(ctx: NodeContext, node: str) -> str | None:
    return None


def _check_etcd(ctx: NodeContext, node: str) -> str | None:
    if ctx.view.phase == "upgrading" or ctx.view.boot_stuck:
        return f"1 error occurred:\n\t* {node}: service is not healthy: etcd\n\n"
    return None


def _check_kubelet(ctx: NodeContext, node: str) -> str | None:
    if ctx.view.phase == "booting":
        return (f'1 error occurred:\n\t* {node}: service "kubelet" not in expected state "Running": '
                "current state [Preparing] Running pre state\n\n")
    if ctx.view.phase == "upgrading":
        return f"1 error occurred:\n\t* {node}: service is not healthy: kubelet\n\n"
    return None


def _check_boot_sequence(ctx: NodeContext, node: str) -> str | None:
    if ctx.view.machine_stage != "running":
        return f"1 error occurred:\n\t* {node}: unexpected machine stage {ctx.view.machine_stage.upper()}\n\n"
    return None


def _check_nodes_ready(ctx: NodeContext, node: str) -> str | None:
    if not ctx.view.kube_ready:
        return f"some nodes are not ready: [{ctx.talos['hostname']}]"
    return None


HEALTH_CHECKS: list[tuple[str, HealthCheck]] = [
    ("etcd to be healthy", _check_etcd),
    ("etcd members to be consistent across nodes", _check_etcd),
    ("etcd members to be control plane nodes", _check_etcd),
    ("apid to be ready", _check_apid),
    ("all nodes memory sizes", _check_apid),
    ("all nodes disk sizes", _check_apid),
    ("no diagnostics", _check_apid),
    ("kubelet to be healthy", _check_kubelet),
    ("all nodes to finish boot sequence", _check_boot_sequence),
    ("all k8s nodes to report", _check_apid),
    ("all k8s nodes to report ready", _check_nodes_ready),
    ("all control plane static pods to be running", _check_apid),
    ("all control plane components to be ready", _check_apid),
    ("coredns to report ready", _check_apid),
    ("all k8s nodes to report schedulable", _check_apid),
]


def cmd_health(invocation: Invocation, session: Session, out: lab_faults.Output) -> int:
    timeout = parse_duration(invocation.value("wait-timeout", "20m") or "20m")
    deadline = time.monotonic() + min(timeout, LAB_HEALTH_WAIT_CAP_S)
    ctx = _reachable_context(session, out)
    out.err(f"discovered nodes: {json.dumps([ctx.talos['node']])}\n")
    for title, check in HEALTH_CHECKS:
        out.err(f"waiting for {title}: ...\n")
        while True:
            state = _read_state(session)
            ctx = node_context(state, time.time())
            problem = connection_error(session.endpoint) if not ctx.view.api_up else check(ctx, session.nodes[0])
            if problem is None:
                out.err(f"waiting for {title}: OK\n")
                break
            out.err(f"waiting for {title}: {problem}\n")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                out.err("context deadline exceeded\n")
                return 1
            time.sleep(min(HEALTH_POLL_S, remaining))
    return 0


# patch ----------------------------------------------------------------------------------------------------


def json_patch(document: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
    """`talosctl patch mc` with a JSON patch (lab/jsonpatch.py), its errors in talosctl's words."""
    try:
        return jsonpatch.apply(document, operations)
    except jsonpatch.PatchError as error:
        raise CommandError({
            "invalid-path": f"invalid JSON patch path {error.path!r}",
            "invalid-operation": "invalid JSON patch operation",
            "unsupported": f"unsupported JSON patch operation {error.op!r}",
        }.get(error.kind, f"error applying JSON patch: missing path {error.path}")) from None


def _load_patches(invocation: Invocation) -> list[Any]:
    sources = []
    for value in invocation.all("patch"):
        if value.startswith("@"):
            sources.append(_read_local(value[1:]))
        else:
            sources.append(value)
    for path in invocation.all("patch-file"):
        sources.append(_read_local(path))
    if not sources:
        raise CommandError("Error: either --patch or --patch-file should be defined")
    documents: list[Any] = []
    for source in sources:
        try:
            documents.extend(document for document in _load_all_yaml(source) if document is not None)
        except ValueError as error:
            raise CommandError(f"error parsing config patch: {error}") from error
    return documents


def _read_local(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as error:
        raise CommandError(f"open {path}: {error.strerror.lower() if error.strerror else error}") from error


def _pending_config(talos: dict[str, Any]) -> dict[str, Any] | None:
    reboot = talos.get("reboot") or {}
    pending = reboot.get("pending") or {}
    return pending.get("config")


def cmd_patch(invocation: Invocation, session: Session, out: lab_faults.Output) -> int:
    if len(invocation.words) < 2 or invocation.words[1].lower() not in ("mc", "machineconfig", "machineconfigs"):
        target = invocation.words[1] if len(invocation.words) > 1 else ""
        raise CommandError(f'rpc error: code = NotFound desc = resource "{target}" is not registered')
    mode = invocation.value("mode", "auto") or "auto"
    if mode not in VALID_PATCH_MODES:
        raise CommandError(
            f'Error: invalid argument "{mode}" for "-m, --mode" flag: possible options are: '
            + ", ".join(VALID_PATCH_MODES)
        )
    dry_run = invocation.flag("dry-run")
    patches = _load_patches(invocation)
    _reachable_context(session, out)
    node = session.nodes[0]
    with lab_state.mutate(session.state_dir) as state:
        now = time.time()
        view = lab_node.node_view(state, now)
        if not view.api_up:
            raise CommandError(connection_error(session.endpoint))
        talos = state["talos"]
        base_config = copy.deepcopy(_pending_config(talos) or talos.get("staged_config") or talos["config"])
        document = config_document(base_config)
        for patch in patches:
            if isinstance(patch, list):
                document = json_patch(document, patch)
            elif isinstance(patch, dict):
                document = strategic_merge(document, patch)
            else:
                raise CommandError("error applying patch: unsupported patch document")
        new_config = config_from_document(document)
        if new_config == base_config:
            out.err("Apply was skipped: no changes detected.\n")
            return 0
        files_changed = new_config["files"] != base_config.get("files", [])
        if mode in ("no-reboot", "try") and files_changed:
            raise CommandError(
                "rpc error: code = InvalidArgument desc = apply configuration: failed to apply configuration "
                "without reboot: changes to machine.files require a reboot"
            )
        if mode == "staged":
            details = "Staged configuration to be applied after the next reboot"
        elif mode == "reboot" or (mode == "auto" and files_changed):
            details = "Applied configuration with a reboot"
        else:
            details = "Applied configuration without a reboot"
        out.err(f"patched MachineConfigs.config.talos.dev/v1alpha1 at the node {node}\n")
        if dry_run:
            import difflib

            diff = "".join(difflib.unified_diff(
                display_document(base_config).splitlines(keepends=True),
                display_document(new_config).splitlines(keepends=True),
                fromfile="a", tofile="b",
            ))
            out.err(f"Dry run summary:\n{details} (skipped in dry-run).\nConfig diff:\n\n{diff or 'No changes.'}\n")
            raise _NoWrite()
        _apply_config(state, new_config, mode, details, now)
        out.err(details + "\n")
    return 0


class _NoWrite(Exception):
    """Leave the state untouched (raised inside ``mutate``)."""


def _apply_config(state: dict[str, Any], new_config: dict[str, Any], mode: str, details: str, now: float) -> None:
    talos = state["talos"]
    reboot = talos.get("reboot")
    if mode == "staged":
        talos["staged_config"] = new_config
        return
    if details.endswith("with a reboot"):
        if reboot and not reboot.get("applied"):
            reboot.setdefault("pending", {})["config"] = new_config
        else:
            talos["reboot"] = {"reason": "config", "started": now, "pending": {"config": new_config}}
        return
    talos["config"] = new_config
    if reboot and reboot.get("pending", {}).get("config") is not None:
        reboot["pending"]["config"] = copy.deepcopy(new_config)


# upgrade / reboot ----------------------------------------------------------------------------------------

FACTORY_IMAGE_RE = re.compile(
    r"^factory\.talos\.dev/(?P<kind>(?:metal-)?installer(?:-secureboot)?)/(?P<id>[0-9a-f]{64}):(?P<tag>v\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)$"
)
VANILLA_IMAGE_RE = re.compile(r"^ghcr\.io/siderolabs/installer:(?P<tag>v\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)$")


def image_not_found(node: str, image: str) -> str:
    return (
        f'rpc error: code = Unknown desc = error validating installer image "{image}": 1 error(s) occurred:\n'
        f'    failed to pull image "{image}": failed to resolve reference "{image}": {image}: not found'
    )


def resolve_image(state: dict[str, Any], image: str) -> dict[str, Any] | None:
    """The pending change an installer image brings, None when the registry has no such image."""
    factory = FACTORY_IMAGE_RE.match(image)
    if factory:
        names = schematics.lookup(state, factory["id"])
        if names is None:
            return None
        records = schematics.extension_records(names, factory["tag"])
        if records is None:
            return None
        return {"schematic": factory["id"], "extensions": records, "version": factory["tag"]}
    vanilla = VANILLA_IMAGE_RE.match(image)
    if vanilla:
        return {"schematic": None, "extensions": [], "version": vanilla["tag"]}
    return None


def _install_signal_handlers() -> None:
    def stop(signum: int, _frame: Any) -> None:
        sys.stdout.flush()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def follow_reboot(session: Session, out: lab_faults.Output, timeout_s: float, debug: bool) -> int:
    """The legacy action tracker: print progress until the node is back and ready."""
    node = session.nodes[0]
    out.out(f"watching nodes: [{node}]\n")
    out.out(f"    * {node}: waiting for actor ID\n")
    import uuid

    out.out(f"    * {node}: actor ID: {uuid.uuid4()}\n")
    deadline = time.monotonic() + timeout_s
    last: str | None = None
    while True:
        state = _read_state(session)
        view = lab_node.node_view(state, time.time())
        message: str | None = None
        if view.phase == "down":
            message = "unavailable, retrying..."
        elif view.phase == "running" and view.machine_ready:
            out.out(f"    * {node}: post check passed\n")
            return 0
        elif debug and view.phase in ("booting", "running"):
            ready = "true" if view.machine_ready else "false"
            hostname = state["talos"]["hostname"]
            unmet = "[]" if view.machine_ready else f'[name:"nodeReady" reason:"node \\"{hostname}\\" is not ready"]'
            message = f"stage: {view.machine_stage.upper()} ready: {ready} unmetCond: {unmet}"
        if message is not None and message != last:
            out.out(f"    * {node}: {message}\n")
            last = message
        if time.monotonic() > deadline:
            raise CommandError(f"1 error occurred:\n\t* {node}: context deadline exceeded\n")
        time.sleep(UPGRADE_POLL_S)


def cmd_upgrade(invocation: Invocation, session: Session, out: lab_faults.Output) -> int:
    _install_signal_handlers()
    node = session.nodes[0]
    image = invocation.value("image") or f"factory.talos.dev/installer/{schematics.VANILLA_ID}:{client_version(_read_state(session))}"
    wait = invocation.flag("wait", default=True)
    timeout_s = parse_duration(invocation.value("timeout", "30m") or "30m")
    _reachable_context(session, out)
    with lab_state.mutate(session.state_dir) as state:
        now = time.time()
        view = lab_node.node_view(state, now)
        if not view.api_up:
            raise CommandError(connection_error(session.endpoint))
        change = resolve_image(state, image)
        if change is None:
            message = image_not_found(node, image)
            if wait:
                out.out(f"watching nodes: [{node}]\n    * {node}: {message}\n")
            raise CommandError(f"1 error occurred:\n\t* {node}: {message}\n")
        staged = state["talos"].get("staged_config")
        if staged:
            change["config"] = copy.deepcopy(staged)
        state["talos"]["reboot"] = {"reason": "upgrade", "started": now, "image": image, "pending": change}
    if not wait:
        started = lab_node.rfc3339(time.time())
        out.out(tabwrite([["NODE", "ACK", "STARTED"], [node, "Upgrade request received", started]]))
        return 0
    return follow_reboot(session, out, timeout_s, invocation.flag("debug"))


def cmd_reboot(invocation: Invocation, session: Session, out: lab_faults.Output) -> int:
    _install_signal_handlers()
    wait = invocation.flag("wait", default=True)
    _reachable_context(session, out)
    with lab_state.mutate(session.state_dir) as state:
        talos = state["talos"]
        pending = {"config": copy.deepcopy(talos["staged_config"])} if talos.get("staged_config") else {}
        talos["reboot"] = {"reason": "config", "started": time.time(), "pending": pending}
    if not wait:
        return 0
    return follow_reboot(session, out, parse_duration(invocation.value("timeout", "30m") or "30m"),
                         invocation.flag("debug"))


COMMANDS: dict[str, Callable[[Invocation, Session, lab_faults.Output], int]] = {
    "get": cmd_get,
    "ls": cmd_ls,
    "list": cmd_ls,
    "services": cmd_services,
    "service": cmd_services,
    "logs": cmd_logs,
    "read": cmd_read,
    "dmesg": cmd_dmesg,
    "health": cmd_health,
    "patch": cmd_patch,
    "upgrade": cmd_upgrade,
    "reboot": cmd_reboot,
}


def _fault_words(invocation: Invocation) -> list[str]:
    # `get R`, `patch mc`, `read PATH`: the second word tells the calls apart, so a fault can target one
    words = list(invocation.words[:2]) if invocation.command in ("get", "patch", "read", "ls", "service", "logs") else invocation.words[:1]
    return words


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    out: lab_faults.Output | None = None
    try:
        invocation = parse_args(arguments)
        if invocation.flag("help") or not invocation.words:
            sys.stdout.write(USAGE)
            return 0
        command = invocation.command
        if command not in COMMANDS and command != "version":
            raise CommandError(f'Error: unknown command "{command}" for "talosctl"\nRun \'talosctl --help\' for usage.')
        session = None if (command == "version" and invocation.flag("client")) else open_session(invocation)
        state_for_knobs: dict[str, Any] = {}
        if session is not None:
            try:
                state_for_knobs = lab_state.load(session.state_dir)
            except (FileNotFoundError, json.JSONDecodeError):
                state_for_knobs = {}
        latency_ms = float((state_for_knobs.get("knobs") or {}).get("talosctl_latency_ms", 0) or 0)
        if latency_ms:
            time.sleep(latency_ms / 1000)
        fault_knobs = state_for_knobs.get("faults") or {}
        words = _fault_words(invocation)
        replaced = lab_faults.apply_entry_faults(fault_knobs, "talosctl", words)
        if replaced is not None:
            return replaced
        out = lab_faults.Output(fault_knobs, "talosctl", words)
        if command == "version":
            return cmd_version(invocation, session, out)
        assert session is not None
        return COMMANDS[command](invocation, session, out)
    except _NoWrite:
        return 0
    except CommandError as error:
        if out is not None:
            out.close()
            out = None
        message = error.message
        sys.stderr.write(message if message.endswith("\n") else message + "\n")
        return error.code
    finally:
        if out is not None:
            out.close()


if __name__ == "__main__":
    sys.exit(main())
