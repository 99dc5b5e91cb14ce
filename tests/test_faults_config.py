"""Fault matrix, configuration side: missing, empty, malformed or unusable kubeconfig, talosconfig and
profile; unknown contexts; node addresses that are not addresses; paths with spaces (issue 6).

Every bad configuration must end `talos-gpu` with exit 2 and one line on stderr that names the file,
key or option, quotes no secret, and runs no external program. Most cases call `tui.cli.main` in this
process (the same code path as the console script, minus ~1 s of interpreter start); the case with
spaces in every path runs the real command. Unit tests of the resolvers are in tests/test_config.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from checks.model import Status
from tests.test_faults_talosctl import (
    KUBE_STAGES,
    TALOS_STAGES,
    assert_judged,
    assert_stage,
    lab_target,
    recorded_argvs,
    recording_shims,
    run_cli,
    sweep,
)
from tui.cli import main

TOKEN_MARKER = "config-SECRET-token-5b7e0c1d2a"


@pytest.fixture
def cli(lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """`cli(*args)` -> (exit code, stderr lines) of `talos-gpu ARGS` against the healthy lab, with every
    talosctl/helm call recorded (`cli.argvs()`)."""
    handle = lab("healthy")
    shims, log = recording_shims(handle, tmp_path)
    for key, value in {**handle.env, **shims, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)

    def run(*args: str) -> tuple[int, list[str]]:
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's own errors
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        assert "Traceback" not in err and out == "", (out, err)
        return code, err.strip().splitlines()

    run.handle = handle  # type: ignore[attr-defined]
    run.argvs = lambda: recorded_argvs(log)  # type: ignore[attr-defined]
    return run


def assert_exit_2(result: tuple[int, list[str]], *words: str) -> str:
    code, lines = result
    assert code == 2 and len(lines) == 1 and lines[0].startswith("talos-gpu: "), result
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# ---- kubeconfig, talosconfig, profile -------------------------------------------------------------

BAD_FILES = {
    # id: (option, file content or None for missing or "<dir>", words the one line must quote)
    "kubeconfig-missing": ("--kubeconfig", None, ("kubeconfig", "not found")),
    "kubeconfig-empty": ("--kubeconfig", "", ("kubeconfig", "is empty")),
    "kubeconfig-malformed": ("--kubeconfig",
                             f"apiVersion: v1\nusers:\n- name: admin\n  user: {{token: {TOKEN_MARKER}\n",
                             ("kubeconfig", "is not valid YAML")),
    "kubeconfig-not-a-mapping": ("--kubeconfig", "- just\n- a list\n", ("kubeconfig", "mapping")),
    "kubeconfig-directory": ("--kubeconfig", "<dir>", ("kubeconfig", "is a directory")),
    "talosconfig-missing": ("--talosconfig", None, ("talosconfig", "not found")),
    "talosconfig-empty": ("--talosconfig", "", ("talosconfig", "is empty")),
    "talosconfig-malformed": ("--talosconfig", f"context: lab\ncontexts:\n  lab: {{key: {TOKEN_MARKER}\n",
                              ("talosconfig", "is not valid YAML")),
    "talosconfig-directory": ("--talosconfig", "<dir>", ("talosconfig", "is a directory")),
    "profile-missing": ("--profile", None, ("profile", "not found")),
    "profile-empty": ("--profile", "", ("profile", "is empty")),
    "profile-malformed": ("--profile", "track: [production\n", ("profile", "is not valid YAML")),
    "profile-unknown-key": ("--profile", "trak: production\n", ("profile", "trak")),
    "profile-wrong-type": ("--profile", "gpu_count: two\n", ("profile", "gpu_count")),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_config_file_is_one_line_exit_2(cli: Any, tmp_path: Path, case: str) -> None:
    option, content, words = BAD_FILES[case]
    path = tmp_path / f"{case} file.yaml"  # a space in every path
    if content == "<dir>":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    line = assert_exit_2(cli("check", option, str(path)), str(path), *words)
    assert TOKEN_MARKER not in line
    assert cli.argvs() == []  # nothing ran


def test_unknown_contexts_are_one_line_exit_2_listing_the_known_ones(cli: Any) -> None:
    assert_exit_2(cli("check", "--context", "nope"), "context 'nope' not found", "available: lab")
    assert_exit_2(cli("check", "--talos-context", "nope"), "context 'nope' not found", "available: lab")
    assert cli.argvs() == []


def test_a_kubeconfig_with_broken_credential_data_still_judges_the_talos_stages(lab: Any) -> None:
    """Readable and well-formed, but its certificate data is not base64: the kube stages carry the
    loader's reason (exit 1, not 2: the Talos half of the checks still runs and is useful)."""
    handle = lab("healthy")
    broken = Path(handle.state_dir) / "kubeconfig-broken-ca"
    text = Path(handle.kubeconfig).read_text()
    broken.write_text("\n".join(
        "    certificate-authority-data: '%%%not base64'" if "certificate-authority-data" in line else line
        for line in text.splitlines()))
    report, _ = sweep(lab_target(handle, {"KUBECONFIG": str(broken)}))
    assert_stage(report, "cluster", (Status.FAIL,), "cannot use the kubeconfig", "Invalid base64")
    for stage_id in KUBE_STAGES:
        assert_stage(report, stage_id, (Status.BLOCKED,), "cannot use the kubeconfig")
    assert_judged(report, TALOS_STAGES)


