"""The patch guard: is a machine-config patch safe for the node's next boot?

Talos accepts any `machine.files` entry when a patch is applied (`patch mc`, `apply-config`), but its
boot task `writeUserFiles` refuses some of them, and then the boot stops before containerd, etcd and
the kubelet start, waits, reboots and stops again (FACTS.md, "The runbook's no-cgroups patch on real
Talos"). The rules that task enforces, in its order:

1. `op` is `create`, `overwrite` or `append` (else `unknown operation for file ...`);
2. `overwrite` and `append` need the file to exist as a regular file (else `file must exist: ...`);
3. files in `/etc/kubernetes/manifests` and the CRI customization part
   `/etc/cri/conf.d/20-customization.part` are written as they are;
4. any other path outside `/var` is written under `/var` and bind-mounted read-only, and `create`
   there is refused: `create operation not allowed outside of /var: "<path>"`.

`check_patch` is pure: it parses the patch text (strategic-merge YAML documents, or a JSON patch as
JSON or YAML) and returns what breaks these rules, each with its rule and the line of the patch it
is on. Whether a file exists is asked of `exists` (a path → True/False/None); not knowing counts as
not existing, so an `overwrite`/`append` outside `/var` that cannot be confirmed is refused. It reads
only each entry's `op` and `path`, never its content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

BOOT_TASK = "writeUserFiles"
MANIFESTS_DIRECTORY = "/etc/kubernetes/manifests"
CRI_CUSTOMIZATION_PART = "/etc/cri/conf.d/20-customization.part"
OPERATIONS = ("create", "overwrite", "append")

RULE_CREATE_OUTSIDE_VAR = "machine.files: op create is allowed only under /var"
RULE_MUST_EXIST = "machine.files: op overwrite/append needs the file to exist on the node"
RULE_UNKNOWN_OP = "machine.files: op must be create, overwrite or append"
RULE_UNREADABLE = "a machine-config patch must be YAML documents or a JSON patch"

_FILES_POINTER = re.compile(r"^/machine/files(?:/(?P<index>\d+|-))?(?P<rest>/.*)?$")


@dataclass(frozen=True)
class Violation:
    """One entry Talos refuses at boot: the rule it breaks, where it is, and what Talos logs for it."""

    rule: str
    line: int | None  # 1-based line of the patch text, None when not known
    op: str
    path: str
    talos_error: str  # the error writeUserFiles returns for it

    def describe(self, source: str = "patch") -> str:
        where = f"{source} line {self.line}" if self.line else source
        return f"{where}: {self.rule} (op {self.op or '(none)'} path {self.path or '(none)'}: Talos would stop the " \
               f"boot in {BOOT_TASK}: {self.talos_error})"


class PatchRefused(ValueError):
    """A patch the guard refuses; its message names the rule and the line."""

    def __init__(self, source: str, violations: list[Violation]) -> None:
        self.source = source
        self.violations = violations
        first = violations[0].describe(source)
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        super().__init__(f"refused: {first}{more}")


def outside_var(path: str) -> bool:
    """Talos's test: the first component of the path (leading slashes dropped) is not `var`."""
    return path.lstrip("/").split("/", 1)[0] != "var"


def file_violation(op: str, path: str, *, exists: Callable[[str], bool | None] | None = None,
                   line: int | None = None, strict: bool = True) -> Violation | None:
    """The rule one `machine.files` entry breaks at boot, or None when Talos writes it.

    `strict` (for a patch about to be written or applied): an overwrite/append outside /var whose file
    is not known to exist is refused. Not strict (judging a node): only what is certain is reported."""
    if op not in OPERATIONS:
        return Violation(RULE_UNKNOWN_OP, line, op, path, f'unknown operation for file "{path}": "{op}"')
    if op in ("overwrite", "append"):
        known = exists(path) if exists is not None else None
        if known is False or (known is None and strict and outside_var(path)):
            return Violation(RULE_MUST_EXIST, line, op, path, f'file must exist: "{path}"')
        return None
    if path.rsplit("/", 1)[0] == MANIFESTS_DIRECTORY or path == CRI_CUSTOMIZATION_PART:
        return None
    if outside_var(path):
        return Violation(RULE_CREATE_OUTSIDE_VAR, line, op, path,
                         f'create operation not allowed outside of /var: "{path}"')
    return None


def check_entries(entries: list[tuple[str, str]], *, exists: Callable[[str], bool | None] | None = None,
                  strict: bool = True) -> list[tuple[int, Violation]]:
    """(index, violation) for each (op, path) of a machine config's `machine.files` that Talos refuses."""
    found = []
    for index, (op, path) in enumerate(entries):
        violation = file_violation(op, path, exists=exists, strict=strict)
        if violation is not None:
            found.append((index, violation))
    return found


# --------------------------------------------------------------------------- parsing a patch


@dataclass(frozen=True)
class _Entry:
    op: str
    path: str
    line: int | None


