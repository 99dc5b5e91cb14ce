"""The lab's one JSON patch (lab/jsonpatch.py), as both of its tools meet it: `talosctl patch mc` with a
JSON patch and `kubectl patch --type=json` against the lab's API. Removing a path that is not there is an
error in both (evanphx/json-patch, which both real tools use), in each tool's own words."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab import jsonpatch
from tests.paths import REPO
from tests.test_lab_talosctl import make_lab, talosctl


def test_the_operations_and_their_errors() -> None:
    document = {"machine": {"files": [{"path": "/var/a"}], "kernel": {}}}
    added = jsonpatch.apply(document, [{"op": "add", "path": "/machine/files/-", "value": {"path": "/var/b"}},
                                       {"op": "add", "path": "/machine/sysctls/x", "value": "1"},
                                       {"op": "test", "path": "/machine/files/0/path", "value": "/var/a"},
                                       {"op": "remove", "path": "/machine/files/0"}])
    assert added == {"machine": {"files": [{"path": "/var/b"}], "kernel": {}, "sysctls": {"x": "1"}}}
    assert document["machine"]["files"] == [{"path": "/var/a"}]  # the argument is not changed
    for operations, kind in (([{"op": "remove", "path": "/machine/files/3"}], "missing"),
                             ([{"op": "remove", "path": "/machine/nothing"}], "missing"),
                             ([{"op": "replace", "path": "/machine/nothing", "value": 1}], "missing"),
                             ([{"op": "test", "path": "/machine/kernel", "value": 1}], "test-failed"),
                             ([{"op": "move", "path": "/machine"}], "unsupported"),
                             ([{"op": "add", "path": "machine", "value": 1}], "invalid-path"),
                             ([{"path": "/machine"}], "invalid-operation")):
        with pytest.raises(jsonpatch.PatchError) as raised:
            jsonpatch.apply(document, operations)
        assert raised.value.kind == kind, operations
    assert jsonpatch.merge({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None}, "l": [2], "$patch": "x"}) == \
        {"a": {"c": 2}, "l": [2]}


def test_removing_a_missing_path_fails_in_talosctl_and_in_kubectl(tmp_path: Path) -> None:
    config = make_lab(tmp_path, "healthy")
    done = talosctl(config, "patch", "mc", "--patch", '[{"op": "remove", "path": "/machine/files/0"}]')
    assert done.returncode == 1 and "error applying JSON patch: missing path /machine/files/0" in done.stderr

    from lab.runtime import start_lab

    with start_lab("healthy", state_dir=tmp_path / "api") as handle:
        env: dict[str, Any] = {**os.environ, **handle.env}
        patched = subprocess.run(["kubectl", "patch", "node", "gpu-node-1", "--type=json", "-p",
                                  '[{"op": "remove", "path": "/metadata/labels/no-such-label"}]'],
                                 cwd=REPO, env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert patched.returncode == 1
        assert "missing path" in patched.stderr and "no-such-label" in patched.stderr, patched.stderr
        kept = subprocess.run(["kubectl", "patch", "node", "gpu-node-1", "--type=json", "-p",
                               '[{"op": "add", "path": "/metadata/labels/lab-patched", "value": "yes"}]'],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert kept.returncode == 0, kept.stderr
