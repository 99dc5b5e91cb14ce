"""`talos-gpu check -o markdown`: an incident note an on-call engineer pastes into a ticket.

Node, Talos and driver versions, the enablement path, each stage with its status, the root cause with its
evidence quoted and the fix command, and when the check ran. Everything in it that came from the cluster,
a tool or a file is untrusted: in running text and table cells it is escaped so that it cannot open
Markdown or HTML structure; evidence and commands go into fenced blocks whose fence is longer than any
run of backticks inside them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from checks.model import Report, Status

# Characters that start Markdown or HTML structure inside a line: emphasis, code, links and images (the
# brackets), HTML and entities, strike-through, table cells. Parentheses need no escape once brackets are.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")
# What makes a block of a line's start: a heading, a list item, a quote, a setext underline.
_BLOCK_START = re.compile(r"^([#\-+=])")
_LIST_NUMBER = re.compile(r"^(\d+)([.)])(?=\s|$)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def inline(text: str) -> str:
    """Untrusted text as one line of Markdown that shows exactly as it reads: no link, no emphasis, no
    HTML, no cell break; control characters and line breaks become spaces."""
    flat = " ".join(_CONTROL.sub(" ", str(text)).split())
    escaped = _BLOCK_START.sub(r"\\\1", _SPECIAL.sub(r"\\\1", flat))
    return _LIST_NUMBER.sub(r"\1\\\2", escaped)


def code(text: str) -> str:
    """Untrusted text as an inline code span it cannot close (and, in a table, a `|` that cannot end the
    cell: GitHub's tables read `\\|` as a `|` even inside a code span)."""
    flat = " ".join(_CONTROL.sub(" ", str(text)).split()).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def fenced(lines: list[str], info: str = "text") -> str:
    """Untrusted lines in a fenced code block that they cannot close."""
    body = [_CONTROL.sub(" ", line).replace("\r", " ").rstrip() for line in lines]
    longest = max((len(run) for line in body for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return "\n".join([fence + info, *body, fence])


def _fact_value(report: Report, name: str) -> Any:
    fact = report.facts.get(name)
    return fact.value if fact is not None and fact.ok else None


def talos_version(report: Report, data: dict[str, Any]) -> str | None:
    if data.get("talos_version"):
        return str(data["talos_version"])
    version = _fact_value(report, "talos_version")
    return str(version.server_tag) if version is not None and getattr(version, "server_tag", None) else None


def driver_version(report: Report) -> str | None:
    driver = _fact_value(report, "driver_version")
    if driver is None or not getattr(driver, "version", None):
        return None
    flavor = getattr(driver, "flavor", "")
    return f"{driver.version} ({flavor})" if flavor else str(driver.version)


def incident_note(report: Report, *, checked_at: datetime) -> str:
    data = report.to_json()
    cause = report.root_cause
    passing = report.overall is Status.PASS
    verdict = "every stage passes" if passing else f"GPUs not usable, root cause {code(cause.stage)}" \
        if cause is not None else "a stage fails"
    node = code(report.node)
    if report.kube_node:
        node += f" (Kubernetes node {code(report.kube_node)})"
    rows = [("Node", node),
            ("Talos", inline(talos_version(report, data) or "unknown (the Talos API did not answer)")),
            ("NVIDIA driver", inline(driver_version(report) or "not loaded")),
            ("Path", inline(str(data.get("path") or "device-plugin"))),
            ("Checked", checked_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()),
            ("Result", ("✔ " if passing else "✘ ") + verdict)]
    out = [f"### talos-gpu check: {'pass' if passing else 'fail'} on node {inline(report.node)}", "",
           "| | |", "|---|---|"]
    out += [f"| {key} | {value} |" for key, value in rows]
    if cause is not None:
        root = report.stage(cause.stage)
        out += ["", f"#### Root cause: {code(cause.stage)}", "", inline(cause.summary)]
        if root.evidence:
            out += ["", "Evidence:", "", fenced(list(root.evidence))]
        if cause.remediation:
            out += ["", "Fix:", "", fenced([cause.remediation], "sh")]
        if cause.advice:
            out += ["", inline(cause.advice)]
    out += ["", "#### Stages", "", "| stage | status | summary |", "|---|---|---|"]
    for stage in report.stages:
        summary = inline(stage.summary)
        if stage.blocked_by and stage.blocked_by not in stage.summary:
            summary += f" (blocked by {code(stage.blocked_by)})"
        out.append(f"| {code(stage.id)} | {stage.status.icon} {stage.status.value} | {summary} |")
    out += ["", f"{len(report.stages)} stages checked in {report.wall_ms} ms by talos-gpu {_version()}.", ""]
    return "\n".join(out)


def _version() -> str:
    from tui.process import version

    return version()