def _scalar(node: Any) -> str:
    import yaml

    return str(node.value) if isinstance(node, yaml.ScalarNode) else ""


def _mapping_items(node: Any) -> Iterator[tuple[str, Any]]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield _scalar(key), value


def _get(node: Any, name: str) -> Any:
    return next((value for key, value in _mapping_items(node) if key == name), None)


def _file_entries_of_document(node: Any) -> list[_Entry]:
    """The `machine.files` entries of one strategic-merge document (a YAML node)."""
    import yaml

    files = _get(_get(node, "machine"), "files")
    if not isinstance(files, yaml.SequenceNode):
        return []
    entries = []
    for item in files.value:
        op_node, path_node = _get(item, "op"), _get(item, "path")
        line = (op_node or path_node or item).start_mark.line + 1
        entries.append(_Entry(_scalar(op_node) if op_node is not None else "",
                              _scalar(path_node) if path_node is not None else "", line))
    return entries


def _json_patch_entries(operations: list[Any], lines: list[int | None]) -> list[_Entry]:
    """`add`/`replace` operations that put file entries into /machine/files (or the whole list)."""
    entries: list[_Entry] = []
    for operation, line in zip(operations, lines, strict=False):
        if not isinstance(operation, dict) or operation.get("op") not in ("add", "replace"):
            continue
        match = _FILES_POINTER.match(str(operation.get("path", "")))
        value = operation.get("value")
        if match is None:
            pointer = str(operation.get("path", ""))
            container: Any = None
            if pointer == "/machine" and isinstance(value, dict):
                container = value.get("files")
            elif pointer == "" and isinstance(value, dict) and isinstance(value.get("machine"), dict):
                container = value["machine"].get("files")
            for item in container if isinstance(container, list) else []:
                if isinstance(item, dict):
                    entries.append(_Entry(str(item.get("op", "")), str(item.get("path", "")), line))
            continue
        if match["rest"]:
            # a field of an existing entry (e.g. /machine/files/0/op): judged on the node, after the patch
            field = match["rest"].strip("/")
            if field in ("op", "path"):
                entries.append(_Entry(str(value) if field == "op" else "", str(value) if field == "path" else "",
                                      line))
            continue
        items = value if match["index"] is None and isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                entries.append(_Entry(str(item.get("op", "")), str(item.get("path", "")), line))
    return entries


def _yaml_sequence_lines(node: Any) -> list[int | None]:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return [item.start_mark.line + 1 for item in node.value]
    return []


def _entries(text: str) -> list[_Entry]:
    import yaml

    from checks import yamlsafe

    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            operations = json.loads(text)
        except ValueError:
            operations = None
        if isinstance(operations, list):
            lines = [_json_line(text, index) for index in range(len(operations))]
            return _json_patch_entries(operations, lines)
    loader = yamlsafe.Base()
    nodes = list(yaml.compose_all(text, Loader=loader))  # noqa: S506 - composing only, with a safe loader
    entries: list[_Entry] = []
    for node in nodes:
        if isinstance(node, yaml.SequenceNode):  # a JSON patch written as YAML
            operations = yaml.load(yaml.serialize(node), Loader=loader)  # noqa: S506 - a safe loader
            entries.extend(_json_patch_entries(operations if isinstance(operations, list) else [],
                                               _yaml_sequence_lines(node)))
        elif node is not None:
            entries.extend(_file_entries_of_document(node))
    return entries


def _json_line(text: str, index: int) -> int | None:
    """The line of the `index`-th top-level object of a JSON array (by brace depth)."""
    depth = 0
    seen = -1
    in_string = escaped = False
    line = 1
    for char in text:
        if char == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth == 2 and char == "{":
                seen += 1
                if seen == index:
                    return line
        elif char in "]}":
            depth -= 1
    return None


def check_patch(text: str, *, exists: Callable[[str], bool | None] | None = None) -> list[Violation]:
    """What in this machine-config patch Talos refuses at boot (empty: the patch is safe to apply).

    A patch that cannot be parsed is refused too: nothing unread is applied."""
    import yaml

    try:
        entries = _entries(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        return [Violation(RULE_UNREADABLE, line, "", "", "the patch cannot be parsed")]
    found = []
    for entry in entries:
        violation = file_violation(entry.op, entry.path, exists=exists, line=entry.line)
        if violation is not None:
            found.append(violation)
    return found


def guard_patch(text: str, source: str, *, exists: Callable[[str], bool | None] | None = None) -> None:
    """Raise PatchRefused when `check_patch` finds anything; `source` names the patch in the message."""
    violations = check_patch(text, exists=exists)
    if violations:
        raise PatchRefused(source, violations)


def removal_patch(indexes: list[int]) -> str:
    """The JSON patch that removes these `machine.files` entries, highest index first (so that each
    removal leaves the indexes of the ones still to remove unchanged)."""
    operations = [{"op": "remove", "path": f"/machine/files/{index}"} for index in sorted(set(indexes), reverse=True)]
    return json.dumps(operations)
