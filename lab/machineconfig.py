"""The lab node's machine config: the fields the lab models as the Talos v1alpha1 document and back, and
the merge Talos applies to a strategic-merge patch (lists append; machine.kernel.modules and machine.files
entries merge by name and path). JSON patches: lab/jsonpatch.py."""

from __future__ import annotations

import copy
from typing import Any

from lab.goyaml import Raw, dump_talos


class CommandError(Exception):
    """A failure printed on stderr as-is, with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def config_document(config: dict[str, Any]) -> dict[str, Any]:
    """The modelled machine-config fields, laid out as the v1alpha1 document."""
    machine: dict[str, Any] = {}
    if config.get("kernel_modules"):
        machine["kernel"] = {"modules": [{"name": name} for name in config["kernel_modules"]]}
    if config.get("sysctls"):
        machine["sysctls"] = dict(config["sysctls"])
    if config.get("files"):
        machine["files"] = [
            {"content": entry.get("content", ""), "permissions": int(entry.get("permissions", 0o644)),
             "path": entry.get("path", ""), "op": entry.get("op", "create")}
            for entry in config["files"]
        ]
    return {"version": "v1alpha1", "machine": machine}


def display_document(config: dict[str, Any]) -> str:
    document = config_document(config)
    for entry in document["machine"].get("files", []):
        entry["permissions"] = Raw(f"0o{entry['permissions']:o}")
    return dump_talos(document)


def _permissions(value: Any) -> int:
    if isinstance(value, bool):
        raise CommandError(f"invalid file permissions: {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    try:
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0") and len(text) > 1:
            return int(text, 8)
        return int(text)
    except ValueError as error:
        raise CommandError(f"invalid file permissions: {value!r}") from error


def config_from_document(document: dict[str, Any]) -> dict[str, Any]:
    machine = document.get("machine") or {}
    modules: list[str] = []
    for entry in ((machine.get("kernel") or {}).get("modules")) or []:
        if not isinstance(entry, dict) or not entry.get("name"):
            raise CommandError("rpc error: code = InvalidArgument desc = configuration validation failed: "
                               "1 error occurred:\n\t* kernel module name is required\n")
        if entry["name"] not in modules:
            modules.append(str(entry["name"]))
    sysctls = {str(key): str(value).lower() if isinstance(value, bool) else str(value)
               for key, value in (machine.get("sysctls") or {}).items()}
    files = []
    for entry in machine.get("files") or []:
        if not isinstance(entry, dict) or not entry.get("path"):
            raise CommandError("rpc error: code = InvalidArgument desc = configuration validation failed: "
                               "1 error occurred:\n\t* file path is required\n")
        op = str(entry.get("op", ""))
        if op not in ("create", "append", "overwrite"):
            raise CommandError("rpc error: code = InvalidArgument desc = configuration validation failed: "
                               f'1 error occurred:\n\t* unknown machine file operation "{op}"\n')
        files.append({"path": str(entry["path"]), "op": op, "content": str(entry.get("content", "")),
                      "permissions": _permissions(entry.get("permissions", 0o644))})
    return {"kernel_modules": modules, "sysctls": sysctls, "files": files}


def strategic_merge(base: Any, patch: Any, path: str = "") -> Any:
    """Talos-style merge of a partial config into the document (lists append, keyed lists merge)."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(base)
    for key, value in patch.items():
        child = f"{path}.{key}" if path else key
        if isinstance(value, dict) and value.get("$patch") == "delete":
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = strategic_merge(result[key], value, child)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, child)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(current: list[Any], additions: list[Any], path: str) -> list[Any]:
    merged = copy.deepcopy(current)
    identity = {"machine.kernel.modules": "name", "machine.files": "path"}.get(path)
    for item in additions:
        if identity and isinstance(item, dict) and item.get(identity) is not None:
            for index, existing in enumerate(merged):
                if isinstance(existing, dict) and existing.get(identity) == item[identity]:
                    merged[index] = strategic_merge(existing, item, path)
                    break
            else:
                merged.append(copy.deepcopy(item))
        elif item not in merged:
            merged.append(copy.deepcopy(item))
    return merged
