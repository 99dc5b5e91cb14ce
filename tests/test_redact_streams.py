"""Redaction that holds across lines (issue 15): a private key's body lines, a credential whose value
is on the next line (pretty JSON, a YAML block scalar), and the usual credential key spellings, in
every stream (streamed action output, the audit log, `check`'s quoted stderr, an exec plugin's
stderr). The bodies planted here are unknown to the redactor (not in any config file): only the
shape can catch them.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from checks.actions import AuditLog, plan_action, run_action
from checks.audit import read_audit
from checks.redact import REDACTED, Redactor, StreamRedactor
from tests.test_faults_talosctl import lab_target, run_cli, sweep

BODY = ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7", "streamSECRETbodyLineTwo0123456789abcdefABCDEF",
        "plain words in a key body line"]
PEM = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(BODY) + "\n-----END PRIVATE KEY-----\n"
SPREAD_JSON = '{\n  "client_secret":\n    "GOCSPX-spreadJsonSecret01",\n  "kind": "kept"\n}\n'
BLOCK_YAML = "creds:\n  private_key: |\n    blockScalarSecretLine1\n    blockScalarSecretLine2\n  name: kept\n"
ISSUE_LINE = "refresh_token=abcd12345678 client_secret=GOCSPX-abcd aws_secret_access_key=abcd/12345678"
SECRETS = [*BODY, "GOCSPX-spreadJsonSecret01", "blockScalarSecretLine1", "blockScalarSecretLine2",
           "abcd12345678", "GOCSPX-abcd", "abcd/12345678"]


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} leaks {secret!r}"


# ---- the shapes --------------------------------------------------------------------------------


def test_the_issue_line_is_redacted() -> None:
    cleaned = Redactor()(ISSUE_LINE)
    assert cleaned == f"refresh_token={REDACTED} client_secret={REDACTED} aws_secret_access_key={REDACTED}"


@pytest.mark.parametrize("key", [
    "refresh_token", "refresh-token", "refreshToken", "REFRESH_TOKEN", "client_secret", "clientSecret",
    "client-secret", "aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "awsSecretAccessKey", "access_token",
    "accessToken", "api_key", "api-key", "apiKey", "X-API-KEY", "private_key", "privateKey", "private-key",
    "GOOGLE_CLIENT_SECRET", "id_token", "session_token", "passphrase",
])
@pytest.mark.parametrize("form", ["{key}=v4lue-0123456789", "{key}: v4lue-0123456789", '"{key}": "v4lue-0123456789"',
                                  "'{key}': 'v4lue-0123456789'"])
def test_every_usual_key_spelling_is_redacted(key: str, form: str) -> None:
    cleaned = Redactor()(form.format(key=key))
    assert "v4lue-0123456789" not in cleaned and REDACTED in cleaned and key in cleaned


@pytest.mark.parametrize("line", ["tokens: 12345678901", "notoken: abcdefghijk", "the token was rejected; key: value",
                                  "passwords are checked by the server", "api_key_count=3"])
def test_words_that_only_look_like_keys_are_left(line: str) -> None:
    assert Redactor()(line) == line


@pytest.mark.parametrize("text", [PEM, SPREAD_JSON, BLOCK_YAML, ISSUE_LINE + "\n"])
def test_whole_texts_spread_over_lines_are_redacted(text: str) -> None:
    cleaned = Redactor()(f"before\n{text}after\n")
    assert_no_secret(cleaned, "whole text")
    assert cleaned.startswith("before\n") and cleaned.endswith("after\n")
    if "kept" in text:
        assert "kept" in cleaned


@pytest.mark.parametrize("text", [PEM, SPREAD_JSON, BLOCK_YAML, ISSUE_LINE + "\n", PEM.rsplit("-----END", 1)[0]])
def test_a_stream_redacted_line_by_line_holds_across_lines(text: str) -> None:
    stream = StreamRedactor(Redactor())
    lines = [stream(line) for line in f"before\n{text}after".splitlines()]
    assert_no_secret("\n".join(lines), "stream")
    assert lines[0] == "before"
    assert lines[-1] in ("after", REDACTED)  # a PEM block cut before its END swallows the rest, by design
    if "kept" in text:
        assert any("kept" in line for line in lines)


def test_streams_keep_their_own_state() -> None:
    """stdout inside a PEM block does not make stderr's ordinary lines vanish."""
    out, err = StreamRedactor(Redactor()), StreamRedactor(Redactor())
    assert out("-----BEGIN EC PRIVATE KEY-----") == REDACTED
    assert err("Error: UPGRADE FAILED") == "Error: UPGRADE FAILED"
    assert out(BODY[1]) == REDACTED
    assert out("-----END EC PRIVATE KEY-----") == REDACTED
    assert out("after the key") == "after the key"


# ---- through the real paths -------------------------------------------------------------------------


HOSTILE_OUTPUT = f"Release notes\n{PEM}{SPREAD_JSON}{BLOCK_YAML}{ISSUE_LINE}\nError: UPGRADE FAILED: boom\n"


