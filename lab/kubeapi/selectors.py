"""Label and field selectors as the API server parses them, the query string, and the filter a list or a
watch applies (namespace, labelSelector, fieldSelector)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.kubeapi.resources import (
    ApiError,
)


def _split_requirements(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if current:
        parts.append("".join(current).strip())
    return [part for part in parts if part]


Predicate = Callable[[Mapping[str, str]], bool]


def parse_label_selector(text: str) -> list[Predicate]:
    """`a=b,c!=d,e in (x,y),f notin (z),g,!h` -> predicates over a label map."""
    predicates: list[Predicate] = []
    for requirement in _split_requirements(text):
        set_match = re.fullmatch(r"([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)", requirement)
        if set_match:
            key, operator, raw = set_match.groups()
            values = {value.strip() for value in raw.split(",") if value.strip()}
            if operator == "in":
                predicates.append(lambda labels, k=key, v=values: labels.get(k) in v)
            else:
                predicates.append(lambda labels, k=key, v=values: labels.get(k) not in v)
            continue
        compare = re.fullmatch(r"([^\s!=]+)\s*(==|=|!=)\s*([^\s,]*)", requirement)
        if compare:
            key, operator, value = compare.groups()
            if operator == "!=":
                predicates.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                predicates.append(lambda labels, k=key, v=value: k in labels and labels[k] == v)
            continue
        exists = re.fullmatch(r"(!?)([^\s!=(),]+)", requirement)
        if exists:
            negate, key = exists.groups()
            if negate:
                predicates.append(lambda labels, k=key: k not in labels)
            else:
                predicates.append(lambda labels, k=key: k in labels)
            continue
        raise ApiError(400, f"unable to parse requirement: <nil>: Invalid value: \"{requirement}\": "
                            "invalid label selector")
    return predicates


def field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    if path == "source" and isinstance(obj.get("source"), Mapping):
        return str(obj["source"].get("component") or "")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field_selector(text: str) -> list[Callable[[Mapping[str, Any]], bool]]:
    predicates: list[Callable[[Mapping[str, Any]], bool]] = []
    for requirement in _split_requirements(text):
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(==|=|!=)\s*(.*)", requirement)
        if not match:
            raise ApiError(400, f'invalid selector: \'{text}\'; can\'t understand \'{requirement}\'')
        path, operator, value = match.groups()
        if operator == "!=":
            predicates.append(lambda obj, p=path, v=value: field_value(obj, p) != v)
        else:
            predicates.append(lambda obj, p=path, v=value: field_value(obj, p) == v)
    return predicates


@dataclass
class Query:
    params: dict[str, list[str]]

    def get(self, key: str, default: str = "") -> str:
        values = self.params.get(key)
        return values[-1] if values else default

    def flag(self, key: str) -> bool:
        return self.get(key).lower() in ("true", "1")

    def number(self, key: str, default: int | None = None) -> int | None:
        raw = self.get(key)
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError as error:
            raise ApiError(400, f"invalid value for {key}: {raw!r}") from error


@dataclass
class Filter:
    namespace: str | None
    labels: list[Predicate] = field(default_factory=list)
    fields: list[Callable[[Mapping[str, Any]], bool]] = field(default_factory=list)

    @classmethod
    def from_query(cls, namespace: str | None, query: Query) -> Filter:
        return cls(namespace, parse_label_selector(query.get("labelSelector")),
                   parse_field_selector(query.get("fieldSelector")))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and (meta.get("namespace") or "") != self.namespace:
            return False
        labels = meta.get("labels") or {}
        return all(p(labels) for p in self.labels) and all(p(obj) for p in self.fields)
