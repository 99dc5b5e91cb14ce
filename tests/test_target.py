"""`checks.target.build_target`: plain arguments in, a Target out, and the redactor it names learns the secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from checks import redact
from checks.errors import UsageError
from checks.redact import Redactor
from checks.target import build_target, check_target_files


def _token(kubeconfig: str) -> str:
    config = yaml.safe_load(Path(kubeconfig).read_text())
    return config["users"][0]["user"]["token"]


def test_the_redactor_named_learns_the_configs_secrets(lab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    handle = lab("healthy")
    env = dict(handle.env)
    process_wide = Redactor()
    monkeypatch.setattr(redact, "REDACTOR", process_wide)
    mine = Redactor()
    target = build_target(talosconfig=env["TALOSCONFIG"], kubeconfig=env["KUBECONFIG"], env=env, redactor=mine)
    token = _token(env["KUBECONFIG"])
    assert token in mine.secrets
    assert target.kube.kubeconfig == Path(env["KUBECONFIG"])
    assert target.env == env
    assert process_wide.secrets == frozenset()  # nothing learnt behind the caller's back

    build_target(env=env, redactor=None)  # from $TALOSCONFIG / $KUBECONFIG of `env`
    assert process_wide.secrets == frozenset()


def test_bad_plain_arguments_are_one_line_usage_errors(lab: Any, tmp_path: Path) -> None:
    env = dict(lab("healthy").env)
    with pytest.raises(UsageError, match="node"):
        build_target(node="not an address!", env=env, redactor=None)
    missing = tmp_path / "missing.yaml"
    with pytest.raises(UsageError, match=f"profile {missing}"):
        check_target_files(profile=str(missing), env=env)
    check_target_files(env=env)  # the lab's files are all there
