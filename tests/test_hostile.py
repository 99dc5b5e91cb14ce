"""Hostile input (issue 15): what a cluster, a tool or a file says is shown as text, never obeyed.

A hostile string — OSC 52 (write the clipboard), OSC 0 (set the window title), CSI (clear the
screen), the C1 CSI `\\x9b`, a bidi override, and Rich markup (`[/]` raises MarkupError, `[bold red]`
and `[link=…]` would style) — is planted in every field the lab can return: talosctl's stderr (a
fault) and stdout (a shim around the lab's talosctl that edits its answer), helm's stderr, the
Node's name and condition messages (the lab's state), and an API Status message (a fault). Then
`check` (table, coloured table, JSON), `enable --dry-run` and the TUI (screenshot, saved log, F8
file) are scanned: no raw control character, no markup applied, no MarkupError, no traceback; the
escapes show as visible text.
"""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from checks.model import Status
from checks.sanitize import safe, safe_json, text, visible
from tests.test_faults_talosctl import lab_target, run_cli

OSC52 = "\x1b]52;c;UFdORUQ=\x1b\\"
TITLE = "\x1b]0;PWNED\x07"
CSI = "\x1b[2J\x1b[31m"
C1 = "\x9b31m\x9d0;C1-TITLE\x9c"
BIDI = "\u202eevil\u202c"
MARKUP = "[/] [bold red]styled[/bold red] [link=https://evil.example/]click[/link]"
HOSTILE = f"{OSC52} {TITLE} {CSI} {C1} {BIDI} \x7f\x08 {MARKUP}"  # no \r: tools split lines on it

RAW = ("\x1b", "\x9b", "\x9c", "\x9d", "\x07", "\x08", "\x7f", "\u202e", "\u202c")


def assert_inert(output: str, where: str, *, colour: bool = False) -> None:
    """No control character from the hostile string reached `output`; SGR colour codes Rich itself
    writes are allowed when `colour`."""
    scan = output
    if colour:
        import re

        scan = re.sub(r"\x1b\[[0-9;]*m", "", output)  # Rich's own styles; an OSC 8 link would stay and fail
    for raw in RAW:
        assert raw not in scan, f"{where}: raw {raw!r} reached the output"
    assert "\r" not in scan.replace("\r\n", "\n"), f"{where}: a raw carriage return"
    assert "MarkupError" not in output and "Traceback" not in output and "ExceptionGroup" not in output, where


# ---- the sanitiser itself ----------------------------------------------------------------------


def test_visible_makes_every_control_and_escape_visible_and_keeps_text() -> None:
    shown = visible(HOSTILE + "\r")
    for raw in RAW:
        assert raw not in shown
    assert "\\x1b]52;c;UFdORUQ=\\x1b\\" in shown and "\\x9b31m" in shown and "\\u202e" in shown
    assert "\\r" in shown and "\\x7f" in shown
    assert MARKUP in shown  # markup is text: it is left as it is and rendered by Text, never parsed
    assert visible("line one\n\tline two\r\n") == "line one\n\tline two\n"
    assert visible("a\nb", one_line=True) == "a\\nb"
    assert visible("GPU 0: NVIDIA H100 NVL — ✔ ok ‹redacted›") == "GPU 0: NVIDIA H100 NVL — ✔ ok ‹redacted›"


def test_safe_redacts_then_makes_visible_and_text_is_never_markup() -> None:
    shown = safe(f"token: abcdefgh12345678 {TITLE}")
    assert "abcdefgh12345678" not in shown and "\x1b" not in shown and "‹redacted›" in shown
    rendered = text(f"{MARKUP} {OSC52}", style="bold")
    assert rendered.plain.startswith("[/] [bold red]styled") and not rendered.spans[1:]


