"""The command line a new user meets: --version, -o formats, a closed pipe, --readonly, --infra-repo, and an
unknown scenario refused before anything starts (INTERFACE.md, issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.scenarios import SCENARIOS
from tests.paths import REPO
from tui.cli import SCENARIO_NAMES, build_parser, target_from_args


def run_cli(env: dict[str, str], *args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    cwd = kwargs.pop("cwd", REPO)
    options: dict[str, Any] = {"capture_output": True, "stdin": subprocess.DEVNULL} | kwargs
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=cwd,
                          env={**os.environ, **env}, text=True, timeout=timeout, **options)


def without_durations(report: dict[str, Any]) -> dict[str, Any]:
    return {**report, "stages": [{k: v for k, v in s.items() if k != "duration_ms"} for s in report["stages"]]}


def test_version_prints_the_installed_version() -> None:
    result = run_cli({}, "--version")
    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"talos-gpu {expected}\n"


def test_the_cli_knows_every_lab_scenario() -> None:
    assert list(SCENARIO_NAMES) == list(SCENARIOS)


@pytest.mark.parametrize("command", ["demo", "lab"])
def test_an_unknown_scenario_is_refused_before_anything_starts(tmp_path: Path, command: str) -> None:
    result = run_cli({"TMPDIR": str(tmp_path)}, command, "--scenario", "nope", timeout=20)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("talos-gpu: "), result.stderr
    assert "'nope'" in lines[0]
    for name in SCENARIOS:
        assert name in lines[0]
    assert list(tmp_path.iterdir()) == []  # no lab state directory was made


def test_readonly_is_accepted_as_well_as_read_only() -> None:
    parser = build_parser()
    for argv in (["--readonly"], ["--read-only"], ["check", "--readonly"], ["demo", "--readonly"]):
        assert parser.parse_args(argv).read_only is True, argv
    assert parser.parse_args(["check"]).read_only is False


def test_json_and_another_format_at_once_is_one_line_and_exit_2() -> None:
    result = run_cli({}, "check", "--json", "-o", "yaml", timeout=20)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "two formats" in result.stderr


def test_an_unknown_format_is_refused() -> None:
    result = run_cli({}, "check", "-o", "xml", timeout=20)
    assert result.returncode == 2 and "xml" in result.stderr and "markdown" in result.stderr


def test_json_yaml_and_o_json_say_the_same(lab: Any) -> None:
    handle = lab("runtimeclass-missing")
    outputs = {name: run_cli(handle.env, "check", *args) for name, args in
               (("--json", ["--json"]), ("-o json", ["-o", "json"]), ("-o yaml", ["-o", "yaml"]))}
    for name, result in outputs.items():
        assert result.returncode == 1, (name, result.stderr)
    as_json = json.loads(outputs["--json"].stdout)
    assert as_json["root_cause"]["stage"] == "runtimeclass"
    assert without_durations(json.loads(outputs["-o json"].stdout)) == without_durations(as_json)
    assert without_durations(yaml.safe_load(outputs["-o yaml"].stdout)) == without_durations(as_json)


@pytest.mark.parametrize(("scenario", "code"), [("healthy", 0), ("plugin-missing", 1)])
@pytest.mark.parametrize("output", ["table", "json"])
def test_a_reader_that_goes_away_is_not_a_failing_stage(lab: Any, scenario: str, code: int, output: str) -> None:
    """`check | head -1`, with the pipe already closed when the report is written: no traceback, no message,
    and the exit code is the report's (0 all pass, 1 a stage fails), not an error."""
    handle = lab(scenario)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = run_cli(handle.env, "check", "-o", output, stdout=write_end, stderr=subprocess.PIPE,
                         capture_output=False)
    finally:
        os.close(write_end)
    assert result.stderr == "", result.stderr
    assert result.returncode == code


def test_infra_repo_overrides_the_profile(lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handle = lab("healthy")
    profile = tmp_path / "profile.yaml"
    profile.write_text("infra_repo: from-the-profile\n")
    parser = build_parser()
    base = ["--talosconfig", handle.env["TALOSCONFIG"], "--kubeconfig", handle.env["KUBECONFIG"],
            "--profile", str(profile)]
    env = dict(handle.env)
    assert target_from_args(parser.parse_args(base), env=env).profile.infra_repo == tmp_path / "from-the-profile"
    monkeypatch.chdir(tmp_path)
    target = target_from_args(parser.parse_args([*base, "--infra-repo", "gitops/gpu"]), env=env)
    assert target.profile.infra_repo == tmp_path / "gitops" / "gpu"


def test_infra_repo_that_is_a_file_is_one_line(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = run_cli(handle.env, "check", "--infra-repo", str(not_a_dir), timeout=30)
    assert result.returncode == 2
    assert result.stderr == f"talos-gpu: --infra-repo {not_a_dir}: is not a directory\n"


def test_web_without_textual_serve_is_one_line() -> None:
    code = ("import sys; sys.modules['textual_serve'] = None; from tui.cli import main; "
            "sys.exit(main(['demo', '--web', '--port', '8799']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert result.stderr == "talos-gpu: --web needs textual-serve: pip install 'talos-gpu[web]'\n"


@pytest.mark.parametrize(("argv", "words"), [(["demo", "--port", "8000"], "--port is for --web"),
                                             (["demo", "--web", "--port", "70000"], "from 1 to 65535")])
def test_bad_web_options_are_one_line(argv: list[str], words: str) -> None:
    result = run_cli({}, *argv, timeout=20)
    assert result.returncode == 2 and words in result.stderr and result.stderr.count("\n") == 1


def test_the_docs_name_every_scenario_and_output_format() -> None:
    text = (REPO / "docs" / "interface.md").read_text()
    assert [name for name in SCENARIO_NAMES if f"`{name}`" not in text] == []
    assert all(f"`{fmt}`" in text for fmt in ("table", "json", "yaml", "markdown"))
