"""checks.patch_guard: Talos's boot-time rules for machine.files, on every kind of machine-config patch."""

from __future__ import annotations

import json

import pytest

from checks.patch_guard import (
    RULE_CREATE_OUTSIDE_VAR,
    RULE_MUST_EXIST,
    RULE_UNKNOWN_OP,
    RULE_UNREADABLE,
    PatchRefused,
    check_entries,
    check_patch,
    guard_patch,
    outside_var,
    removal_patch,
)
from lab.scenarios import RUNBOOK_PATCH

REFUSED = 'create operation not allowed outside of /var: "/etc/nvidia-container-runtime/config.toml"'


def test_the_runbook_patch_is_refused_with_its_rule_and_line() -> None:
    (violation,) = check_patch(RUNBOOK_PATCH)
    assert violation.rule == RULE_CREATE_OUTSIDE_VAR
    assert violation.line == 8 and RUNBOOK_PATCH.splitlines()[7].strip() == "op: create"
    assert (violation.op, violation.path) == ("create", "/etc/nvidia-container-runtime/config.toml")
    assert violation.talos_error == REFUSED  # what writeUserFiles returns, word for word
    with pytest.raises(PatchRefused) as raised:
        guard_patch(RUNBOOK_PATCH, "talos/patches/nvidia-no-cgroups.yaml")
    assert str(raised.value).startswith("refused: talos/patches/nvidia-no-cgroups.yaml line 8: " + RULE_CREATE_OUTSIDE_VAR)
    assert "no-cgroups = true" not in str(raised.value)  # the entry's content is never quoted


@pytest.mark.parametrize("path", ["/var/lib/x.conf", "/var", "var/x", "//var/etc/x", "/etc/kubernetes/manifests/a.yaml",
                                  "/etc/cri/conf.d/20-customization.part"])
def test_creates_talos_writes(path: str) -> None:
    assert check_patch(f"machine:\n  files:\n    - op: create\n      path: {path}\n      content: x\n") == []


@pytest.mark.parametrize("path", ["/etc/x.conf", "/variable/x", "/usr/local/etc/x", "/etc/cri/conf.d/10-x.part",
                                  "/etc/kubernetes/manifests/sub/a.yaml"])
def test_creates_talos_refuses(path: str) -> None:
    (violation,) = check_patch(f"machine:\n  files:\n    - op: create\n      path: {path}\n")
    assert violation.rule == RULE_CREATE_OUTSIDE_VAR and violation.path == path


def test_outside_var_is_talos_s_first_component_test() -> None:
    assert not outside_var("/var/x") and not outside_var("var") and outside_var("/variable") and outside_var("/")


def test_overwrite_and_append_need_an_existing_file() -> None:
    text = "machine:\n  files:\n    - op: overwrite\n      path: /etc/hosts\n    - op: append\n      path: /var/log/x\n"
    # not known to exist: outside /var refused (a patch about to be applied is checked strictly)
    assert [(v.rule, v.path, v.line) for v in check_patch(text)] == [(RULE_MUST_EXIST, "/etc/hosts", 3)]
    assert check_patch(text, exists=lambda path: True if path == "/etc/hosts" else None) == []
    (missing,) = check_patch(text, exists=lambda path: path == "/etc/hosts")  # False: known not to exist
    assert missing.path == "/var/log/x"
    gone = check_patch(text, exists=lambda _path: False)
    assert [v.talos_error for v in gone] == ['file must exist: "/etc/hosts"', 'file must exist: "/var/log/x"']


def test_an_unknown_op_is_refused() -> None:
    (violation,) = check_patch("machine:\n  files:\n    - op: delete\n      path: /var/x\n")
    assert violation.rule == RULE_UNKNOWN_OP and violation.talos_error == 'unknown operation for file "/var/x": "delete"'
    (no_op,) = check_patch("machine:\n  files:\n    - path: /var/x\n")
    assert no_op.rule == RULE_UNKNOWN_OP and no_op.line == 3