def test_safe_json_escapes_c1_del_and_bidi_and_stays_json() -> None:
    document = {"summary": HOSTILE, "name": "gpu-node-1 ✔"}
    dumped = safe_json(document, indent=2)
    for raw in RAW:
        assert raw not in dumped
    assert "✔" in dumped  # ordinary non-ASCII stays readable
    assert json.loads(dumped)["summary"] == HOSTILE.replace("\x1b]52;c;UFdORUQ=", "\x1b]52;c;UFdORUQ=")


# ---- planting ------------------------------------------------------------------------------------


def edit_shim(handle: Any, directory: Path) -> dict[str, str]:
    """$TALOSCTL: the lab's talosctl, with HOSTILE appended to every extension's `version:` and to
    the `Tag:` lines of `version`, as a lying or compromised endpoint would answer."""
    real = Path(handle.bin_dir) / "talosctl"
    shim = directory / "hostile-talosctl"
    shim.write_text(
        f"#!{sys.executable} -S\n"
        "import subprocess, sys\n"
        f"HOSTILE = {HOSTILE!r}\n"
        f"done = subprocess.run([{str(real)!r}, *sys.argv[1:]], capture_output=True, text=True)\n"
        "out = done.stdout\n"
        "if 'extensions' in sys.argv:\n"
        "    out = ''.join(line.rstrip('\\n') + HOSTILE + '\\n' if line.strip().startswith('version:') and\n"
        "                  'nvidia' in line else line for line in out.splitlines(True))\n"
        "sys.stdout.write(out)\n"
        "sys.stderr.write(done.stderr)\n"
        "sys.exit(done.returncode)\n")
    shim.chmod(0o755)
    return {"TALOSCTL": str(shim)}


def hostile_faults() -> dict[str, Any]:
    return {
        "talosctl_exit": {"only": "dmesg", "code": 1, "stderr": f"rpc error: {HOSTILE}"},
        "helm_exit": {"only": "list", "code": 1, "stderr": f"Error: {HOSTILE}"},
        "api_status": {"path_regex": "runtimeclasses", "code": 403, "message": f"forbidden: {HOSTILE}"},
    }


def plant_in_the_node(handle: Any) -> None:
    from lab import state as lab_state

    with lab_state.mutate(handle.state_dir) as state:
        node = state["kube"]["nodes"][0]
        for condition in node["status"].get("conditions", []):
            condition["message"] = f"{condition.get('message', '')} {HOSTILE}"
        node["status"]["nodeInfo"]["kernelVersion"] = f"6.12 {HOSTILE}"


@pytest.fixture
def hostile_lab(lab: Any) -> Any:
    handle = lab("healthy", faults=hostile_faults())
    plant_in_the_node(handle)
    return handle


# ---- check and enable ----------------------------------------------------------------------------


def test_talosctl_stderr_with_osc_52_and_markup_is_shown_as_text_by_check(lab: Any) -> None:
    """The issue's repro: talosctl prints OSC 52, a title and `[/]` on stderr for `version`."""
    handle = lab("healthy", faults={"talosctl_exit": {"code": 1, "stderr": f"rpc error: {HOSTILE}"}})
    result = run_cli({**handle.env, "COLUMNS": "400"}, "check", "--timeout", "10")
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert_inert(result.stdout + result.stderr, "check table")
    assert "\\x1b]52;c;UFdORUQ=" in result.stdout and "[/]" in result.stdout
    coloured = run_cli({**handle.env, "FORCE_COLOR": "1", "COLUMNS": "200"}, "check", "--timeout", "10")
    assert coloured.returncode == 1 and "\x1b[" in coloured.stdout  # colour is on
    assert_inert(coloured.stdout + coloured.stderr, "coloured check table", colour=True)
    as_json = run_cli(handle.env, "check", "--json", "--timeout", "10")
    assert as_json.returncode == 1 and as_json.stderr == ""
    assert_inert(as_json.stdout, "check --json")
    cluster = {s["id"]: s for s in json.loads(as_json.stdout)["stages"]}["cluster"]
    assert "\x1b]52" in cluster["summary"] or "\\x1b]52" in cluster["summary"]


