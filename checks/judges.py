"""Stage judges: each turns the facts a stage owns into pass/warn/fail/unknown with evidence.

A judge looks only at its own facts; `checks.diagnosis` then turns failures caused by an earlier
stage into `blocked`. Evidence lines are short facts with their source; every failure names its
remediation, a concrete command or file change.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from checks import findings as found
from checks import remedies
from checks.findings import FABRICMANAGER_BASE, GPU_RESOURCE, KMOD_BASE, NONFREE_KMOD_BASE, TOOLKIT_BASE
from checks.lazy import parsers  # imported on first use (see checks/lazy.py)
from checks.model import Judgement, ProbeResult, Status
from checks.profile import Profile
from checks.remedies import Remedy
from checks.signatures import DMESG, SignatureMatch, match_signatures

__all__ = ["FABRICMANAGER_BASE", "GPU_RESOURCE", "KMOD_BASE", "NONFREE_KMOD_BASE", "TOOLKIT_BASE"]


@dataclass(frozen=True)
class JudgeInput:
    facts: dict[str, ProbeResult]
    profile: Profile
    node: str  # the Talos node address
    pod_test: bool = False

    def fact(self, name: str) -> ProbeResult:
        return self.facts.get(name) or ProbeResult(name, name, error=f"{name} was not gathered")

    @property
    def talos_version(self) -> str:
        if self.profile.talos_version:
            return self.profile.talos_version
        version = self.fact("talos_version")
        if version.ok and version.value.server_tag:
            return str(version.value.server_tag)
        return "v1.11.5"


def judged(status: Status, summary: str, evidence: list[str], remedy: Remedy | None = None) -> Judgement:
    """A judgement whose remediation and advice come from `checks.remedies`."""
    remedy = remedy or remedies.NONE
    return Judgement(status, summary, evidence, remedy.command, remedy.advice)


def carrying(judgement: Judgement, *findings: object) -> Judgement:
    """The judgement with the typed findings it rests on (checks/findings.py), for the panes to render."""
    judgement.findings = tuple(f for f in findings if f is not None)
    return judgement


def unknown(fact: ProbeResult) -> Judgement:
    return Judgement(Status.UNKNOWN, f"could not check: {fact.error}", [f"{fact.source}: {fact.error}"])


_TRAILING_UNKNOWN = re.compile(r"(?::\s*unknown\.?)+\s*$")


def shorten(text: str, limit: int = 140, decisive: str | None = None) -> str:
    """``text`` in at most ``limit`` characters, shortened around the part that names the cause (``decisive``,
    else the tail: Go-style errors wrap their cause last, "a: b: c: <cause>", and containerd adds a last
    ": unknown" that names nothing), never by cutting it off; a decisive part too long to fit keeps its own
    tail."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    if decisive:
        decisive = " ".join(decisive.split())
        at = text.find(decisive)
        if at < 0:
            decisive = None
    if not decisive:
        core = _TRAILING_UNKNOWN.sub("", text)
        tail_at = core.rfind(": ", 0, len(core) - 1)
        tail = core[tail_at + 2:] if tail_at >= 0 else core[-(limit // 2):]
        decisive, at = tail, len(core) - len(tail)
    if len(decisive) > limit - 2:
        inner = _TRAILING_UNKNOWN.sub("", decisive)
        inner_at = inner.rfind(": ", 0, len(inner) - 1)
        if inner_at >= 0 and len(inner) - inner_at - 2 > 0:
            at += inner_at + 2
            decisive = inner[inner_at + 2:]
    keep = min(len(decisive), limit - 2)
    head_room = limit - keep - 1
    if at <= head_room:  # the decisive part fits after the start
        return text[: at + keep] + ("…" if at + keep < len(text) else "")
    head = text[: max(0, head_room - 1)]
    end = at + keep
    return head + "…" + text[at:end] + ("…" if end < len(text) else "")


def quote(text: str, limit: int = 140, decisive: str | None = None) -> str:
    return f'"{shorten(text, limit, decisive)}"'


# ---- cluster ----------------------------------------------------------------------------------


def _timed_out(reason: str) -> bool:
    """No answer in time (ours, talosctl's or the API's), or our own reader gone: the check could not be
    made, so `unknown`."""
    lowered = reason.lower()
    return any(words in lowered for words in ("time limit", "timed out", "deadline exceeded", "reads did not finish",
                                               "could not check"))


def _stuck_boot(inp: JudgeInput, evidence: list[str]) -> Judgement | None:
    """A boot that stopped in a phase (the kernel log says so): fail with those lines and the way out."""
    fact = inp.fact("boot_failure")
    if not fact.ok or fact.value is None:
        return None
    failure = fact.value
    evidence.extend(f"talosctl dmesg: {quote(line, 260)[1:-1]}" for line in failure.lines[-6:])
    refused = refused_files(inp.fact("machine_files"))
    evidence.extend(refused_evidence(refused))
    task = failure.task or "a boot task"
    why = failure.error or "see the kernel log"
    summary = (f"the node's boot stops in {task}: {why}; it waits, reboots and stops there again, so containerd, "
               "etcd and the kubelet never start")
    if refused:
        remedy = remedies.remove_files(inp.node, [index for index, _ in refused])
    else:
        remedy = remedies.edit_config(inp.node)
    return judged(Status.FAIL, summary, evidence, remedy)


_CNI_DOWN = "cni plugin not initialized"


def _health_remedy(inp: JudgeInput, message: str) -> Remedy:
    if _CNI_DOWN in message or "NetworkPluginNotReady" in message:
        node = inp.fact("kube_node")
        name = node.value["metadata"]["name"] if node.ok else inp.node
        return remedies.cni_not_ready(name)
    matches = [m for m in match_signatures(message, sources="health") if m.signature.stage == "cluster"]
    if matches:
        return remedies.for_signature(matches[0].signature, inp.node, inp.profile, inp.talos_version)
    return remedies.health(inp.node)


def judge_cluster(inp: JudgeInput) -> Judgement:
    version, health, machine, node = (inp.fact(n) for n in ("talos_version", "health", "machine_status", "kube_node"))
    evidence: list[str] = []
    if not version.ok:
        reason = version.error or "no answer"
        status = Status.UNKNOWN if _timed_out(reason) else Status.FAIL
        return judged(status, f"the Talos API does not answer for node {inp.node}: {reason}",
                      [f"talosctl version: {reason}"], remedies.talos_version(inp.node))
    if not version.value.server_tag:
        # exit 0 but no Server section with a Tag: cut short (a dropped stream), not an answer
        reason = "talosctl version printed no server Tag (output cut short?)"
        return judged(Status.UNKNOWN, f"could not check the Talos API for node {inp.node}: {reason}",
                      [f"talosctl version: {reason}"], remedies.talos_version(inp.node))
    evidence.append(f"talosctl version: server {version.value.server_tag}")
    if machine.ok:
        ms = machine.value
        evidence.append(f"talosctl get machinestatus: stage {ms.stage}, ready {str(ms.ready).lower()}")
        stuck = _stuck_boot(inp, evidence)
        if stuck is not None:
            return stuck
        if ms.stage != "running":
            return judged(Status.FAIL, f"the node is {ms.stage}, not running (machinestatus stage {ms.stage})",
                          evidence, Remedy(None, f"wait for the node to finish {ms.stage}, then re-check"))
    elif machine.error:
        evidence.append(f"talosctl get machinestatus: {machine.error}")
    health_failure: Judgement | None = None
    if health.ok:
        failed = health.value.failed_check
        if failed is not None:
            message = failed.message or health.value.error or "failed"
            evidence.append(f"talosctl health: waiting for {failed.name}: {message}")
            health_failure = judged(Status.FAIL, f"talosctl health fails at {quote(failed.name)}: {quote(message)}",
                                    evidence, _health_remedy(inp, message))
        elif health.value.error:
            evidence.append(f"talosctl health: {health.value.error}")
            health_failure = judged(Status.FAIL, f"talosctl health fails: {quote(health.value.error)}", evidence,
                                    _health_remedy(inp, health.value.error))
        else:
            evidence.append(f"talosctl health: {len(health.value.checks)} checks OK")
    else:
        evidence.append(f"talosctl health: {health.error}")
    if not node.ok:
        if node.missing:
            return judged(Status.FAIL, f"no Kubernetes Node has address {inp.node}", evidence, remedies.get_nodes())
        reason = node.error or "unknown error"
        evidence.append(f"Kubernetes API: {reason}")
        status = Status.UNKNOWN if _timed_out(reason) else Status.FAIL
        return judged(status, f"the Kubernetes API is not usable: {reason}", evidence,
                      Remedy("kubectl get nodes", "check the kubeconfig, its context, and that the API server is up"))
    obj = node.value
    name = obj["metadata"]["name"]
    ready = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") != "True":
        why = (ready or {}).get("message") or (ready or {}).get("reason") or "no Ready condition"
        evidence.append(f"kubectl get node {name}: Ready={(ready or {}).get('status', 'Unknown')} "
                        f"({shorten(why, 200, _CNI_DOWN if _CNI_DOWN in why else None)})")
        if _CNI_DOWN in why or "NetworkPluginNotReady" in why:
            return judged(Status.FAIL, f"Node {name} is NotReady: {quote(why, 140, _CNI_DOWN if _CNI_DOWN in why else None)}"
                          " — the kubelet runs; the pod network (CNI) is not up", evidence,
                          remedies.cni_not_ready(name))
        return judged(Status.FAIL, f"Node {name} is NotReady: {quote(why)}", evidence,
                      remedies.describe_node(name, f"read its conditions; then talosctl --nodes {inp.node} service "
                                             "kubelet for the kubelet's state"))
    evidence.append(f"kubectl get node {name}: Ready")
    if health_failure is not None:
        return health_failure
    if health.error and not health.ok:
        return Judgement(Status.WARN, f"Node {name} is Ready, but talosctl health could not run: {health.error}",
                         evidence, None)
    return Judgement(Status.PASS, f"Talos {version.value.server_tag} answers, health passes, Node {name} is Ready",
                     evidence)


# ---- extensions -------------------------------------------------------------------------------


def nvidia_extensions(exts: list[Any]) -> tuple[Any | None, Any | None]:
    """(kernel modules — open or proprietary —, toolkit) among the installed extensions."""
    kmod = next((e for e in exts if e.name.startswith((KMOD_BASE, NONFREE_KMOD_BASE))), None)
    toolkit = next((e for e in exts if e.name.startswith(TOOLKIT_BASE)), None)
    return kmod, toolkit


def upgrade_command(inp: JudgeInput) -> str:
    return remedies.upgrade(inp.node, inp.profile, inp.talos_version).command or ""


def extensions_finding(inp: JudgeInput) -> found.ExtensionsFinding | None:
    fact, pci = inp.fact("extensions"), inp.facts.get("pci_devices")
    if not fact.ok:
        return None
    return found.extensions_finding(fact.value, inp.profile, pci.value if pci is not None and pci.ok else ())


def judge_extensions(inp: JudgeInput) -> Judgement:
    finding = extensions_finding(inp)
    return carrying(_judge_extensions(inp, finding), finding)


def _judge_extensions(inp: JudgeInput, finding: found.ExtensionsFinding | None) -> Judgement:
    fact = inp.fact("extensions")
    if finding is None:
        return unknown(fact)
    exts = list(fact.value)
    listed = ", ".join(f"{e.name} {e.version}" for e in exts if e.name != "schematic") or "none"
    evidence = [f"talosctl get extensions: {listed}"]
    if finding.installed_schematic:
        evidence.append(f"talosctl get extensions: schematic {finding.installed_schematic}")
    track = inp.profile.track
    kmod = next(e for e in exts if e.name == finding.kmod) if finding.kmod else None
    toolkit = next(e for e in exts if e.name == finding.toolkit) if finding.toolkit else None
    switches = nvswitches(inp)
    # one schematic for every upgrade this stage offers: Fabric Manager goes in on NVSwitch boards
    remedy = remedies.upgrade(inp.node, inp.profile, inp.talos_version, fabricmanager=bool(switches))
    if finding.missing:
        missing = finding.missing
        return judged(Status.FAIL, f"extension {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                         f"not installed (installed: {listed})", evidence, remedy)
    assert kmod is not None and toolkit is not None
    if finding.mixed_tracks:
        return judged(Status.FAIL, f"mixed tracks: {kmod.name} with {toolkit.name} (never mix lts with production)",
                         evidence, remedy)
    if finding.wrong_track:
        return judged(Status.FAIL, f"extensions are not on the profile's {track} track: "
                      f"{', '.join(finding.wrong_track)}", evidence, remedy)
    kmod_driver, _ = parsers.split_driver(kmod.version)
    toolkit_driver, _ = parsers.split_driver(toolkit.version)
    if kmod_driver != toolkit_driver:
        return judged(Status.FAIL, f"driver versions differ: {kmod.name} {kmod.version} vs "
                         f"{toolkit.name} {toolkit.version}", evidence, remedy)
    fabric = next((e for e in exts if e.name == finding.fabricmanager), None) if finding.fabricmanager else None
    if switches:
        evidence.append(f"talosctl get pcidevices: {len(switches)} NVSwitch bridge{'s' if len(switches) != 1 else ''} "
                        f"({switches[0].product}, class 0680, {switches[0].vendor_id.removeprefix('0x')}:"
                        f"{switches[0].product_id.removeprefix('0x')}): an NVLink/NVSwitch board")
        if fabric is None:
            return judged(Status.FAIL, f"this board has {len(switches)} NVSwitch bridge{'s' if len(switches) != 1 else ''} "
                          f"but extension {FABRICMANAGER_BASE}-{track} is not installed: without Fabric Manager CUDA "
                          "fails with cudaErrorSystemNotReady although nvidia-smi lists the GPUs", evidence, remedy)
        fabric_driver, _ = parsers.split_driver(fabric.version)
        if fabric.name != f"{FABRICMANAGER_BASE}-{track}" or fabric_driver != kmod_driver:
            return judged(Status.FAIL, f"{fabric.name} {fabric.version} does not match {kmod.name} {kmod.version} "
                          "(Fabric Manager must carry the same driver version, same track)", evidence, remedy)
        return Judgement(Status.PASS, f"{kmod.name} {kmod.version}, {toolkit.name} {toolkit.version} and "
                         f"{fabric.name} {fabric.version} installed (driver {kmod_driver}; NVSwitch board)", evidence)
    return Judgement(Status.PASS, f"{kmod.name} {kmod.version} and {toolkit.name} {toolkit.version} installed "
                     f"(driver {kmod_driver})", evidence)


def nvswitches(inp: JudgeInput) -> list[Any]:
    """The NVSwitch bridges on this node's PCI bus (HGX/DGX boards): they are not GPUs."""
    pci = inp.facts.get("pci_devices")
    if pci is None or not pci.ok:
        return []
    return [d for d in pci.value if d.is_nvswitch]


# ---- kernel modules ---------------------------------------------------------------------------


def modules_patch_command(inp: JudgeInput) -> str:
    return remedies.modules_patch(inp.node, inp.profile).command or ""


# The kernel log's NVRM lines, most decisive first: the line that says WHY beats the generic
# "RmInitAdapter failed" that follows it.
_DECISIVE_NVRM = ("nvrm-gpu-not-supported", "nvrm-gsp-init-failed", "nvrm-fallen-off-bus", "nvrm-api-mismatch",
                  "nvrm-rm-init-adapter-failed", "nvrm-no-devices-initialized")


def decisive_nvrm(failures: list[Any]) -> SignatureMatch | None:
    """The most decisive known NVRM message among the kernel log's GPU failures (signatures matched
    against the dmesg text)."""
    matches = [m for failure in failures for m in match_signatures(failure.message + "\n" + failure.line,
                                                                   sources=DMESG)]
    ranked = [m for m in matches if m.signature.id in _DECISIVE_NVRM]
    if not ranked:
        return None
    return min(ranked, key=lambda m: _DECISIVE_NVRM.index(m.signature.id))


def judge_kernel_modules(inp: JudgeInput) -> Judgement:
    modules, driver, exts, dmesg, sysctl, specs = (
        inp.fact(n) for n in ("proc_modules", "driver_version", "extensions", "dmesg", "bpf_sysctl", "module_specs"))
    if not modules.ok:
        return unknown(modules)
    evidence: list[str] = []
    remediation = remedies.modules_patch(inp.node, inp.profile)
    wanted = list(inp.profile.modules)
    loaded = {m.name: m for m in modules.value}
    live = [name for name in wanted if name in loaded and loaded[name].state == "Live"]
    absent = [name for name in wanted if name not in live]
    evidence.append("talosctl read /proc/modules: " + (
        ", ".join(f"{n} {loaded[n].state}" for n in wanted if n in loaded) or "no NVIDIA modules"))
    requested: list[str] | None = list(specs.value) if specs.ok else None
    if requested is not None:
        not_requested = [n for n in wanted if n not in requested]
        evidence.append("talosctl get kernelmodulespecs: " + (
            ", ".join(n for n in wanted if n in requested) or "no NVIDIA modules requested"))
    else:
        not_requested = []
    problems: list[tuple[str, Remedy]] = []  # (summary, remedy)
    if absent:
        why = ""
        if requested is not None and not_requested:
            why = f"; the machine config does not request {', '.join(not_requested)}"
        problems.append((f"module{'s' if len(absent) > 1 else ''} {', '.join(absent)} not loaded{why}", remediation))
    elif not_requested:
        problems.append((f"modules are loaded but the machine config does not request {', '.join(not_requested)}",
                         remediation))
    if driver.ok:
        dv = driver.value
        evidence.append(f"talosctl read /proc/driver/nvidia/version: {dv.flavor} module {dv.version}")
        if exts.ok:
            kmod, _ = nvidia_extensions(list(exts.value))
            if kmod is not None:
                ext_driver, _ = parsers.split_driver(kmod.version)
                if ext_driver != dv.version:
                    problems.append((f"the loaded driver is {dv.version} but the extension {kmod.name} carries "
                                     f"{ext_driver} (reboot pending?)",
                                     remedies.reboot(inp.node, "the new driver loads at the next boot")))
    elif driver.missing:
        evidence.append("talosctl read /proc/driver/nvidia/version: no such file (the driver is not loaded)")
        if not absent:
            problems.append(("/proc/driver/nvidia/version is missing: the NVIDIA driver is not loaded", remediation))
    else:
        evidence.append(f"talosctl read /proc/driver/nvidia/version: {driver.error}")
    if dmesg.ok:
        failures = list(dmesg.value.failures)
        for failure in failures[:4]:
            where = f"GPU {failure.pci_id}" if failure.pci_id else "a GPU"
            # a wrapped message that names its GPU itself ("The NVIDIA GPU 0000:8b:00.0 (PCI ID: ...) ...")
            named = failure.pci_id is not None and failure.pci_id in failure.message
            evidence.append(f"talosctl dmesg: {failure.message}" if named else
                            f"talosctl dmesg: {where}: {failure.message}")
        if failures:
            ids = sorted({f.pci_id for f in failures if f.pci_id})
            which = ", ".join(ids) if ids else "a GPU"
            decisive = decisive_nvrm(failures)
            if decisive is not None:
                why = quote(decisive.line if len(decisive.line) < 140 else decisive.quote, 140, decisive.quote)
                if decisive.signature.stage == "extensions":  # the cause is the choice of extension
                    meaning = decisive.signature.meaning.rstrip(".")
                    why += f" — {meaning[:1].lower()}{meaning[1:]}"
                fix = remedies.for_signature(decisive.signature, inp.node, inp.profile, inp.talos_version)
                line = f"talosctl dmesg: {shorten(decisive.line, 200, decisive.quote)}"
                if line not in evidence:  # the wrapped message is the failure's own, quoted above
                    evidence.append(line)
            else:
                why = quote(failures[0].message)
                fix = remedies.kernel_log(inp.node, "read the NVRM lines around the failure; check the GPU's power, "
                                          "firmware and seating, then reboot the node")
            problems.append((f"the driver failed to initialise {which}: {why}", fix))
    elif dmesg.error:
        evidence.append(f"talosctl dmesg: {dmesg.error}")
    if sysctl.ok:
        evidence.append(f"talosctl read /proc/sys/net/core/bpf_jit_harden: {sysctl.value}")
        if sysctl.value != "1":
            problems.append((f"sysctl net.core.bpf_jit_harden is {sysctl.value}, it must be 1", remediation))
    elif sysctl.error:
        evidence.append(f"talosctl read /proc/sys/net/core/bpf_jit_harden: {sysctl.error}")
    if problems:
        summary, fix = problems[0]
        if len(problems) > 1:
            summary += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
        return judged(Status.FAIL, summary, evidence, fix)
    if not driver.ok:
        return unknown(driver)
    for fact in (dmesg, sysctl, specs):
        if fact.error:  # a fact this stage owns could not be read: no pass without it
            return Judgement(Status.UNKNOWN, f"could not check: {fact.error}", evidence, None)
    return Judgement(Status.PASS, f"{', '.join(wanted)} Live; driver {driver.value.version} "
                     f"({driver.value.flavor}); bpf_jit_harden 1", evidence)


# ---- container runtime ------------------------------------------------------------------------


CONFIG_TOML = "/etc/nvidia-container-runtime/config.toml"
CRI_PART = "10-nvidia-container-runtime.part"
PERSISTENCED = "ext-nvidia-persistenced"
RUNBOOK_STEP = ("the runbook's step 4.1 (talos/patches/nvidia-no-cgroups.yaml) is not followed: Talos refuses a "
                f"machine.files create of {CONFIG_TOML} at boot (outside /var), and the runtime never reads that "
                "file (the toolkit extension's runtime uses its own /usr/local/etc/nvidia-container-runtime/"
                "config.toml); NVIDIA documents no-cgroups for rootless containers only")


def refused_files(fact: ProbeResult) -> list[tuple[int, Any]]:
    """(index, violation) of the machine config's `machine.files` entries that Talos refuses at boot
    (only what is certain: a create outside /var, an unknown op)."""
    from checks.patch_guard import check_entries

    if not fact.ok or not fact.value:
        return []
    return check_entries([(entry.op, entry.path) for entry in fact.value], exists=lambda _path: None,
                         strict=False)


def removal_command(node: str, indexes: list[int]) -> str:
    """The pasteable command that removes these machine.files entries (it reboots the node)."""
    return remedies.remove_files(node, indexes).command or ""


def refused_evidence(refused: list[tuple[int, Any]]) -> list[str]:
    return [f"talosctl get machineconfig: machine.files[{index}] op {v.op} path {v.path}: Talos refuses it at "
            f"boot ({v.talos_error})" for index, v in refused]


def judge_container_runtime(inp: JudgeInput) -> Judgement:
    files, cri, services = (inp.fact(n) for n in ("machine_files", "cri_conf", "services"))
    evidence: list[str] = []
    refused = refused_files(files)
    if refused:
        evidence += refused_evidence(refused)
        first = refused[0][1]
        return judged(Status.FAIL, f"the machine config holds {len(refused)} machine.files "
                         f"entr{'y' if len(refused) == 1 else 'ies'} Talos refuses at boot ({first.talos_error}): "
                         "the next boot stops in writeUserFiles and never starts Kubernetes",
                         evidence, remedies.remove_files(inp.node, [index for index, _ in refused]))
    if files.ok:
        evidence.append(f"talosctl get machineconfig: {len(files.value)} machine.files entr"
                        f"{'y' if len(files.value) == 1 else 'ies'}, none refused at boot")
    else:
        evidence.append(f"talosctl get machineconfig: {files.error}")
    problems: list[tuple[str, Remedy]] = []
    if cri.ok and CRI_PART in cri.value:
        evidence.append(f"talosctl ls /etc/cri/conf.d: {CRI_PART} (containerd runtime nvidia registered)")
    elif cri.ok or cri.missing:
        listed = ", ".join(cri.value) if cri.ok and cri.value else "nothing"
        evidence.append(f"talosctl ls /etc/cri/conf.d: {listed}, no {CRI_PART}")
        problems.append((f"containerd has no nvidia runtime: /etc/cri/conf.d/{CRI_PART} is missing (the "
                         "nvidia-container-toolkit extension installs it)",
                         Remedy(remedies.upgrade(inp.node, inp.profile, inp.talos_version).command,
                                "install the nvidia-container-toolkit extension (the extensions stage's action); "
                                f"this reboots node {inp.node}")))
    else:
        return Judgement(Status.UNKNOWN, f"could not check: {cri.error}", evidence + [f"{cri.source}: {cri.error}"])
    if services.ok:
        service = services.value.get(PERSISTENCED)
        if service is not None and service.state == "Running":
            evidence.append(f"talosctl services: {PERSISTENCED} Running")
        else:
            state = service.state if service is not None else "not registered"
            evidence.append(f"talosctl services: {PERSISTENCED} {state}")
            problems.append((f"service {PERSISTENCED} is {state}, not Running",
                             remedies.logs(inp.node, PERSISTENCED, f"its log says why; talosctl --nodes {inp.node} "
                                           f"service {PERSISTENCED} shows its state")))
    else:
        return Judgement(Status.UNKNOWN, f"could not check: {services.error}",
                         evidence + [f"{services.source}: {services.error}"])
    if problems:
        summary, fix = problems[0]
        if len(problems) > 1:
            summary += f" (and {len(problems) - 1} more problem)"
        return judged(Status.FAIL, summary, evidence, fix)
    if not files.ok:
        if "permissiondenied" in (files.error or "").lower().replace(" ", ""):
            # reading the machine config needs the os:admin role; the rest of the stage was checked
            return Judgement(Status.WARN, "the nvidia runtime is registered and ext-nvidia-persistenced runs; the "
                             "machine config's machine.files could not be read (it needs the os:admin role)", evidence)
        return Judgement(Status.UNKNOWN, f"could not read the machine config's machine.files: {files.error}",
                         evidence)
    if inp.profile.no_cgroups:
        evidence.append(f"profile: no_cgroups: true — {RUNBOOK_STEP}")
        return Judgement(Status.WARN, "the nvidia runtime is registered and ext-nvidia-persistenced runs; the "
                         f"profile asks for no-cgroups, which cannot be written on Talos ({CONFIG_TOML} is a create "
                         "outside /var) and is not needed: set no_cgroups: false", evidence)
    return Judgement(Status.PASS, f"containerd has the nvidia runtime ({CRI_PART}); {PERSISTENCED} Running; no "
                     "machine.files entry Talos refuses at boot", evidence)


# ---- RuntimeClass -----------------------------------------------------------------------------


def judge_runtimeclass(inp: JudgeInput) -> Judgement:
    fact = inp.fact("runtime_class")
    name = inp.profile.runtime_class
    remedy = remedies.runtimeclass_apply(inp.profile)
    if fact.missing:
        return judged(Status.FAIL, f'RuntimeClass "{name}" not found',
                      [f'kubectl get runtimeclass {name}: runtimeclasses.node.k8s.io "{name}" not found'], remedy)
    if not fact.ok:
        return unknown(fact)
    handler = fact.value.get("handler")
    if handler != name:
        return judged(Status.FAIL, f'RuntimeClass "{name}" has handler "{handler}", expected "{name}"',
                      [f"kubectl get runtimeclass {name}: handler {handler}"], remedy)
    return Judgement(Status.PASS, f'RuntimeClass "{name}" exists with handler "{handler}"',
                     [f"kubectl get runtimeclass {name}: handler {handler}"])


# ---- device plugin ----------------------------------------------------------------------------


def helm_install_command(profile: Profile) -> str:
    return remedies.helm_install(profile).command or ""


def untolerated_taints(node: dict[str, Any], tolerations: list[dict[str, Any]]) -> list[str]:
    """The node's NoSchedule/NoExecute taints that these tolerations do not cover, as key=value:effect."""
    return list(found.taint_finding(node, tolerations).untolerated)


def _node_matches_affinity(node: dict[str, Any], ds: dict[str, Any]) -> bool:
    """Whether the node's labels satisfy the DaemonSet's required node affinity (terms ORed, expressions ANDed)."""
    template = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    required = (((template.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    labels = (node.get("metadata") or {}).get("labels") or {}
    for term in terms:
        ok = True
        for expr in term.get("matchExpressions") or []:
            key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
            if op == "In":
                ok = ok and labels.get(key) in values
            elif op == "NotIn":
                ok = ok and labels.get(key) not in values
            elif op == "Exists":
                ok = ok and key in labels
            elif op == "DoesNotExist":
                ok = ok and key not in labels
        if ok:
            return True
    return False


def _event_lines(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for event in events:
        out.append((str(event.get("reason") or ""), str(event.get("message") or "")))
    return out


def _required_affinity_terms(ds: dict[str, Any]) -> list[str]:
    template = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    required = (((template.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    keys: list[str] = []
    for term in required.get("nodeSelectorTerms") or []:
        for expr in term.get("matchExpressions") or []:
            values = expr.get("values") or []
            keys.append(f"{expr.get('key')}{'=' + values[0] if values else ''}")
    return keys


def _kube_node(inp: JudgeInput) -> dict[str, Any] | None:
    node = inp.fact("kube_node")
    return node.value if node.ok and isinstance(node.value, dict) else None


def judge_device_plugin(inp: JudgeInput) -> Judgement:
    fact = inp.fact("device_plugin")
    finding = None
    if fact.ok and fact.value is not None and fact.value.daemonset is not None:
        node = _kube_node(inp)
        mine = found.pods_on(fact.value.pods, node["metadata"]["name"] if node else None)
        logs = [fact.value.logs.get(p["metadata"]["name"], "") for p in mine]
        resource = next((scan.resource for scan in map(parsers.scan_device_plugin_log, logs) if scan.registered),
                        None)
        finding = found.daemonset_finding(fact.value.daemonset, fact.value.pods, node, inp.profile.runtime_class,
                                          resource)
    return carrying(_judge_device_plugin(inp, finding), finding)


def _judge_device_plugin(inp: JudgeInput, finding: found.DevicePluginFinding | None) -> Judgement:
    fact, helm = inp.fact("device_plugin"), inp.fact("helm_release")
    install = remedies.helm_install(inp.profile)
    evidence: list[str] = []
    if helm.ok:
        r = helm.value
        evidence.append(f"helm list: {r.name} {r.chart} {r.status} (revision {r.revision})")
    elif helm.missing:
        evidence.append(f"helm list -n {inp.profile.device_plugin.namespace}: no release {inp.profile.device_plugin.release}")
    elif helm.error:
        evidence.append(f"helm: {helm.error}")
    if fact.missing:
        return judged(Status.FAIL, "the NVIDIA device plugin is not installed (no DaemonSet labelled "
                      "app.kubernetes.io/name=nvidia-device-plugin, nor a pod template labelled "
                      "name=nvidia-device-plugin-ds)", evidence, install)
    if not fact.ok or finding is None:
        return unknown(fact)
    facts = fact.value
    ds = facts.daemonset
    meta = ds["metadata"]
    namespace = meta["namespace"]
    ds_name = f"{namespace}/{meta['name']}"
    desired, ready_count = finding.desired, finding.ready
    evidence.append(f"kubectl get ds {ds_name}: desired {desired}, ready {ready_count}")
    template = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    rc_name = template.get("runtimeClassName")
    node = _kube_node(inp)
    node_name = node["metadata"]["name"] if node else None
    problems: list[tuple[str, Remedy]] = []
    fix_values = remedies.values_fix(inp.profile, f"runtimeClassName: {inp.profile.runtime_class} and affinity: null")
    for reason, message in _event_lines(facts.ds_events):
        if reason in ("FailedCreate",) or "forbidden" in message:
            evidence.append(f"DaemonSet event {reason}: {shorten(message, 200)}")
    ds_matches = match_signatures("\n".join(m for _, m in _event_lines(facts.ds_events)))
    # the pod on THIS node (not any pod of the DaemonSet)
    pods = list(facts.pods)
    mine = found.pods_on(pods, node_name)
    if node_name:
        evidence.append(f"pods of {ds_name} on node {node_name}: {len(mine)} (of {len(pods)} on all nodes)")
    tolerations = list(template.get("tolerations") or [])
    taints = list(finding.taints.untolerated) if finding.taints is not None else []
    affinity = _required_affinity_terms(ds)
    not_here = desired == 0 or (node_name is not None and not mine and (taints or (
        affinity and node is not None and not _node_matches_affinity(node, ds))))
    if not_here:
        where = "DESIRED 0" if desired == 0 else f"no pod on node {node_name}"
        if taints:
            evidence.append(f"kubectl get node {node_name}: taints {', '.join(taints)}; DaemonSet tolerations "
                            f"{len(tolerations)}, none covers them")
            problems.append((f"DaemonSet {ds_name} has {where}: node {node_name} has the taint "
                             f"{', '.join(taints)}, which its tolerations do not cover",
                             remedies.tolerate_taint(inp.profile, taints)))
        elif affinity and (node is None or not _node_matches_affinity(node, ds)):
            evidence.append("DaemonSet pod template: required node affinity on " + " OR ".join(affinity))
            problems.append((f"DaemonSet {ds_name} has {where}: its node affinity requires "
                             f"{' or '.join(affinity)}, labels that only NFD/GFD set and no node has",
                             remedies.values_fix(inp.profile, "affinity: null")))
        elif ds_matches:
            first = ds_matches[0]
            problems.append((f"DaemonSet {ds_name} cannot create its pod: {quote(first.quote)}",
                             remedies.for_signature(first.signature, inp.node, inp.profile, inp.talos_version)))
        elif desired == 0:
            selector = template.get("nodeSelector") or {}
            problems.append((f"DaemonSet {ds_name} has DESIRED 0: it is not scheduled on any node "
                             f"(nodeSelector {selector or 'none'}, tolerations {len(tolerations)})",
                             fix_values))
    if not finding.runtime_class_ok:
        evidence.append(f"DaemonSet pod template: runtimeClassName {rc_name or 'not set'}")
        problems.append((f"the device plugin pods do not use runtimeClassName {inp.profile.runtime_class} "
                         f"(they have {rc_name or 'none'}), so they cannot see the driver",
                         remedies.values_fix(inp.profile, f"runtimeClassName: {inp.profile.runtime_class}")))
    if ds_matches and desired > 0 and not mine:
        first = ds_matches[0]
        problems.append((f"DaemonSet {ds_name} cannot create its pod: {quote(first.quote)}",
                         remedies.for_signature(first.signature, inp.node, inp.profile, inp.talos_version)))
    for state in finding.pods:
        name, word, ready, message = state.name, state.word, state.ready, state.message
        evidence.append(f"pod {name} (node {state.node or 'none'}): {word}, ready "
                        f"{str(ready).lower()}, restarts {state.restarts}"
                        + (f" ({shorten(message, 160)})" if message else ""))
        for reason, ev_message in _event_lines(facts.pod_events.get(name, [])):
            if reason not in ("Scheduled", "Pulled", "Created", "Started", "Pulling"):
                evidence.append(f"pod event {reason}: {shorten(ev_message, 200)}")
        log = facts.logs.get(name, "")
        scan = parsers.scan_device_plugin_log(log)
        for match in scan.failures[:3]:
            evidence.append(f"pod log: {match.line}")
        text_matches = match_signatures("\n".join([message] + [m for _, m in _event_lines(facts.pod_events.get(name, []))]))
        all_matches = [m for m in list(scan.failures) + text_matches if m.signature.stage != "gpu-workload"]
        if scan.registered and ready:
            evidence.append(f"pod log: Registered device plugin for '{scan.resource or 'nvidia.com/gpu'}' with Kubelet")
            continue
        if all_matches:
            first = all_matches[0]
            problems.append((f"device plugin pod {name} is {word}: {quote(first.line, 160, first.quote)}",
                             remedies.for_signature(first.signature, inp.node, inp.profile, inp.talos_version,
                                                    node_name, (namespace, name))))
        elif not ready:
            problems.append((f"device plugin pod {name} is {word}" + (f": {quote(message)}" if message else ""),
                             remedies.describe_pod(namespace, name)))
        elif not scan.registered:
            problems.append((f"device plugin pod {name} runs but its log does not show the registration of "
                             f"{GPU_RESOURCE} with the kubelet", remedies.pod_log(namespace, name)))
    if problems:
        summary, fix = problems[0]
        if (fix.command or "").startswith("helm ") and not (meta.get("annotations") or {}).get(
                "meta.helm.sh/release-name"):
            fix = remedies.replace_unmanaged(fix, namespace, meta["name"])
        return judged(Status.FAIL, summary, evidence, fix)
    if not mine:
        where = f" on node {node_name}" if node_name else " yet"
        return judged(Status.FAIL, f"DaemonSet {ds_name} has no pod{where}", evidence,
                      remedies.describe_ds(namespace, meta["name"]))
    return judged(Status.PASS, f"DaemonSet {ds_name} {ready_count}/{desired} ready; the plugin on "
                  f"{node_name or 'the node'} registered {finding.resource or GPU_RESOURCE} with the kubelet", evidence)


# ---- GPU resources ----------------------------------------------------------------------------


def expected_gpus(inp: JudgeInput) -> tuple[int | None, str]:
    counts = found.gpu_counts(inp.facts, inp.profile)
    return counts.gpus, counts.basis


def judge_gpu_resources(inp: JudgeInput) -> Judgement:
    counts = found.gpu_counts(inp.facts, inp.profile)
    return carrying(_judge_gpu_resources(inp, counts), counts)


def _judge_gpu_resources(inp: JudgeInput, counts: found.GpuCounts) -> Judgement:
    node, dmesg, alloc = inp.fact("kube_node"), inp.fact("dmesg"), inp.fact("gpu_allocations")
    if not node.ok or counts.advertised is None:
        return unknown(node) if node.error else Judgement(Status.UNKNOWN, "the Kubernetes Node is not known", [])
    gpus, basis = counts.gpus, counts.basis
    name = node.value["metadata"]["name"]
    resource, replicas = counts.resource, counts.replicas
    capacity, allocatable = counts.advertised.capacity, counts.advertised.allocatable
    evidence = [f"kubectl get node {name}: capacity {resource} {capacity}, allocatable {allocatable}"]
    if gpus is not None:
        evidence.append(f"talosctl get pcidevices: {gpus} NVIDIA GPU{'s' if gpus != 1 else ''} (display/3D "
                        "controllers; NVSwitch bridges are not GPUs)"
                        if basis == "NVIDIA PCI devices" else f"profile: gpu_count {gpus}")
    expected = counts.expected
    if counts.strategy and replicas > 1:
        renamed = f", advertised as {resource}" if resource != GPU_RESOURCE else ""
        evidence.append(f"device plugin pod on {name}: {counts.strategy} with {replicas} replicas of "
                        f"{GPU_RESOURCE} per GPU{renamed} (its running config)")
        basis = f"{gpus} GPU{'s' if gpus != 1 else ''} × {replicas} {counts.strategy} replicas"
    migs = counts.mig
    if migs or counts.mig_strategy in ("single", "mixed"):
        listed = ", ".join(f"{m.resource} {m.capacity}" for m in migs) or f"{resource} {capacity}"
        evidence.append(f"kubectl get node {name}: MIG resources {listed} (strategy "
                        f"{counts.mig_strategy if counts.mig_strategy != 'none' else 'mixed'})")
        unhealthy = [m for m in migs if m.unhealthy]
        if unhealthy:
            m = unhealthy[0]
            return judged(Status.FAIL, f"Node {name} has {m.unhealthy} unhealthy {m.resource} (capacity {m.capacity}, "
                          f"allocatable {m.allocatable})", evidence,
                          remedies.kernel_log(inp.node, "read the node's kernel log for the Xid; the "
                                              "plugin marks a device healthy again only after a restart"))
        if migs and capacity == 0:
            total = sum(m.capacity for m in migs)
            return Judgement(Status.PASS, f"Node {name} advertises {total} MIG instance{'s' if total != 1 else ''} "
                             f"({listed}) on {gpus if gpus is not None else 'its'} GPU{'s' if gpus != 1 else ''}; "
                             "MIG instances are counted per profile, not per GPU", evidence)
        if counts.mig_strategy == "single" and capacity > 0 and capacity == allocatable:
            return Judgement(Status.PASS, f"Node {name} advertises {capacity} {resource} (MIG strategy single: one per "
                             "MIG instance, not per GPU)", evidence)
    if alloc.ok:
        evidence.append(f"pods on {name}: {alloc.value} {resource} allocated")
    if expected is None:
        return Judgement(Status.UNKNOWN, f"cannot tell how many GPUs to expect: {basis}", evidence)
    if capacity == 0:
        return judged(Status.FAIL, f"Node {name} advertises no {resource} (expected {expected})", evidence,
                      Remedy(None, "fix the device plugin stage first; the kubelet adds nvidia.com/gpu once it "
                             "registers"))
    if capacity > allocatable:
        xids = list(zip(counts.xids, counts.xid_lines, strict=True))
        named = f"; the plugin logged {', '.join(short for short, _line in xids[:3])}" if xids else ""
        evidence.extend(f"pod log: {shorten(line, 200)}" for _short, line in xids[:3])
        return judged(Status.FAIL, f"Node {name} has {capacity - allocatable} unhealthy {resource} (capacity "
                      f"{capacity}, allocatable {allocatable}){named}", evidence,
                      remedies.reboot(inp.node, "the device plugin never marks a device healthy again without a "
                                      "restart; read the node's kernel log for the Xid (talosctl dmesg) and, after a "
                                      "hardware fault, reset the GPU by rebooting the node"))
    if capacity < expected or allocatable < expected:
        why = ""
        if dmesg.ok and dmesg.value.failures:
            failure = dmesg.value.failures[0]
            why = f"; dmesg: {quote(failure.message)}"
        return judged(Status.FAIL, f"Node {name} advertises {min(capacity, allocatable)} {resource} but "
                      f"{expected} are expected ({basis}){why}", evidence,
                      remedies.kernel_log(inp.node, "read the NVRM lines: they say why a GPU was not initialised"))
    if capacity > expected:
        return Judgement(Status.WARN, f"Node {name} advertises {capacity} {resource}, more than the "
                         f"{expected} expected ({basis})", evidence)
    return Judgement(Status.PASS, f"Node {name} advertises {capacity} {resource} (capacity = allocatable = "
                     f"{expected}, {basis})", evidence)


# ---- GPU workload -----------------------------------------------------------------------------


def judge_gpu_workload(inp: JudgeInput) -> Judgement:
    if not inp.pod_test:
        return Judgement(Status.SKIPPED, "not run (use --pod-test, or the TUI action)", [])
    fact = inp.fact("gpu_workload")
    if not fact.ok:
        return unknown(fact)
    outcome = fact.value
    return Judgement(outcome.status, outcome.summary, list(outcome.evidence), outcome.remediation,
                     getattr(outcome, "advice", None))


JUDGES: dict[str, Callable[[JudgeInput], Judgement]] = {
    "judge_cluster": judge_cluster,
    "judge_extensions": judge_extensions,
    "judge_kernel_modules": judge_kernel_modules,
    "judge_container_runtime": judge_container_runtime,
    "judge_runtimeclass": judge_runtimeclass,
    "judge_device_plugin": judge_device_plugin,
    "judge_gpu_resources": judge_gpu_resources,
    "judge_gpu_workload": judge_gpu_workload,
}