def test_several_documents_and_other_fields() -> None:
    text = ("machine:\n  kernel:\n    modules:\n      - name: nvidia\n---\napiVersion: v1alpha1\nkind: KmsgLogConfig\n"
            "name: x\n---\nmachine:\n  files:\n    - path: /etc/a\n      op: create\n")
    (violation,) = check_patch(text)
    assert violation.line == 13 and violation.path == "/etc/a"
    assert check_patch("machine:\n  sysctls:\n    net.core.bpf_jit_harden: 1\n") == []
    assert check_patch("") == [] and check_patch("# only a comment\n") == []


@pytest.mark.parametrize(
    ("operations", "refused"),
    [
        ([{"op": "add", "path": "/machine/files/-", "value": {"op": "create", "path": "/etc/x"}}], ["/etc/x"]),
        ([{"op": "add", "path": "/machine/files/0", "value": {"op": "create", "path": "/var/x"}}], []),
        ([{"op": "replace", "path": "/machine/files", "value": [{"op": "create", "path": "/var/a"},
                                                                 {"op": "create", "path": "/opt/b"}]}], ["/opt/b"]),
        ([{"op": "add", "path": "/machine", "value": {"files": [{"op": "create", "path": "/etc/c"}]}}], ["/etc/c"]),
        ([{"op": "replace", "path": "/machine/files/0/op", "value": "frobnicate"}], [""]),
        ([{"op": "remove", "path": "/machine/files/0"}], []),
        ([{"op": "add", "path": "/machine/sysctls", "value": {"a": "1"}}], []),
    ],
)
def test_json_patches(operations: list, refused: list[str]) -> None:
    assert [v.path for v in check_patch(json.dumps(operations))] == refused
    assert [v.path for v in check_patch(json.dumps(operations, indent=2))] == refused
    as_yaml = "".join(f"- {json.dumps(operation)}\n" for operation in operations)  # a JSON patch written as YAML
    assert [v.path for v in check_patch(as_yaml)] == refused


def test_a_json_patch_s_line_is_its_operation_s() -> None:
    text = '[\n  {"op": "remove", "path": "/machine/files/1"},\n  {"op": "add", "path": "/machine/files/-",\n' \
           '   "value": {"op": "create", "path": "/etc/x"}}\n]\n'
    (violation,) = check_patch(text)
    assert violation.line == 3


def test_an_unreadable_patch_is_refused_not_applied() -> None:
    (violation,) = check_patch("machine: [unclosed\n")
    assert violation.rule == RULE_UNREADABLE and violation.line == 2
    (bad_json,) = check_patch('[{"op": ')
    assert bad_json.rule == RULE_UNREADABLE


def test_anchors_and_aliases_cannot_loop_it() -> None:
    text = "a: &x\n  - op: create\n    path: /etc/x\nmachine:\n  files: *x\n"
    (violation,) = check_patch(text)
    assert violation.path == "/etc/x"


def test_removal_patch_removes_highest_index_first() -> None:
    assert json.loads(removal_patch([0, 3, 1, 3])) == [
        {"op": "remove", "path": "/machine/files/3"}, {"op": "remove", "path": "/machine/files/1"},
        {"op": "remove", "path": "/machine/files/0"}]
    assert check_patch(removal_patch([2, 0])) == []


def test_check_entries_of_a_machine_config_only_reports_what_is_certain_when_not_strict() -> None:
    entries = [("create", "/var/a"), ("create", "/etc/b"), ("overwrite", "/etc/hosts"), ("bogus", "/var/c")]
    assert [(i, v.rule) for i, v in check_entries(entries, strict=False)] == [
        (1, RULE_CREATE_OUTSIDE_VAR), (3, RULE_UNKNOWN_OP)]
    assert [i for i, _ in check_entries(entries)] == [1, 2, 3]
