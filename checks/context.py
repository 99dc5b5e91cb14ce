"""A sweep's `ProbeContext` for a `Target`: made in the engine, and in the Kubernetes reader's child process
(`checks.kube_process`), which the engine starts; apart from both so that neither imports the other."""

from __future__ import annotations

import time

from checks.node_cache import PluginNames
from checks.prefetch import SweepReads
from checks.probes import ProbeContext
from checks.target import Target


def make_context(target: Target, *, timeout: float, pod_test: bool = False, remembered_node: str | None = None,
                 remembered_plugin: PluginNames | None = None, reads: SweepReads | None = None) -> ProbeContext:
    """With `reads`, the context's talosctl and helm record what they run and take the answers started
    early (checks/prefetch.py)."""
    talosctl, helm = target.talosctl(), target.helm()
    talosctl.reads = reads
    if helm is not None:
        helm.reads = reads
    return ProbeContext(
        talos=target.talos,
        kube=target.kube,
        profile=target.profile,
        talosctl=talosctl,
        helm=helm,
        deadline=time.monotonic() + timeout,
        pod_test=pod_test,
        kube_request_timeout=min(5.0, max(1.0, timeout / 4)),
        remembered_node=remembered_node,
        remembered_plugin=remembered_plugin,
    )
