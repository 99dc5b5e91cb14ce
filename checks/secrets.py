"""Which strings in the kubeconfig and talosconfig are secrets, and teaching them to the redactor.

Apart from `checks.redact` because finding them reads files (bounded, through `checks.errors`), and
`checks.errors` redacts every message it makes: one module doing both would import itself round a circle.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from checks import redact
from checks.errors import UsageError, read_user_file
from checks.redact import MIN_SECRET_LENGTH

# A decoded PEM body line shorter than this is not distinctive enough to replace.
MIN_PEM_LINE_LENGTH = 16

# kubeconfig `users[].user` fields whose value is a secret (or never needed on screen).
_KUBE_USER_SECRET_FIELDS = ("token", "client-key-data", "client-certificate-data", "password")
# kubeconfig `users[].user` fields naming a file whose CONTENT is a secret.
_KUBE_USER_SECRET_FILES = ("token-file", "client-key")
# talosconfig `contexts.<name>` fields.
_TALOS_CONTEXT_SECRET_FIELDS = ("key", "crt", "ca")
# auth-provider config keys holding secrets contain one of these words.
_AUTH_PROVIDER_SECRET_WORDS = ("token", "secret", "password", "key")

_PEM_LINE = re.compile(r"^[A-Za-z0-9+/=]+$")


def collect_secrets(*, kubeconfig: Path | None = None, talosconfig: Path | None = None) -> frozenset[str]:
    """Every secret value in the given config files, with its decoded forms.

    Files that are missing, unreadable or not YAML contribute nothing (the caller reports those
    separately); this function never raises for a bad file.
    """
    raw: set[str] = set()
    if kubeconfig is not None:
        raw.update(_kubeconfig_secrets(kubeconfig))
    if talosconfig is not None:
        raw.update(_talosconfig_secrets(talosconfig))
    found: set[str] = set()
    for value in raw:
        found.update(_with_decoded_forms(value))
    return frozenset(s for s in found if len(s) >= MIN_SECRET_LENGTH)


def _load_yaml_mapping(path: Path) -> Mapping[str, Any] | None:
    import yaml  # here, not at the top: the TUI's first frame needs `redact`, not YAML (~25 ms)

    from checks import yamlsafe

    try:  # the same bounded, read-once text the config resolution read
        data = yamlsafe.safe_load(read_user_file(Path(path), str(path)))
    except (UsageError, yaml.YAMLError, ValueError):
        return None
    return data if isinstance(data, Mapping) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(values: Iterable[Any]) -> Iterator[str]:
    for value in values:
        if isinstance(value, str) and value.strip():
            yield value.strip()


def _read_secret_file(path_text: str, base: Path) -> str | None:
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = base / path
    try:  # bounded: a `token-file: /dev/zero` must not hang or fill memory
        return read_user_file(path, str(path)).strip()
    except (UsageError, ValueError):
        return None


def _kubeconfig_secrets(path: Path) -> Iterator[str]:
    config = _load_yaml_mapping(path)
    if config is None:
        return
    base = Path(path).parent
    for entry in _list(config.get("users")):
        user = _mapping(_mapping(entry).get("user"))
        yield from _strings(user.get(field) for field in _KUBE_USER_SECRET_FIELDS)
        for field in _KUBE_USER_SECRET_FILES:
            file_name = user.get(field)
            if isinstance(file_name, str) and file_name:
                content = _read_secret_file(file_name, base)
                if content:
                    yield content
        provider_config = _mapping(_mapping(user.get("auth-provider")).get("config"))
        yield from _strings(
            value
            for key, value in provider_config.items()
            if any(word in str(key).lower() for word in _AUTH_PROVIDER_SECRET_WORDS)
        )
        exec_config = _mapping(user.get("exec"))
        yield from _strings(_mapping(item).get("value") for item in _list(exec_config.get("env")))
    for entry in _list(config.get("clusters")):
        cluster = _mapping(_mapping(entry).get("cluster"))
        yield from _strings([cluster.get("certificate-authority-data")])


def _talosconfig_secrets(path: Path) -> Iterator[str]:
    config = _load_yaml_mapping(path)
    if config is None:
        return
    for context in _mapping(config.get("contexts")).values():
        context = _mapping(context)
        yield from _strings(context.get(field) for field in _TALOS_CONTEXT_SECRET_FIELDS)
        auth = _mapping(context.get("auth"))
        yield from _strings([_mapping(auth.get("basic")).get("password")])
        yield from _strings([_mapping(auth.get("siderov1")).get("identity")])


def _with_decoded_forms(value: str) -> set[str]:
    """The value itself, its base64-decoded text, and the body lines of any PEM in either."""
    forms = {value}
    decoded = _decode_base64_text(value)
    if decoded is not None:
        forms.add(decoded)
    for text in list(forms):
        if "-----BEGIN" in text:
            forms.update(_pem_body_parts(text))
    return forms


def _decode_base64_text(value: str) -> str | None:
    compact = "".join(value.split())
    if len(compact) < MIN_SECRET_LENGTH or len(compact) % 4:
        return None
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None  # binary: it cannot appear in text output as such
    if not text or not all(c.isprintable() or c in "\r\n\t" for c in text):
        return None
    return text


def _pem_body_parts(text: str) -> set[str]:
    """Base64 body lines (≥ 16 chars) of every PEM block in `text`, and each block's joined body."""
    parts: set[str] = set()
    body: list[str] = []
    inside = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("-----BEGIN"):
            inside, body = True, []
        elif line.startswith("-----END"):
            if body:
                parts.add("".join(body))
            inside = False
        elif inside and _PEM_LINE.match(line):
            body.append(line)
            if len(line) >= MIN_PEM_LINE_LENGTH:
                parts.add(line)
    return {p for p in parts if len(p) >= MIN_PEM_LINE_LENGTH}


def install_secrets_from(kube: Path | None, talos: Path | None) -> None:
    """Teach the process-wide redactor the secrets of these config files."""
    redact.REDACTOR.add(collect_secrets(kubeconfig=kube, talosconfig=talos))
