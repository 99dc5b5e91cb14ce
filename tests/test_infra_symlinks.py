"""The infra repo never leads outside itself (issue 15): a symlink to a directory or a file outside the
repo is refused for reading (plan, lint) and for writing (the action's write step, checked again right
before it writes), with a one-line reason naming the link. Symlinks that stay inside are followed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from checks import infra
from checks.actions import PlanError, plan_action, run_action
from checks.infra import OutsideRepo, path_in_repo
from tests.test_faults_talosctl import lab_target, run_cli, sweep

SECRET = "credentials-SECRET-do-not-show-5e6f7a8b"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "infra"
    (root / "talos").mkdir(parents=True)
    return root


def test_a_directory_symlink_leaving_the_repo_is_refused(repo: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (repo / "talos" / "patches").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OutsideRepo, match=r"talos/patches is a symlink to .*elsewhere, outside the repo"):
        path_in_repo(repo, infra.MODULES_PATCH)


def test_a_file_symlink_leaving_the_repo_is_refused(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "creds").write_text(SECRET)
    (repo / "talos" / "patches").mkdir()
    (repo / infra.MODULES_PATCH).symlink_to(tmp_path / "creds")
    with pytest.raises(OutsideRepo, match="nvidia-oss-modules.yaml is a symlink to .*creds"):
        path_in_repo(repo, infra.MODULES_PATCH)


def test_a_dangling_symlink_to_outside_and_dotdot_are_refused(repo: Path, tmp_path: Path) -> None:
    (repo / "talos" / "patches").mkdir()
    (repo / infra.MODULES_PATCH).symlink_to(tmp_path / "not-yet")
    with pytest.raises(OutsideRepo):
        path_in_repo(repo, infra.MODULES_PATCH)
    for relative in ("../escape.yaml", "k8s/../../escape.yaml", "/etc/passwd"):
        with pytest.raises(OutsideRepo, match="leaves the repo"):
            path_in_repo(repo, relative)


def test_symlinks_that_stay_inside_the_repo_are_followed(repo: Path) -> None:
    (repo / "shared-patches").mkdir()
    (repo / "shared-patches" / "modules.yaml").write_text("machine: {}\n")
    (repo / "talos" / "patches").symlink_to(repo / "shared-patches", target_is_directory=True)
    assert path_in_repo(repo, "talos/patches/modules.yaml") == repo / "talos" / "patches" / "modules.yaml"
    assert path_in_repo(repo, infra.MODULES_PATCH) == repo / infra.MODULES_PATCH  # need not exist


def _lab_with_repo(lab: Any, scenario: str, tmp_path: Path) -> tuple[Any, Path]:
    """A target for the lab with an infra repo of the test's own (never the shared lab's: its links stay here)."""
    import dataclasses

    handle = lab(scenario)
    target = lab_target(handle)
    repo = tmp_path / "own-infra"
    repo.mkdir()
    return dataclasses.replace(target, profile=dataclasses.replace(target.profile, infra_repo=repo)), repo


def test_a_patch_that_links_to_a_credentials_file_is_never_planned_or_shown(lab: Any, tmp_path: Path) -> None:
    target, repo = _lab_with_repo(lab, "modules-not-loaded", tmp_path)
    (tmp_path / "creds").write_text(f"token: {SECRET}\n")
    (repo / "talos" / "patches").mkdir(parents=True)
    (repo / infra.MODULES_PATCH).symlink_to(tmp_path / "creds")
    report, _ = sweep(target)
    with pytest.raises(PlanError, match="is a symlink to .*creds, outside the repo") as caught:
        anyio.run(lambda: plan_action("kernel-modules", target, report))
    assert SECRET not in str(caught.value)
    findings = infra.lint_infra(target.profile)
    assert "outside the repo" in findings["kernel-modules"][0]


def test_enable_writes_nothing_through_a_directory_symlink(lab: Any, tmp_path: Path) -> None:
    """The issue's repro: `talos/patches` → a directory outside; `enable --dry-run` says why, `--yes`
    writes nothing there."""
    handle = lab("modules-not-loaded")
    repo = tmp_path / "infra"
    elsewhere = tmp_path / "elsewhere"
    (repo / "talos").mkdir(parents=True)
    elsewhere.mkdir()
    (repo / "talos" / "patches").symlink_to(elsewhere, target_is_directory=True)
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"infra_repo: {repo}\n")
    env = {**handle.env, "XDG_STATE_HOME": str(tmp_path / "state"), "COLUMNS": "400"}
    dry = run_cli(env, "enable", "--dry-run", "--profile", str(profile), "--timeout", "15")
    assert dry.returncode == 1 and "Traceback" not in dry.stdout + dry.stderr, dry.stderr[-2000:]
    assert "kernel-modules: cannot plan: infra repo: talos/patches is a symlink to" in dry.stdout
    assert "refusing to follow it" in dry.stdout
    yes = run_cli(env, "enable", "--yes", "--profile", str(profile), "--timeout", "15", timeout=90)
    assert yes.returncode == 1 and "cannot plan kernel-modules" in yes.stdout, yes.stdout[-2000:]
    assert list(elsewhere.iterdir()) == []


def test_a_symlink_that_appears_after_the_plan_stops_the_write(lab: Any, tmp_path: Path) -> None:
    target, repo = _lab_with_repo(lab, "modules-not-loaded", tmp_path)
    report, _ = sweep(target)
    plan = anyio.run(lambda: plan_action("kernel-modules", target, report))
    assert plan.files[0].state == "create"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (repo / "talos").mkdir(parents=True)
    os.symlink(elsewhere, repo / "talos" / "patches")
    result = anyio.run(lambda: run_action(plan, target, lambda _event: None))
    assert result.status == "failed" and "talos/patches is a symlink to" in result.reason, result.reason
    assert "refusing to follow it" in result.reason
    assert list(elsewhere.iterdir()) == []
