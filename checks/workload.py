"""The GPU test pod (stage `gpu-workload`): create it, follow it, read nvidia-smi, always delete it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from checks import parsers
from checks.adapters.kube import KubeError, KubeReader
from checks.model import Status
from checks.signatures import match_signatures

if TYPE_CHECKING:
    from checks.model import ProbeResult
    from checks.profile import Profile


class PodContext(Protocol):
    """What the test pod needs of a sweep's context (`checks.probes.ProbeContext` is one): named here, so that
    the probes, which run the pod, and the pod do not import each other."""

    profile: Profile

    def remaining(self) -> float: ...

    async def kube_node(self) -> ProbeResult: ...

    async def reader(self) -> KubeReader: ...

TEST_POD_LABEL = "app.kubernetes.io/managed-by"
TEST_POD_LABEL_VALUE = "talos-gpu"
TEST_POD_NAMESPACE = "default"
POLL_S = 0.4


@dataclass
class WorkloadOutcome:
    status: Status
    summary: str
    evidence: list[str] = field(default_factory=list)
    remediation: str | None = None  # a command that runs as pasted, or None
    pod_name: str = ""
    smi: Any = None  # parsers.NvidiaSmi when the pod printed one
    log: str = ""
    advice: str | None = None  # the prose around it (a known signature's explanation)


def test_pod_manifest(name: str, *, image: str, runtime_class: str, node_name: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "runtimeClassName": runtime_class,
        "tolerations": [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        ],
        "containers": [{
            "name": "nvidia-smi",
            "image": image,
            "command": ["nvidia-smi"],
            "resources": {"limits": {"nvidia.com/gpu": "1"}},  # a quantity: the client validates it as a string
        }],
    }
    if node_name:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node_name}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": TEST_POD_NAMESPACE,
            "labels": {TEST_POD_LABEL: TEST_POD_LABEL_VALUE, "app.kubernetes.io/name": "talos-gpu-test"},
        },
        "spec": spec,
    }


def new_test_pod_name() -> str:
    return f"talos-gpu-test-{secrets.token_hex(3)}"


def _describe_pending(events: list[dict[str, Any]]) -> str | None:
    for event in reversed(events):
        if event.get("type") == "Warning" or event.get("reason") in ("FailedScheduling", "FailedCreatePodSandBox"):
            return f"{event.get('reason')}: {event.get('message')}"
    return None


async def run_test_pod(
    ctx: PodContext,
    *,
    on_line: Callable[[str], None] | None,
    timeout: float | None = None,
) -> WorkloadOutcome:
    """Run the test pod to completion (or failure) and delete it in every outcome, cancel included."""
    profile = ctx.profile
    node = await ctx.kube_node()
    node_name = node.value["metadata"]["name"] if node.ok else None
    name = new_test_pod_name()
    body = test_pod_manifest(name, image=profile.test_image, runtime_class=profile.runtime_class, node_name=node_name)
    say = on_line or (lambda _line: None)
    limit = min(timeout or 120.0, ctx.remaining())
    deadline = time.monotonic() + limit
    reader = await ctx.reader()

    def call(fn: Callable[[KubeReader], Any]) -> Any:
        return anyio.to_thread.run_sync(fn, reader, abandon_on_cancel=True)

    say(f"creating pod {TEST_POD_NAMESPACE}/{name} (runtimeClassName {profile.runtime_class}, "
        f"nvidia.com/gpu: 1, image {profile.test_image})")
    try:
        await call(lambda r: r.create_pod(TEST_POD_NAMESPACE, body))
    except KubeError as exc:
        matches = match_signatures(exc.message)
        advice = matches[0].signature.remediation if matches else None
        return WorkloadOutcome(Status.FAIL, f"the test pod was rejected: {exc.message}",
                               [f"kubectl run {name}: {exc.message}"], None, name, advice=advice)
    try:
        return await _follow(call, name, deadline, say)
    finally:
        with anyio.CancelScope(shield=True):
            say(f"deleting pod {TEST_POD_NAMESPACE}/{name}")
            try:
                with anyio.move_on_after(10):
                    await call(lambda r: r.delete_pod(TEST_POD_NAMESPACE, name))
            except KubeError as exc:
                say(f"could not delete pod {name}: {exc.message}")


async def _follow(call: Callable[..., Any], name: str, deadline: float, say: Callable[[str], None]) -> WorkloadOutcome:
    last_phase = ""
    pending_reason: str | None = None
    while True:
        pod = await call(lambda r: r.read_pod(TEST_POD_NAMESPACE, name))
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        if phase != last_phase:
            say(f"pod {name}: {phase}")
            last_phase = phase
        if phase in ("Succeeded", "Failed"):
            break
        if phase == "Pending":
            events = await call(lambda r: r.list_events(TEST_POD_NAMESPACE, name))
            reason = _describe_pending(events)
            if reason and reason != pending_reason:
                say(f"pod {name}: {reason}")
                pending_reason = reason
        if time.monotonic() >= deadline:
            why = pending_reason or f"still {phase}"
            matches = match_signatures(why)
            advice = matches[0].signature.remediation if matches else \
                "the pod's events say why it did not finish (the test pod is deleted afterwards)"
            return WorkloadOutcome(Status.FAIL, f"the test pod did not finish: {why}",
                                   [f"pod {name}: {phase}", *([f"event {pending_reason}"] if pending_reason else [])],
                                   None, name, advice=advice)
        await anyio.sleep(POLL_S)
    log = await call(lambda r: r.pod_log(TEST_POD_NAMESPACE, name, tail_lines=500))
    for line in log.splitlines():
        say(line)
    smi = parsers.parse_nvidia_smi(log)
    evidence = [f"pod {name}: {phase}"]
    if phase == "Succeeded" and not parsers.is_error(smi):
        gpus = smi.gpus
        models = sorted({g.name for g in gpus})
        evidence.append(f"nvidia-smi: {len(gpus)} GPU(s) {', '.join(models)}, driver {smi.driver_version}, "
                        f"CUDA {smi.cuda_version}")
        return WorkloadOutcome(Status.PASS, f"nvidia-smi in a pod sees {len(gpus)} × {', '.join(models)} "
                               f"(driver {smi.driver_version}, CUDA {smi.cuda_version})", evidence, None, name, smi, log)
    matches = match_signatures(log)
    detail = matches[0].quote if matches else (log.strip().splitlines()[-1] if log.strip() else "no output")
    evidence.append(f"pod log: {detail[:200]}")
    advice = matches[0].signature.remediation if matches else "the pod's log above says why (the pod is deleted)"
    return WorkloadOutcome(Status.FAIL, f"the test pod {phase.lower()}: \"{detail[:160]}\"", evidence, None, name,
                           None, log, advice)