def test_enable_yes_streams_no_key_body_to_stdout_or_the_audit_log(lab: Any, tmp_path: Path) -> None:
    handle = lab("plugin-missing", faults={"helm_exit": {"only": "upgrade", "code": 1, "stderr": HOSTILE_OUTPUT}})
    infra = tmp_path / "infra"
    infra.mkdir()
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"infra_repo: {infra}\n")
    env = {**handle.env, "XDG_STATE_HOME": str(tmp_path / "state"), "COLUMNS": "2000"}
    result = run_cli(env, "enable", "--yes", "--profile", str(profile), "--timeout", "15", timeout=90)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr
    assert "UPGRADE FAILED: boom" in result.stdout and "Release notes" in result.stdout
    audit = tmp_path / "state" / "talos-gpu" / "audit.log"
    records = read_audit(audit)
    assert any(r["kind"] == "line" and "Release notes" in r["text"] for r in records)
    assert records[-1]["kind"] == "result" and "UPGRADE FAILED: boom" in records[-1]["text"]
    for where, text in (("stdout", result.stdout), ("stderr", result.stderr), ("audit", audit.read_text())):
        assert_no_secret(text, where)


def test_action_events_the_tui_shows_carry_no_key_body(lab: Any, tmp_path: Path) -> None:
    """The TUI's action log (and its saved file) shows these events: the same stream redaction."""
    handle = lab("plugin-missing", faults={"helm_exit": {"only": "upgrade", "code": 1, "stderr": HOSTILE_OUTPUT}})
    target = lab_target(handle)
    report, _ = sweep(target)
    events: list[Any] = []

    async def go() -> Any:
        plan = await plan_action("device-plugin", target, report)
        with AuditLog(tmp_path / "audit.log") as audit:
            return await run_action(plan, target, events.append, audit=audit)

    result = anyio.run(go)
    assert result.status == "failed" and "UPGRADE FAILED: boom" in result.reason
    shown = "\n".join(event.text for event in events)
    assert "Release notes" in shown
    assert_no_secret(shown + result.reason + (tmp_path / "audit.log").read_text(), "action events")


def test_check_never_quotes_a_key_body_as_the_last_stderr_line(lab: Any) -> None:
    cut = "rpc error: the server sent its key\n-----BEGIN PRIVATE KEY-----\n" + "\n".join(BODY) + "\n"
    handle = lab("healthy", faults={"talosctl_exit": {"only": "version", "code": 1, "stderr": cut}})
    result = run_cli(handle.env, "check", "--json", "--timeout", "10")
    assert result.returncode == 1 and result.stderr == "", result.stderr
    cluster = {s["id"]: s for s in json.loads(result.stdout)["stages"]}["cluster"]
    assert cluster["status"] == "fail" and REDACTED in cluster["summary"]
    assert_no_secret(result.stdout, "check --json")


def test_a_failing_exec_plugin_printing_a_key_and_a_client_secret_is_redacted(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    plugin = tmp_path / "plugin"
    printed = f"{ISSUE_LINE}\n{PEM}error: login failed"
    plugin.write_text(f"#!/bin/sh\ncat >&2 <<'EOF'\n{printed}\nEOF\nexit 1\n")
    plugin.chmod(0o755)
    kube = Path(handle.state_dir) / "kubeconfig-exec-key"
    kube.write_text(re.sub(r"    token: \S+", textwrap.indent(textwrap.dedent(f"""\
        exec:
          apiVersion: client.authentication.k8s.io/v1
          command: {plugin}
          interactiveMode: Never"""), "    "), Path(handle.kubeconfig).read_text()))
    result = run_cli({**handle.env, "KUBECONFIG": str(kube)}, "check", "--json", "--timeout", "10")
    assert result.returncode == 1, result.stderr
    cluster = {s["id"]: s for s in json.loads(result.stdout)["stages"]}["cluster"]
    assert cluster["status"] == "fail" and "credential plugin failed" in cluster["summary"]
    assert_no_secret(result.stdout + result.stderr, "check with a failing exec plugin")


ADVERSARIAL = ["a." * 50000, "token." * 20000, "a-" * 50000, "aB" * 50000, " token:" * 20000,
               "x: |\n" + "  y\n" * 30000, '"a":' * 30000]


def test_adversarial_lines_do_not_hang_the_redactor() -> None:
    """A hang guard, not a speed measurement: a 100 KB dotted word once took the key pattern quadratic
    time (~20 minutes); each text here must come back, redacted, long before the subprocess limit."""
    import subprocess
    import sys

    from tests.paths import REPO

    code = ("import sys\nfrom checks.redact import Redactor, StreamRedactor\n"
            "from tests.test_redact_streams import ADVERSARIAL as texts\n"
            "redactor = Redactor()\nfor text in texts:\n    redactor(text)\n"
            "    stream = StreamRedactor(redactor)\n    [stream(line) for line in text.splitlines()]\n"
            "print('done')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr[-2000:]
