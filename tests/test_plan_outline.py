"""Plan.outline is what both text renderings of a plan show: the audit log's (describe) and enable's console."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from checks.actions.model import FileChange, Plan, Step
from tui.enable import render_plan


def _plan() -> Plan:
    files = (FileChange(Path("/infra/a.yaml"), "a.yaml", "x", "create", ""),
             FileChange(Path("/infra/b.yaml"), "b.yaml", "x", "differs", "--- b.yaml\n+++ b.yaml\n-old-line\n+new-line\n"))
    steps = (Step("command", "patch the machine config", ("talosctl", "patch"), "talosctl patch mc --patch @a.yaml"),
             Step("follow-reboot", "wait for the node to come back"))
    return Plan("extensions", "Install the NVIDIA extensions", steps, files, True, "node-1", ("a warning [b]x[/b]",),
                "the preview", schematic_id="0123abcd", installer_image="factory.example/installer/0123abcd:v1.11.5")


def test_every_line_of_the_outline_reaches_both_renderings() -> None:
    plan = _plan()
    outline = plan.outline()
    assert {line.kind for line in outline} == {"header", "schematic", "installer", "file", "diff", "warning", "step"}
    described = plan.describe()
    out = io.StringIO()
    render_plan(plan, Console(file=out, width=200, no_color=True, highlight=False), preview=True)
    shown = out.getvalue()
    for line in outline:
        for text in line.text.rstrip("\n").splitlines():
            assert text in described, (line, described)
            assert text in shown, (line, shown)
    assert "1. talosctl patch mc --patch @a.yaml" in described and "2. wait for the node to come back" in shown
    assert "the preview" in shown and "the preview" not in described  # the preview is the console's, on request
