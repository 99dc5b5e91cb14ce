"""The one JSON patch (RFC 6902) and JSON merge patch (RFC 7386) of the lab: the Kubernetes API server's
`application/json-patch+json` and `application/merge-patch+json` bodies, and `talosctl patch mc` with a
JSON patch. Each caller words the errors as its real tool does (`PatchError.kind` says which).

As in evanphx/json-patch (what both real tools use): `remove` of a path that does not exist is an error,
`add` to a missing parent creates it (``EnsurePathExistsOnAdd``), `-` appends to a list, `test` compares.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


class PatchError(Exception):
    """kind: invalid-path | invalid-operation | missing | unsupported | test-failed."""

    def __init__(self, kind: str, path: str = "", op: str = "") -> None:
        super().__init__(f"{kind} {op} {path}".strip())
        self.kind, self.path, self.op = kind, path, op


def pointer(path: str) -> list[str]:
    """An RFC 6901 JSON pointer's reference tokens."""
    if not path.startswith("/"):
        raise PatchError("invalid-path", path)
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], token: str, path: str, *, end_ok: bool = False) -> int:
    if end_ok and token == "-":
        return len(container)
    try:
        index = int(token)
    except ValueError:
        raise PatchError("missing", path) from None
    if index < 0 or index > len(container) - (0 if end_ok else 1):
        raise PatchError("missing", path)
    return index


def apply(document: Any, operations: list[Any]) -> Any:
    """`document` with `operations` applied, as a new object (the argument is not changed)."""
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, Mapping) or "op" not in operation or "path" not in operation:
            raise PatchError("invalid-operation")
        op, path = str(operation["op"]), str(operation["path"])
        parts = pointer(path)
        if not parts:
            raise PatchError("invalid-path", path, op)
        parent: Any = result
        for part in parts[:-1]:
            if isinstance(parent, list):
                parent = parent[_index(parent, part, path)]
            elif isinstance(parent, dict):
                if part not in parent and op != "add":
                    raise PatchError("missing", path, op)
                parent = parent.setdefault(part, {})
            else:
                raise PatchError("missing", path, op)
        last = parts[-1]
        if op in ("add", "replace"):
            value = copy.deepcopy(operation.get("value"))
            if isinstance(parent, list):
                if op == "add":
                    parent.insert(_index(parent, last, path, end_ok=True), value)
                else:
                    parent[_index(parent, last, path)] = value
            else:
                if op == "replace" and last not in parent:
                    raise PatchError("missing", path, op)
                parent[last] = value
        elif op == "remove":
            if isinstance(parent, list):
                parent.pop(_index(parent, last, path))
            elif last in parent:
                del parent[last]
            else:
                raise PatchError("missing", path, op)
        elif op == "test":
            current = parent[_index(parent, last, path)] if isinstance(parent, list) else parent.get(last)
            if current != operation.get("value"):
                raise PatchError("test-failed", path, op)
        else:
            raise PatchError("unsupported", path, op)
    return result


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also the lab's strategic merge for the API: lists are replaced; `$`
    directives are ignored)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result
