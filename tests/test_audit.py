"""checks.audit: JSON lines, redacted, fsynced per line, 0600, survives SIGTERM of the writer."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checks.audit import AuditLog, default_audit_path, read_audit
from checks.redact import REDACTED, REDACTOR
from tests.paths import REPO

PLANTED = "audit-SECRET-MARKER-5f4e3d2c1b"


def test_records_are_json_lines_with_the_fields(tmp_path: Path) -> None:
    path = tmp_path / "state" / "talos-gpu" / "audit.log"
    with AuditLog(path) as audit:
        audit.record("a1", "plan", "1. talosctl upgrade --image x", stage="extensions")
        audit.record("a1", "line", "[stderr] watching nodes: [10.5.0.2]", stage="extensions")
        audit.record("a1", "result", "ok: done", stage="extensions")
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert set(first) == {"ts", "action", "stage", "kind", "text"}
    assert first["kind"] == "plan" and first["action"] == "a1" and first["stage"] == "extensions"
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert [r["kind"] for r in read_audit(path)] == ["plan", "line", "result"]


def test_appends_and_keeps_mode_0600_in_a_0700_dir(tmp_path: Path) -> None:
    path = tmp_path / "new" / "audit.log"
    AuditLog(path).record("a", "step", "one")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.chmod(0o644)  # a file made wider by hand is narrowed again on the next open
    AuditLog(path).record("b", "step", "two")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [r["action"] for r in read_audit(path)] == ["a", "b"]


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        AuditLog(tmp_path / "a.log").record("a", "chat", "x")


def test_every_line_is_redacted(tmp_path: Path) -> None:
    REDACTOR.add([PLANTED])
    path = tmp_path / "audit.log"
    AuditLog(path).record("a", "line", f"token={PLANTED} and Authorization: Bearer abcdefghijklmnop")
    text = path.read_text()
    assert PLANTED not in text
    assert "abcdefghijklmnop" not in text
    assert REDACTED in json.loads(text)["text"]


def test_default_path_honours_xdg_state_home(tmp_path: Path) -> None:
    assert default_audit_path({"XDG_STATE_HOME": str(tmp_path), "HOME": "/nowhere"}) == \
        tmp_path / "talos-gpu" / "audit.log"
    home = {"HOME": str(tmp_path)}
    assert default_audit_path(home) == tmp_path / ".local" / "state" / "talos-gpu" / "audit.log"
    # a relative XDG_STATE_HOME is invalid per the spec and ignored
    assert default_audit_path({"XDG_STATE_HOME": "rel", "HOME": str(tmp_path)}) == \
        tmp_path / ".local" / "state" / "talos-gpu" / "audit.log"


def test_sigterm_of_the_writer_keeps_every_record_written_so_far(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    code = (
        "import sys, time\n"
        "from checks.audit import AuditLog\n"
        f"log = AuditLog({str(path)!r})\n"
        "for i in range(25):\n"
        "    log.record('act', 'line', f'line {i}')\n"
        "print('written', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "written"
        os.kill(child.pid, signal.SIGTERM)
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
    time.sleep(0.05)
    texts = [r["text"] for r in read_audit(path)]
    assert texts == [f"line {i}" for i in range(25)]
