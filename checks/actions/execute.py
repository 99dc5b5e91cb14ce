"""Run a plan: its steps in order, output streamed, stopped at the first failure, everything audited.

Cancellation (anyio) kills the running command's process group (checks.runner does that), writes a
`result` record saying what state the node may be left in, and is re-raised. The overall `timeout`
ends the action with status `timed-out`. Nothing runs in read-only mode.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import yaml

from checks import parsers
from checks.actions.files import write_new_file
from checks.actions.model import ActionEvent, ActionResult, ActionStatus, Plan, RunState, Step
from checks.actions.plans import UPGRADE_NODE_STATE
from checks.actions.reboot import follow_reboot
from checks.adapters.kube import KubeError
from checks.audit import AuditLog, new_action_id
from checks.context import make_context
from checks.parsers.base import is_error, strip_ansi
from checks.parsers.talos import parse_patch_output
from checks.redact import StreamRedactor, redact
from checks.runner import CommandResult, display_argv, last_meaningful_line, run_command
from checks.target import Target

DEFAULT_TIMEOUT_S = 900.0
UPGRADE_COMMAND_TIMEOUT_S = 600.0  # `talosctl upgrade` waits for the reboot itself; it can hang at "waiting for actor ID"
COMMAND_TIMEOUT_S = 300.0
PATCH_REBOOT_GRACE_S = 60.0  # how long a "with a reboot" patch may take to bring the node down
TEST_POD_TIMEOUT_S = 180.0
REASON_LIMIT = 300

_ERROR_WORDS = re.compile(r"\b(error|failed|failure|not found|denied|refused|invalid|cannot|unable)\b", re.IGNORECASE)
_LEADING_DECORATION = re.compile(r"^[\s\u2500-\u25ff\u2800-\u28ff*•-]+")

_NODE_STATES = {
    "write": "only files in the infra repo were written; the node is unchanged",
    "register-schematic": "the node is unchanged (only the Image Factory was contacted)",
    "upgrade": UPGRADE_NODE_STATE,
    "follow-reboot": "the node is rebooting; it comes back by itself — re-check in a few minutes",
    "patch": "the machine-config patch may or may not have been applied — re-check to see",
    "helm-repo-add": "only the local Helm repository list may have changed",
    "helm": "the Helm release may be partly installed — re-check, then re-run the action or `helm status`",
    "api": "the RuntimeClass may or may not have been created — re-check to see",
    "kube": "the Kubernetes object may or may not have been changed — re-check to see",
    "test-pod": "the test pod is deleted whatever happened (a pod being deleted may linger a few seconds)",
}


@dataclass(frozen=True)
class StepOutcome:
    ok: bool
    reason: str
    node_state: str = ""


def _one_line(text: str, limit: int = REASON_LIMIT) -> str:
    """One redacted line; a long one keeps its head and its tail (where tools put the decisive words)."""
    flat = " ".join(redact(text).split())
    if len(flat) <= limit:
        return flat
    head = int(limit * 0.55)
    tail = limit - head - 3
    return f"{flat[:head].rstrip()} … {flat[-tail:].lstrip()}"


def error_line(result: CommandResult) -> str:
    """The line of a failed command that says why: the last one with an error word, else the last one."""
    if result.error or result.timed_out:
        return result.failure_reason()
    stderr, stdout = redact(result.stderr), redact(result.stdout)  # whole: a PEM body line has no marker
    for text in (stderr, stdout):
        for line in reversed(text.splitlines()):
            cleaned = _LEADING_DECORATION.sub("", strip_ansi(line)).strip()
            if cleaned and _ERROR_WORDS.search(cleaned):
                return f"exit {result.returncode}: {cleaned}"
    last = last_meaningful_line(stderr) or last_meaningful_line(stdout) or "no output"
    return f"exit {result.returncode}: {last}"


def guard_patch_argv(argv: tuple[str, ...]) -> str:
    """The patch guard on the patch a `talosctl patch mc` is about to apply, read as it is now (a file
    can change between the plan and the run): why it is refused, or "" when it may be applied."""
    from checks.patch_guard import PatchRefused, guard_patch

    patches = [(argv[index + 1], word == "--patch-file" or argv[index + 1].startswith("@"))
               for index, word in enumerate(argv[:-1]) if word in ("--patch", "-p", "--patch-file")]
    if not patches:
        return "refusing talosctl patch mc without --patch: nothing to check against Talos's boot rules"
    for value, is_file in patches:
        source, text = "the patch", value
        if is_file:
            path = Path(value.removeprefix("@"))
            source = path.name
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                return f"cannot read the patch {path}: {getattr(exc, 'strerror', None) or exc}"
        try:
            guard_patch(text, source)
        except PatchRefused as exc:
            return f"{exc} — not applied"
    return ""


def step_role(step: Step) -> str:
    return step.param("role") or step.kind


class _Runner:
    def __init__(self, plan: Plan, target: Target, emit: Callable[[ActionEvent], None],
                 audit: AuditLog | None, action_id: str, deadline: float, upgrade_timeout: float | None,
                 poll_interval: float) -> None:
        self.plan = plan
        self.target = target
        self._emit = emit
        self.audit = audit
        self.action_id = action_id
        self.deadline = deadline
        self.upgrade_timeout = upgrade_timeout
        self.poll_interval = poll_interval
        self.state = RunState()

    # ---- events ----------------------------------------------------------------------------

    def record(self, kind: str, text: str) -> None:
        if self.audit is not None:
            self.audit.record(self.action_id, kind, text, stage=self.plan.stage)

    def emit(self, kind: str, text: str, stream: str = "") -> None:
        text = redact(text)
        self.record(kind, f"[{stream}] {text}" if stream else text)
        self._emit(ActionEvent(kind, text, stream))

    def line(self, stream: str) -> Callable[[str], None]:
        """The line callback of one stream of one command: redacted with what spans lines remembered
        (a PEM block's body lines, a key whose value is on the next line)."""
        stateful = StreamRedactor()
        return lambda text: self.emit("line", stateful(text), stream)

    def remaining(self) -> float:
        return max(0.1, self.deadline - time.monotonic())

    # ---- steps -----------------------------------------------------------------------------

    async def run(self) -> StepOutcome:
        for step in self.plan.steps:
            self.state.current_step = step
            self.emit("step", step.shown)
            outcome = await self.run_step(step)
            if not outcome.ok:
                return outcome
        return StepOutcome(True, self.success_reason())

    def success_reason(self) -> str:
        notes = "; ".join(self.state.notes)
        return _one_line(f"{self.plan.title}: done" + (f" ({notes})" if notes else ""))

    async def run_step(self, step: Step) -> StepOutcome:
        handler = {
            "write": self.step_write,
            "command": self.step_command,
            "api": self.step_api,
            "kube": self.step_kube,
            "register-schematic": self.step_register,
            "follow-reboot": self.step_follow_reboot,
            "test-pod": self.step_test_pod,
        }.get(step.kind)
        if handler is None:
            return StepOutcome(False, f"unknown step kind {step.kind!r}")
        return await handler(step)

    async def step_write(self, step: Step) -> StepOutcome:
        path = Path(step.param("path"))
        relative = step.param("relative") or str(path)
        try:
            written = await anyio.to_thread.run_sync(
                lambda: write_new_file(path, step.param("content"), repo=self.target.profile.infra_repo,
                                       relative=step.param("relative") or None))
        except OSError as exc:
            return StepOutcome(False, _one_line(f"cannot write {relative}: {exc.strerror or exc}"),
                               _NODE_STATES["write"])
        if written:
            self.emit("line", f"wrote {path}", "stdout")
        else:
            self.emit("line", f"{relative} appeared meanwhile: left as it is and used as it is", "stdout")
        return StepOutcome(True, "")

    async def step_command(self, step: Step) -> StepOutcome:
        argv = step.argv
        role = step_role(step)
        if "upgrade" in argv[1:] and role == "upgrade":
            if "--image" not in argv or argv.index("--image") + 1 >= len(argv):
                # without --image current talosctl installs the vanilla image and drops every extension
                return StepOutcome(False, "refusing to run talosctl upgrade without --image")
        if role == "patch":
            refusal = await anyio.to_thread.run_sync(guard_patch_argv, argv)
            if refusal:
                return StepOutcome(False, _one_line(refusal), "the node is unchanged: the patch was not applied")
        limit = COMMAND_TIMEOUT_S
        if role == "upgrade":
            limit = self.upgrade_timeout if self.upgrade_timeout is not None else UPGRADE_COMMAND_TIMEOUT_S
        result = await run_command(argv, timeout=min(limit, self.remaining()), env=self.target.env,
                                   on_stdout=self.line("stdout"), on_stderr=self.line("stderr"))
        node_state = _NODE_STATES.get(role, "")
        if role == "upgrade" and not result.timed_out and "actor id:" not in (result.stdout + result.stderr).lower():
            node_state = "the node did not start the upgrade: it still runs its current image"
        if role == "upgrade" and result.timed_out:
            # it may hang at "waiting for actor ID" although the node upgraded: the reboot check decides
            self.state.upgrade_timed_out = True
            self.state.upgrade_last_line = (last_meaningful_line(redact(result.stderr))
                                            or last_meaningful_line(redact(result.stdout)))
            self.emit("phase", f"talosctl upgrade did not return within {result.duration_ms / 1000:.1f}s; "
                      "checking whether the node upgraded anyway")
            return StepOutcome(True, "")
        if not result.ok:
            short = " ".join(display_argv(argv).split()[:3])  # e.g. "helm upgrade --install"
            return StepOutcome(False, _one_line(f"{short} failed: {error_line(result)}"), node_state)
        if role == "patch":
            patched = parse_patch_output(result.stderr + "\n" + result.stdout)
            if not is_error(patched):  # unparsed: the patch output did not say (None), the reboot is watched for
                if patched.reboot is not None:
                    self.state.patch_reboots = patched.reboot
                elif patched.skipped_no_changes:
                    self.state.patch_reboots = False
        return StepOutcome(True, "")

    async def step_follow_reboot(self, step: Step) -> StepOutcome:
        after = step.param("after")
        wait_for_down = 0.0
        if after == "patch":
            if self.state.patch_reboots is False:
                self.emit("phase", "the patch applied without a reboot")
                return StepOutcome(True, "")
            wait_for_down = PATCH_REBOOT_GRACE_S if self.state.patch_reboots else 15.0
        outcome = await follow_reboot(self.target, lambda phase: self.emit("phase", phase),
                                      timeout=self.remaining(), wait_for_down=wait_for_down,
                                      kube_node=step.param("kube_node"), poll_interval=self.poll_interval)
        if not outcome.ok:
            return StepOutcome(False, _one_line(outcome.reason), _NODE_STATES["follow-reboot"])
        if after == "upgrade" and self.state.upgrade_timed_out:
            return await self.verify_upgrade()
        return StepOutcome(True, "")

    async def verify_upgrade(self) -> StepOutcome:
        """After a `talosctl upgrade` that never returned: did the node come back with the new schematic?"""
        expected = self.plan.schematic_id
        result = await self.target.talosctl().run("get", "extensions", "-o", "yaml", timeout=min(30.0, self.remaining()))
        installed = None
        if result.ok:
            exts = parsers.parse_extensions(result.stdout)
            if not parsers.is_error(exts):
                installed = parsers.schematic_id(list(exts))
        if expected and installed == expected:
            self.state.notes.append("talosctl upgrade did not return, but the node is back with schematic "
                                    f"{expected}")
            return StepOutcome(True, "")
        hung = self.state.upgrade_last_line or "no output"
        hint = (" (a hang at 'waiting for actor ID' usually means the node could not pull the installer image "
                f"{self.plan.installer_image})" if "actor id" in hung.lower() else "")
        return StepOutcome(False, _one_line(f"talosctl upgrade did not finish: last line {hung!r}; the node runs "
                                            f"schematic {installed or 'unknown'}, not {expected}{hint}"),
                           UPGRADE_NODE_STATE)

    async def step_register(self, step: Step) -> StepOutcome:
        from checks.factory_client import FactoryError, register_schematic

        try:
            registration = await register_schematic(step.param("factory"), step.param("yaml"), step.param("id"),
                                                    timeout=min(30.0, self.remaining()))
        except FactoryError as exc:
            return StepOutcome(False, _one_line(str(exc)), _NODE_STATES["register-schematic"])
        how = "registered" if registration.status == 201 else "already known"
        self.emit("line", f"Image Factory: schematic {registration.id} {how} (HTTP {registration.status})", "stdout")
        return StepOutcome(True, "")

    async def step_api(self, step: Step) -> StepOutcome:
        path = Path(step.param("path"))
        name = step.param("name")
        try:
            body = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            return StepOutcome(False, _one_line(f"cannot read {path}: {exc}"), "the node is unchanged")
        if not isinstance(body, dict) or body.get("kind") != "RuntimeClass":
            return StepOutcome(False, f"{path} is not a RuntimeClass manifest", "the node is unchanged")
        ctx = make_context(self.target, timeout=min(30.0, self.remaining()))
        try:
            created = await ctx.call_kube(lambda reader: reader.create_runtime_class(body))
        except KubeError as exc:
            if exc.kind != "conflict":
                return StepOutcome(False, _one_line(f"create RuntimeClass {name}: {exc.message}"), _NODE_STATES["api"])
            try:
                existing = await ctx.call_kube(lambda reader: reader.read_runtime_class(str(body["metadata"]["name"])))
            except KubeError as read_exc:
                return StepOutcome(False, _one_line(read_exc.message), _NODE_STATES["api"])
            if existing.get("handler") != body.get("handler"):
                return StepOutcome(False, f"RuntimeClass {name} already exists with handler {existing.get('handler')}"
                                   f", not {body.get('handler')} (a handler cannot be changed: delete it first)",
                                   "the node is unchanged")
            self.emit("line", f"runtimeclass.node.k8s.io/{name} already exists (handler {existing.get('handler')})",
                      "stdout")
            return StepOutcome(True, "")
        self.emit("line", f"runtimeclass.node.k8s.io/{created.get('metadata', {}).get('name', name)} created "
                  f"(handler {created.get('handler')})", "stdout")
        return StepOutcome(True, "")

    async def step_kube(self, step: Step) -> StepOutcome:
        """A Kubernetes API call the plan made (create a namespace, delete a RuntimeClass, ...)."""
        if step.call is None:
            return StepOutcome(False, f"step {step.description!r} has no API call", "the cluster is unchanged")
        ctx = make_context(self.target, timeout=min(30.0, self.remaining()))
        try:
            said = await ctx.call_kube(step.call)
        except KubeError as exc:
            return StepOutcome(False, _one_line(f"{step.description}: {exc.message}"), _NODE_STATES["kube"])
        self.emit("line", str(said), "stdout")
        return StepOutcome(True, "")

    async def step_test_pod(self, step: Step) -> StepOutcome:
        from checks.model import Status
        from checks.workload import run_test_pod

        limit = min(TEST_POD_TIMEOUT_S, self.remaining())
        ctx = make_context(self.target, timeout=limit + 15.0)
        outcome = await run_test_pod(ctx, on_line=self.line("stdout"), timeout=limit)
        if outcome.status is Status.PASS:
            self.state.notes.append(outcome.summary)
            return StepOutcome(True, "")
        return StepOutcome(False, _one_line(outcome.summary), _NODE_STATES["test-pod"])


async def run_action(plan: Plan, target: Target, emit: Callable[[ActionEvent], None], *,
                     timeout: float = DEFAULT_TIMEOUT_S, audit: AuditLog | None = None, read_only: bool = False,
                     upgrade_timeout: float | None = None, poll_interval: float = 1.0) -> ActionResult:
    """Run the plan's steps in order; see the module docstring. Re-raises cancellation after recording it."""
    action_id = new_action_id(plan.stage)
    if read_only and plan.mutating:
        result = ActionResult(ActionStatus.FAILED, f"read-only mode: the {plan.stage} action changes the cluster and was not run")
        if audit is not None:
            audit.record(action_id, "result", f"refused: {result.reason}", stage=plan.stage)
        return result
    if audit is None or not plan.mutating:
        return await _run_planned(plan, target, emit, action_id, timeout, audit, upgrade_timeout, poll_interval)
    from contextlib import ExitStack

    from checks.lock import NodeBusy, node_action_lock

    with ExitStack() as held:
        try:
            # one action per node across processes: the lock lives in the state directory, beside the audit log
            held.enter_context(node_action_lock(audit.path.parent, target.talos.node, stage=plan.stage))
        except (NodeBusy, OSError) as busy:
            reason = str(busy) if isinstance(busy, NodeBusy) else \
                f"cannot take node {target.talos.node}'s action lock in {audit.path.parent}: {busy.strerror or busy}"
            result = ActionResult(ActionStatus.FAILED, _one_line(reason), "nothing was run")
            audit.record(action_id, "result", f"refused: {result.reason}", stage=plan.stage)
            return result
        return await _run_planned(plan, target, emit, action_id, timeout, audit, upgrade_timeout, poll_interval)
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow


async def _run_planned(plan: Plan, target: Target, emit: Callable[[ActionEvent], None], action_id: str,
                       timeout: float, audit: AuditLog | None, upgrade_timeout: float | None,
                       poll_interval: float) -> ActionResult:
    runner = _Runner(plan, target, emit, audit, action_id, time.monotonic() + timeout, upgrade_timeout,
                     poll_interval)
    runner.record("plan", plan.describe())
    try:
        with anyio.move_on_after(timeout) as scope:
            outcome = await runner.run()
    except anyio.get_cancelled_exc_class():
        step = runner.state.current_step
        node_state = _NODE_STATES.get(step_role(step), "") if step is not None else "nothing was run"
        where = f" during: {step.shown}" if step is not None else ""
        runner.emit("phase", f"cancelled — {node_state}")
        runner.record("result", f"cancelled{where}; {node_state}")
        raise
    if scope.cancelled_caught:
        step = runner.state.current_step
        node_state = _NODE_STATES.get(step_role(step), "") if step is not None else ""
        where = f" (at: {step.shown})" if step is not None else ""
        result = ActionResult(ActionStatus.TIMED_OUT, _one_line(f"the action did not finish within {timeout:g}s{where}"),
                              node_state)
    elif outcome.ok:
        result = ActionResult(ActionStatus.OK, outcome.reason)
    else:
        result = ActionResult(ActionStatus.FAILED, outcome.reason, outcome.node_state)
    runner.record("result", f"{result.status}: {result.reason}" + (f" — {result.node_state}" if result.node_state else ""))
    return result
