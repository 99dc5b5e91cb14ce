"""`check -o markdown`: the incident note, read back with a real Markdown parser (markdown-it, which Rich
brings), so that what the cluster said cannot open a link, HTML, a cell or close a code block."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from markdown_it import MarkdownIt

from checks.model import ProbeResult, Report, RootCause, StageResult, Status
from tests.test_cli import run_cli
from tui.incident import code, fenced, incident_note, inline

CHECKED = datetime(2026, 12, 7, 3, 4, 5, tzinfo=UTC)
HOSTILE = "pod log: ``` <img src=x onerror=alert(1)> [click](http://evil) | *bold* \x1b[31mred\n# heading"


def parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def hostile_report() -> Report:
    stages = [
        StageResult("cluster", "Cluster", Status.PASS, "Node | gpu-node-1 is Ready"),
        StageResult("device-plugin", "Device plugin", Status.FAIL, "plugin crashed: " + HOSTILE,
                    evidence=[HOSTILE, "````", "kubectl get ds: desired 1, ready 0"],
                    remediation="helm upgrade --install x y -f `values.yaml`"),
        StageResult("gpu-resources", "GPU resources", Status.BLOCKED, "no nvidia.com/gpu", blocked_by="device-plugin"),
    ]
    return Report("10.0.0.5", "gpu-node-1", stages, RootCause("device-plugin", stages[1].summary,
                                                               stages[1].remediation),
                  facts={"talos_version": ProbeResult("talos_version", "talosctl version", value=None, error="x")})


def test_untrusted_text_cannot_make_markdown_structure() -> None:
    note = incident_note(hostile_report(), checked_at=CHECKED)
    tokens = parser().parse(note)
    kinds = {t.type for t in tokens}
    assert "html_block" not in kinds and "html_inline" not in kinds
    inline_children = [c for t in tokens if t.children for c in t.children]
    assert not [c for c in inline_children if c.type in ("link_open", "image", "html_inline", "em_open", "strong_open")]
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["talos-gpu check: fail on node 10.0.0.5", "Root cause: `device-plugin`", "Stages"]
    fences = [t for t in tokens if t.type == "fence"]
    assert [f.info for f in fences] == ["text", "sh"]
    evidence = fences[0].content.splitlines()
    assert len(evidence) == 4  # the hostile line, its own line break folded, the fence-like line, the ds line
    assert evidence[2] == "````" and evidence[3] == "kubectl get ds: desired 1, ready 0"
    assert "\x1b" not in note
    assert fences[1].content == "helm upgrade --install x y -f `values.yaml`\n"
    # the stages table: exactly three columns in every row, whatever the summaries hold
    rows = [t for t in tokens if t.type == "tr_open"]
    cells_per_row = []
    for index, token in enumerate(tokens):
        if token.type == "tr_open":
            cells = 0
            for follower in tokens[index + 1:]:
                if follower.type == "tr_close":
                    break
                cells += follower.type in ("td_open", "th_open")
            cells_per_row.append(cells)
    assert len(rows) == 7 + 4  # the facts table (header + 6) and the stages table (header + 3)
    assert cells_per_row[:7] == [2] * 7 and cells_per_row[7:] == [3] * 4


def test_inline_helpers_keep_the_text_readable() -> None:
    assert inline("nvidia.com/gpu: 2 (expected 2)") == "nvidia.com/gpu: 2 (expected 2)"
    assert inline("a|b <c>") == "a\\|b \\<c\\>"
    assert inline("# not a heading") == "\\# not a heading"
    assert code("ab`c") == "`` ab`c ``"
    assert fenced(["```"]).startswith("````text\n")


def test_the_note_of_a_lab_failure_has_what_a_ticket_needs(lab: Any) -> None:
    handle = lab("no-runtimeclassname")
    result = run_cli(handle.env, "check", "-o", "markdown")
    assert result.returncode == 1, result.stderr
    note = result.stdout
    for words in ("| Node | `10.5.0.2` (Kubernetes node `gpu-node-1`) |", "| Talos | v1.11.5 |",
                  "| NVIDIA driver | 570.172.08 (open) |", "| Path | device-plugin |", "| Checked | 20",
                  "#### Root cause: `device-plugin`", "DaemonSet pod template: runtimeClassName not set",
                  "```sh\n", "helm upgrade --install nvidia-device-plugin", "| `gpu-resources` | ⊘ blocked |",
                  "| `gpu-workload` | – skipped |"):
        assert words in note, words
    tokens = parser().parse(note)
    assert [t.info for t in tokens if t.type == "fence"] == ["text", "sh"]


def test_a_healthy_note_says_so_without_a_root_cause(lab: Any) -> None:
    result = run_cli(lab("healthy").env, "check", "-o", "markdown")
    assert result.returncode == 0, result.stderr
    assert "✔ every stage passes" in result.stdout and "Root cause" not in result.stdout
