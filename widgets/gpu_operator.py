"""What the GPU pane shows on the gpu-operator path (Talos ≥ 1.13): the operator's release, its
ClusterPolicy's state and its pods on this node, in place of the device plugin chart's DaemonSet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text

from checks.sanitize import safe

if TYPE_CHECKING:
    from checks.findings import PodFinding
    from checks.model import Report
    from checks.profile import Profile

OK, BAD, DIM, UNKNOWN = "green", "bold red", "dim", "cyan"


def _fact(report: Report, name: str) -> Any:
    return report.facts.get(name)


def operator_line(report: Report, profile: Profile) -> Text:
    """`GPU Operator gpu-operator-v26.3.1 (gpu-operator) deployed · ClusterPolicy cluster-policy ready`."""
    spec = profile.gpu_operator
    helm, policy = _fact(report, "helm_releases"), _fact(report, "cluster_policy")
    parts: list[tuple[str, str] | str] = [("GPU Operator ", "bold")]
    if helm is not None and helm.ok:
        release = next((r for r in helm.value if r.name == spec.release and r.namespace == spec.namespace), None)
        if release is None:
            parts.append((f"✘ not installed (no release {safe(spec.release)} in {safe(spec.namespace)})", BAD))
        else:
            parts += [(safe(release.chart), "bold"), (f" ({safe(release.namespace)}) ", DIM),
                      (safe(release.status), OK if release.status == "deployed" else BAD)]
        from checks.paths.gpu_operator.judges import leftover_releases  # the stage's rule, not a copy

        for release in leftover_releases(helm, profile):
            parts += ["\n", (f"✘ leftover of the device-plugin path: release {safe(release.name)} "
                             f"({safe(release.namespace)})", BAD)]
    else:
        parts.append((f"? unknown: {safe(helm.error if helm is not None and helm.error else 'not gathered')}", UNKNOWN))
    parts += ["\n", ("ClusterPolicy cluster-policy ", DIM)]
    if policy is not None and policy.ok:
        state = str((policy.value.get("status") or {}).get("state") or "(no state)")
        parts.append((safe(state), OK if state == "ready" else BAD))
    elif policy is not None and policy.missing:
        parts.append(("not found", BAD))
    else:
        parts.append((f"? unknown: {safe(policy.error if policy is not None and policy.error else 'not gathered')}",
                      UNKNOWN))
    return Text.assemble(*parts)


def operator_pods(report: Report) -> tuple[PodFinding, ...]:
    """The operator's device-plugin and validator pods on this node, in the states the stage judged."""
    from checks import findings
    from checks.paths.gpu_operator.judges import operator_pods_finding

    judged = findings.finding(report, findings.OperatorPodsFinding)
    if judged is None:
        fact = _fact(report, "operator_pods")
        judged = operator_pods_finding(fact) if fact is not None else None
    return judged.pods if judged is not None else ()
