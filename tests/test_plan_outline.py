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


def _modal_text(plan: Plan) -> str:
    from tui.screens.confirm import plan_renderable, plan_title

    out = io.StringIO()
    console = Console(file=out, width=200, no_color=True, highlight=False)
    console.print(plan_title(plan))
    console.print(plan_renderable(plan))
    return out.getvalue()


def test_every_line_of_the_outline_reaches_the_confirm_modal() -> None:
    plan = _plan()
    shown = _modal_text(plan)
    for line in plan.outline():
        for text in line.text.rstrip("\n").splitlines():
            assert text in shown, (line, shown)
    # the modal's order: the reboot banner and the warnings first, the steps with their descriptions, the files
    assert shown.index("REBOOTS THE NODE") < shown.index("a warning") < shown.index("Steps") < shown.index("Files")
    assert "1. patch the machine config\n   $ talosctl patch mc --patch @a.yaml" in shown
    assert "2. wait for the node to come back" in shown
    assert "[b]x[/b]" in shown  # the plan's text is text, never markup


def test_the_modal_names_the_schematic_once_when_the_preview_has_it() -> None:
    plan = _plan()
    with_preview = Plan(plan.stage, plan.title, plan.steps, plan.files, plan.reboots, plan.confirm_word,
                        plan.warnings, "schematic id: 0123abcd\ninstaller image: factory.example/installer/0123abcd:v1.11.5",
                        schematic_id=plan.schematic_id, installer_image=plan.installer_image)
    shown = _modal_text(with_preview)
    assert shown.count("0123abcd") == 2  # the preview's two lines; no "Image" section repeats them
    assert "Image\n" not in shown
    assert "Image\n" in _modal_text(plan)  # without them in the preview, the outline's lines are the modal's