# ---- node addresses that are not addresses -------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("--node=--help",),
    ("-n", "a;b"),
    ("-n", ""),
    ("-n", "$(reboot)"),
    ("-n", "10.5.0.2 "),
    ("-n", "-v"),
    ("--node", "10.5.0.2\nreboot"),
    ("-n", "../../etc/passwd"),
], ids=["--help-as-value", "semicolon", "empty", "command-substitution", "trailing-space", "dash-v",
        "newline", "path"])
def test_a_node_that_is_not_an_address_never_reaches_talosctl(cli: Any, args: tuple[str, ...]) -> None:
    code, lines = cli("check", *args)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("talos-gpu: "), (args, lines)
    assert cli.argvs() == []


def test_dash_n_followed_by_an_option_is_an_argparse_error(cli: Any) -> None:
    assert_exit_2(cli("check", "-n", "--help"), "expected one argument")
    assert cli.argvs() == []


def test_a_talosconfig_node_that_is_not_an_address_is_refused(cli: Any, tmp_path: Path) -> None:
    config = tmp_path / "talosconfig"
    config.write_text("context: lab\ncontexts:\n  lab:\n    endpoints: [10.5.0.2]\n    nodes: ['--help']\n")
    assert_exit_2(cli("check", "--talosconfig", str(config)), "invalid node address", "'--help'")
    assert cli.argvs() == []


def test_every_talosctl_call_passes_the_node_as_the_value_of_nodes(lab: Any, tmp_path: Path) -> None:
    """Each recorded talosctl argv has --talosconfig FILE and --nodes ADDR, before the subcommand."""
    handle = lab("healthy")
    shims, log = recording_shims(handle, tmp_path)
    sweep(lab_target(handle, shims))
    talosctl = [argv for argv in recorded_argvs(log) if argv[0] == "talosctl"]
    assert len(talosctl) >= 10
    for argv in talosctl:
        assert argv[argv.index("--nodes") + 1] == "10.5.0.2", argv
        assert argv[argv.index("--talosconfig") + 1] == str(handle.talosconfig), argv
        assert argv.index("--nodes") < min(argv.index(word) for word in ("version", "health", "get", "read", "dmesg", "ls",
                                                                  "services")
                                           if word in argv)


# ---- paths with spaces --------------------------------------------------------------------------


def test_paths_with_spaces_work_end_to_end(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    spaced = tmp_path / "my cluster configs"
    spaced.symlink_to(handle.state_dir)  # the lab's tools find their state next to the configs
    infra = tmp_path / "infra repo"
    infra.mkdir()
    profile = tmp_path / "gpu profile.yaml"
    profile.write_text(f"infra_repo: {infra}\n")
    result = run_cli({"PATH": handle.env["PATH"]}, "check", "--json",
                     "--talosconfig", str(spaced / "talosconfig"), "--kubeconfig", str(spaced / "kubeconfig"),
                     "--profile", str(profile), timeout=60)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr)
    assert json.loads(result.stdout)["overall"] == "pass"
