"""The result model shared by the engine, `talos-gpu check` and the TUI (one source of truth)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    BLOCKED = "blocked"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"

    @property
    def ok(self) -> bool:
        """Counts as success for the exit code (INTERFACE.md)."""
        return self in (Status.PASS, Status.WARN, Status.SKIPPED)

    @property
    def icon(self) -> str:
        return STATUS_ICONS[self]


STATUS_ICONS: dict[Status, str] = {
    Status.PASS: "✔",
    Status.WARN: "▲",
    Status.FAIL: "✘",
    Status.BLOCKED: "⊘",
    Status.UNKNOWN: "?",
    Status.SKIPPED: "–",
}


@dataclass(frozen=True)
class ProbeResult:
    """One gathered fact: the parsed value of a talosctl/helm call or an API read, or why it failed.

    `value` is whatever the probe produces (a parser's typed value, a Kubernetes object dict, ...).
    `error` is a one-line reason when the probe could not produce it; `missing` means the thing asked
    for does not exist (a file absent, a 404), which is a fact, not a failure of the check.
    """

    name: str
    source: str  # the command or API call, as shown in evidence ("talosctl get extensions")
    value: Any = None
    error: str | None = None
    missing: bool = False
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing


@dataclass
class Judgement:
    """What a stage's judge says about its OWN facts (before blocked propagation)."""

    status: Status
    summary: str
    evidence: list[str] = field(default_factory=list)
    remediation: str | None = None
    advice: str | None = None
    findings: tuple[Any, ...] = ()  # typed findings (checks/findings.py) the panes render; never in the JSON


@dataclass
class StageResult:
    id: str
    title: str
    status: Status
    summary: str
    evidence: list[str] = field(default_factory=list)
    remediation: str | None = None
    blocked_by: str | None = None
    duration_ms: int = 0
    advice: str | None = None
    findings: tuple[Any, ...] = ()  # the judge's typed findings (checks/findings.py); not part of the JSON

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "remediation": self.remediation,
            "advice": self.advice,
            "blocked_by": self.blocked_by,
            "duration_ms": self.duration_ms,
        }


@dataclass(frozen=True)
class RootCause:
    stage: str
    summary: str
    remediation: str | None
    advice: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "summary": self.summary, "remediation": self.remediation,
                "advice": self.advice}


@dataclass
class Report:
    node: str
    kube_node: str | None
    stages: list[StageResult]
    root_cause: RootCause | None
    facts: dict[str, ProbeResult] = field(default_factory=dict)
    wall_ms: int = 0
    path: str = "device-plugin"  # the enablement path the stages were judged against (checks/paths/)
    talos_version: str | None = None  # the Talos version the node runs (talosctl version), when it answered

    @property
    def overall(self) -> Status:
        return Status.PASS if all(s.status.ok for s in self.stages) else Status.FAIL

    @property
    def exit_code(self) -> int:
        return 0 if self.overall is Status.PASS else 1

    def stage(self, stage_id: str) -> StageResult:
        for result in self.stages:
            if result.id == stage_id:
                return result
        raise KeyError(stage_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "node": self.node,
            "talos_version": self.talos_version,
            "path": self.path,
            "kube_node": self.kube_node,
            "overall": self.overall.value,
            "root_cause": self.root_cause.to_json() if self.root_cause else None,
            "stages": [s.to_json() for s in self.stages],
        }