def test_every_field_planted_check_json_and_table_stay_inert(hostile_lab: Any, tmp_path: Path) -> None:
    env = {**hostile_lab.env, **edit_shim(hostile_lab, tmp_path)}
    table = run_cli({**env, "FORCE_COLOR": "1", "COLUMNS": "220"}, "check", "--timeout", "15")
    assert table.returncode in (0, 1), (table.returncode, table.stderr[-2000:])
    assert_inert(table.stdout + table.stderr, "check table", colour=True)
    assert "styled[/bold red]" in table.stdout.replace("\x1b[0m", "")  # the markup shown as text
    result = run_cli(env, "check", "--json", "--timeout", "15")
    assert result.returncode in (0, 1) and result.stderr == "", result.stderr[-2000:]
    assert_inert(result.stdout, "check --json")
    stages = {s["id"]: s for s in json.loads(result.stdout)["stages"]}
    assert stages["runtimeclass"]["status"] == "unknown"  # the 403 with the hostile message


def test_enable_dry_run_with_hostile_fields_prints_text_and_no_exception_group(hostile_lab: Any,
                                                                              tmp_path: Path) -> None:
    env = {**hostile_lab.env, **edit_shim(hostile_lab, tmp_path),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    result = run_cli(env, "enable", "--dry-run", "--timeout", "15")
    assert result.returncode in (0, 1), (result.returncode, result.stderr[-2000:])
    assert_inert(result.stdout + result.stderr, "enable --dry-run")
    assert "Dry run" in result.stdout


def test_enable_dry_run_with_markup_in_talosctl_stderr(lab: Any, tmp_path: Path) -> None:
    """The issue's repro: `rpc error: [/]` made `enable --dry-run` exit 2 with ExceptionGroup."""
    handle = lab("healthy", faults={"talosctl_exit": {"code": 1, "stderr": "rpc error: [/] [bold red]x"}})
    result = run_cli({**handle.env, "XDG_STATE_HOME": str(tmp_path)}, "enable", "--dry-run", "--timeout", "10")
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert_inert(result.stdout + result.stderr, "enable --dry-run")
    assert "rpc error: [/] [bold red]x" in result.stdout


# ---- the TUI -------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_tui_screens_saved_log_and_screenshot_stay_inert(hostile_lab: Any, tmp_path: Path,
                                                               anyio_backend: str) -> None:
    from tui.app import TalosGpuApp

    target = lab_target(hostile_lab, edit_shim(hostile_lab, tmp_path))
    app = TalosGpuApp(target, refresh=0, audit_path=tmp_path / "audit.log", state_dir=tmp_path / "state")
    async with app.run_test(size=(160, 45)) as pilot:
        main = app.main_screen
        deadline = asyncio.get_running_loop().time() + 30
        while main.sweeps_done < 1 or main.sweeping:
            assert asyncio.get_running_loop().time() < deadline, "no sweep finished"
            await pilot.pause(0.05)
        assert main.report is not None and main.report.stage("runtimeclass").status is Status.UNKNOWN
        shown = [app.export_screenshot()]
        main.checklist.focus()
        for _ in range(len(main.settings.stages)):
            await pilot.press("j")
            shown.append(app.export_screenshot())
        for key in ("1", "2", "3", "4"):  # every pane
            await pilot.press(key)
            await pilot.pause(0.1)
            shown.append(app.export_screenshot())
        main.log_line(f"planted {HOSTILE}", "stderr")
        main.action_log.flush()
        await pilot.press("s", "f8")
        await pilot.pause(0.3)
        shown.append(app.export_screenshot())
    joined = "".join(shown)
    assert_inert(joined, "TUI screenshots")
    assert "\\x1b]52" in joined  # the escapes are visible
    files = [*(tmp_path / "state").glob("talos-gpu-log-*.txt"), *(tmp_path / "state").glob("talos-gpu-screenshot-*.svg")]
    assert len(files) == 2, sorted((tmp_path / "state").iterdir())
    for path in files:
        assert_inert(path.read_text(), path.name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert "planted \\x1b]52" in files[0].read_text() or "planted \\x1b]52" in files[1].read_text()


def test_a_hostile_node_name_is_shown_as_text(lab: Any, tmp_path: Path) -> None:
    """A Node name (from `talosctl get nodename` and the API) with markup and escapes: the table title,
    summaries and evidence show it as text; the JSON carries it escaped."""
    from lab import state as lab_state

    handle = lab("healthy")
    name = f"gpu-node-1{TITLE}[bold red]x[/]"
    with lab_state.mutate(handle.state_dir) as state:
        state["talos"]["hostname"] = name
        state["kube"]["nodes"][0]["metadata"]["name"] = name
    env = {**handle.env, "XDG_CACHE_HOME": str(tmp_path), "COLUMNS": "400"}
    table = run_cli({**env, "FORCE_COLOR": "1"}, "check", "--timeout", "10")
    assert table.returncode in (0, 1), table.stderr[-2000:]
    assert_inert(table.stdout + table.stderr, "check table", colour=True)
    assert "gpu-node-1\\x1b]0;PWNED\\x07[bold red]x[/]" in table.stdout.replace("\x1b[0m", "")
    as_json = run_cli(env, "check", "--json", "--timeout", "10")
    assert_inert(as_json.stdout + as_json.stderr, "check --json")
    dry = run_cli({**env, "XDG_STATE_HOME": str(tmp_path / "state")}, "enable", "--dry-run", "--timeout", "10")
    assert dry.returncode in (0, 1), dry.stderr[-2000:]
    assert_inert(dry.stdout + dry.stderr, "enable --dry-run")


def test_hostile_pod_logs_and_events_are_shown_as_text(lab: Any, tmp_path: Path) -> None:
    """The device plugin's log and events (read when it is unhealthy) carry the hostile string."""
    event = {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": [{
        "metadata": {"name": "nvidia-device-plugin.1", "namespace": "kube-system"},
        "involvedObject": {"kind": "Pod", "name": "x", "namespace": "kube-system"},
        "reason": f"Failed{TITLE}", "message": f"Error: {HOSTILE}", "type": "Warning", "count": 1,
        "lastTimestamp": "2026-01-01T00:00:00Z"}]}
    handle = lab("no-runtimeclassname", faults={"api_answer": [
        {"path_regex": "/log$", "body": f"E0101 plugin.go:1] could not load NVML: {HOSTILE}\n"},
        {"path_regex": "/events$", "body": json.dumps(event)}]})
    env = {**handle.env, "COLUMNS": "400", "XDG_STATE_HOME": str(tmp_path / "state")}
    table = run_cli({**env, "FORCE_COLOR": "1"}, "check", "--timeout", "10")
    assert table.returncode == 1, table.stderr[-2000:]
    assert_inert(table.stdout + table.stderr, "check table", colour=True)
    as_json = run_cli(env, "check", "--json", "--timeout", "10")
    assert_inert(as_json.stdout, "check --json")
    assert "PWNED" in as_json.stdout  # the planted text did reach the report, escaped
    dry = run_cli(env, "enable", "--dry-run", "--timeout", "10")
    assert_inert(dry.stdout + dry.stderr, "enable --dry-run")


def test_a_pasted_argument_with_escapes_is_quoted_inert(lab: Any) -> None:
    """argparse quotes an unrecognised argument as it was typed: the one line on stderr is inert."""
    result = run_cli(lab("healthy").env, "check", f"extra{TITLE}{OSC52}")
    assert result.returncode == 2 and result.stdout == ""
    assert_inert(result.stderr, "argparse error")
    assert result.stderr.startswith("talos-gpu: unrecognized arguments: extra\\x1b]0;PWNED\\x07")
