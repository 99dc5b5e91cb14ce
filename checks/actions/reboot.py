"""Follow a Talos node through a reboot: down, booting, back (`talosctl get machinestatus` + API availability)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from checks import parsers
from checks.adapters.kube import KubeError
from checks.context import make_context
from checks.target import Target

POLL_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 5.0

PHASE_DOWN = "node rebooting"
PHASE_UPGRADING = "node upgrading"
PHASE_BOOTING = "node booting"


@dataclass(frozen=True)
class NodeSnapshot:
    api_up: bool
    stage: str  # machinestatus stage, "" when the API is down
    ready: bool
    error: str = ""

    @property
    def back(self) -> bool:
        return self.api_up and self.stage == "running" and self.ready

    @property
    def phase(self) -> str:
        if not self.api_up:
            return PHASE_DOWN
        if self.stage == "upgrading":
            return PHASE_UPGRADING
        if self.stage in ("rebooting", "shutting down"):
            return PHASE_DOWN
        return PHASE_BOOTING


@dataclass(frozen=True)
class RebootOutcome:
    ok: bool
    reason: str
    version: str = ""
    went_down: bool = False


async def snapshot(target: Target) -> NodeSnapshot:
    result = await target.talosctl().run("get", "machinestatus", "-o", "yaml", timeout=PROBE_TIMEOUT_S)
    if not result.ok:
        return NodeSnapshot(False, "", False, result.failure_reason())
    status = parsers.parse_machine_status(result.stdout)
    if parsers.is_error(status):
        return NodeSnapshot(True, "unknown", False, str(status))
    return NodeSnapshot(True, str(status.stage), bool(status.ready))


async def running_version(target: Target) -> str:
    result = await target.talosctl().run("version", timeout=PROBE_TIMEOUT_S)
    if not result.ok:
        return ""
    version = parsers.parse_talos_version(result.stdout)
    if parsers.is_error(version):
        return ""
    return str(getattr(version, "server_tag", "") or "")


async def follow_reboot(target: Target, on_phase: Callable[[str], None], *, timeout: float,
                        wait_for_down: float = 0.0, kube_node: str = "",
                        poll_interval: float = POLL_INTERVAL_S) -> RebootOutcome:
    """Poll until the node is back (stage running, ready), emitting each phase change once.

    `wait_for_down` > 0: first wait up to that long for the node to leave `running` (a reboot that
    starts a moment after the command returned); if it never does, the node did not reboot.
    Then, with `kube_node` (or the node found by address), wait for the Kubernetes Node to be Ready.
    """
    deadline = time.monotonic() + timeout
    last_phase = ""
    went_down = False

    def say(phase: str) -> None:
        nonlocal last_phase
        if phase != last_phase:
            last_phase = phase
            on_phase(phase)

    if wait_for_down > 0:
        down_deadline = min(deadline, time.monotonic() + wait_for_down)
        while True:
            snap = await snapshot(target)
            if not snap.back:
                went_down = True
                say(snap.phase)
                break
            if time.monotonic() >= down_deadline:
                say(f"the node did not go down within {wait_for_down:g}s: no reboot")
                return RebootOutcome(True, "the node did not reboot", await running_version(target), False)
            await anyio.sleep(poll_interval)

    last_error = ""
    while True:
        snap = await snapshot(target)
        if snap.back:
            break
        went_down = True
        last_error = snap.error or f"stage {snap.stage}, ready {str(snap.ready).lower()}"
        say(snap.phase)
        if time.monotonic() >= deadline:
            return RebootOutcome(False, f"the node was not back within {timeout:g}s (last seen: {last_error})",
                                 "", went_down)
        await anyio.sleep(poll_interval)
    version = await running_version(target)
    say(f"node back, Talos {version or '(version unknown)'}")

    ready, why = await _wait_kube_ready(target, kube_node, deadline, poll_interval, say)
    if not ready:
        return RebootOutcome(False, f"the node is back but its Kubernetes Node is not Ready within {timeout:g}s ({why})",
                             version, went_down)
    return RebootOutcome(True, f"node back, Talos {version or '(version unknown)'}", version, went_down)


async def _wait_kube_ready(target: Target, kube_node: str, deadline: float, poll_interval: float,
                           say: Callable[[str], None]) -> tuple[bool, str]:
    ctx = make_context(target, timeout=max(1.0, deadline - time.monotonic()))
    why = "not checked"
    announced = False
    while True:
        try:
            node = await ctx.call_kube(lambda reader: reader.read_node(kube_node) if kube_node
                                  else reader.find_node(target.talos.node))
        except KubeError as exc:
            node, why = None, exc.message
        if node is not None:
            name = node["metadata"]["name"]
            conditions = (node.get("status") or {}).get("conditions") or []
            ready = next((c for c in conditions if c.get("type") == "Ready"), {})
            if ready.get("status") == "True":
                say(f"Kubernetes node {name} Ready")
                return True, ""
            why = f"Node {name} Ready={ready.get('status', 'Unknown')}"
            if not announced:
                say(f"waiting for Kubernetes node {name} to be Ready")
                announced = True
        elif why == "not checked":
            why = f"no Kubernetes Node has address {target.talos.node}"
        if time.monotonic() >= deadline:
            return False, why
        await anyio.sleep(poll_interval)
