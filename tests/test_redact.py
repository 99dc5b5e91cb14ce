"""Secret collection and redaction (checks.redact) and one-line errors (checks.errors)."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

import pytest
import yaml

from checks import redact as redact_module
from checks.errors import UsageError, one_line
from checks.redact import (
    REDACTED,
    RedactingFilter,
    Redactor,
    redact,
)
from checks.secrets import collect_secrets, install_secrets_from

# ----------------------------------------------------------------------------- marker secrets
# Every marker is distinctive so a leak anywhere is found by a plain substring test.

KUBE_TOKEN = "kubetoken-MARKER-1a2b3c4d5e6f"
KUBE_PASSWORD = "kubepassword-MARKER-778899"
EXEC_ENV_VALUE = "execenv-MARKER-5566aabb"
ID_TOKEN = "idtoken-MARKER-0f0e0d0c"
REFRESH_TOKEN = "refreshtoken-MARKER-abab1212"
CLIENT_SECRET = "clientsecret-MARKER-cdcd3434"
TOKEN_FILE_CONTENT = "tokenfile-MARKER-9988ffee"
TALOS_PASSWORD = "talospassword-MARKER-4242"
TALOS_IDENTITY = "talosidentity-MARKER-2424"

CLIENT_KEY_LINE = "MIIEpAIBAAKCAQEAclientKEYmarkerLINE0123456789"
CLIENT_KEY_PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{CLIENT_KEY_LINE}\nAnotherClientKeyLine+/0987654321==\n-----END RSA PRIVATE KEY-----\n"
CLIENT_CERT_LINE = "MIIDclientCERTmarkerLINEabcdefghijklmnop0123"
CLIENT_CERT_PEM = f"-----BEGIN CERTIFICATE-----\n{CLIENT_CERT_LINE}\n-----END CERTIFICATE-----\n"
KUBE_CA_LINE = "MIIDkubeCAmarkerLINEqrstuvwxyz0123456789ABCD"
KUBE_CA_PEM = f"-----BEGIN CERTIFICATE-----\n{KUBE_CA_LINE}\n-----END CERTIFICATE-----\n"
TALOS_KEY_LINE = "MC4CAQAwBQYDK2VwBCIEItalosKEYmarkerLINE0123456"
TALOS_KEY_PEM = f"-----BEGIN ED25519 PRIVATE KEY-----\n{TALOS_KEY_LINE}\n-----END ED25519 PRIVATE KEY-----\n"
TALOS_CRT_LINE = "MIIBtalosCRTmarkerLINEabcdefghij0123456789XY"
TALOS_CRT_PEM = f"-----BEGIN CERTIFICATE-----\n{TALOS_CRT_LINE}\n-----END CERTIFICATE-----\n"
TALOS_CA_LINE = "MIIBtalosCAmarkerLINEklmnopqrst0123456789ZW"
TALOS_CA_PEM = f"-----BEGIN CERTIFICATE-----\n{TALOS_CA_LINE}\n-----END CERTIFICATE-----\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CLIENT_KEY_DATA = b64(CLIENT_KEY_PEM)
CLIENT_CERT_DATA = b64(CLIENT_CERT_PEM)
KUBE_CA_DATA = b64(KUBE_CA_PEM)
TALOS_KEY = b64(TALOS_KEY_PEM)
TALOS_CRT = b64(TALOS_CRT_PEM)
TALOS_CA = b64(TALOS_CA_PEM)

RAW_MARKERS = (
    KUBE_TOKEN, KUBE_PASSWORD, EXEC_ENV_VALUE, ID_TOKEN, REFRESH_TOKEN, CLIENT_SECRET, TOKEN_FILE_CONTENT,
    CLIENT_KEY_DATA, CLIENT_CERT_DATA, KUBE_CA_DATA, TALOS_KEY, TALOS_CRT, TALOS_CA, TALOS_PASSWORD,
    TALOS_IDENTITY,
)  # fmt: skip
DECODED_MARKERS = (
    CLIENT_KEY_LINE,
    CLIENT_CERT_LINE,
    KUBE_CA_LINE,
    TALOS_KEY_LINE,
    TALOS_CRT_LINE,
    TALOS_CA_LINE,
)
ALL_MARKERS = RAW_MARKERS + DECODED_MARKERS


def assert_no_marker(text: str) -> None:
    leaked = [m for m in ALL_MARKERS if m in text]
    assert not leaked, f"secret(s) leaked: {leaked!r} in {text!r}"
    assert "MARKER" not in text, text


def kubeconfig_document(server: str = "https://127.0.0.1:9", token_file: str = "token.txt") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "lab",
        "clusters": [
            {"name": "lab", "cluster": {"server": server, "certificate-authority-data": KUBE_CA_DATA}},
            {
                "name": "other",
                "cluster": {"server": "https://198.51.100.7:6443", "insecure-skip-tls-verify": True},
            },
        ],
        "users": [
            {"name": "admin", "user": {"token": KUBE_TOKEN}},
            {
                "name": "certs",
                "user": {"client-key-data": CLIENT_KEY_DATA, "client-certificate-data": CLIENT_CERT_DATA},
            },
            {"name": "basic", "user": {"username": "alice-the-admin", "password": KUBE_PASSWORD}},
            {"name": "filed", "user": {"token-file": token_file}},
            {
                "name": "oidc",
                "user": {
                    "auth-provider": {
                        "name": "oidc",
                        "config": {
                            "client-id": "kubernetes-client-id",
                            "idp-issuer-url": "https://issuer.example.com",
                            "id-token": ID_TOKEN,
                            "refresh-token": REFRESH_TOKEN,
                            "client-secret": CLIENT_SECRET,
                        },
                    }
                },
            },
            {
                "name": "exec",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": "true",
                        "env": [
                            {"name": "SECRET_ENV", "value": EXEC_ENV_VALUE},
                            {"name": "SHORT", "value": "abc"},
                        ],
                    }
                },
            },
        ],
        "contexts": [
            {"name": "lab", "context": {"cluster": "lab", "user": "admin"}},
            {"name": "other", "context": {"cluster": "other", "user": "certs"}},
        ],
    }


def talosconfig_document() -> dict:
    return {
        "context": "mycluster",
        "contexts": {
            "mycluster": {
                "endpoints": ["192.0.2.10"],
                "nodes": ["192.0.2.20", "192.0.2.21"],
                "ca": TALOS_CA,
                "crt": TALOS_CRT,
                "key": TALOS_KEY,
            },
            "withauth": {
                "endpoints": ["192.0.2.30"],
                "nodes": ["192.0.2.31"],
                "auth": {"basic": {"username": "talos-admin", "password": TALOS_PASSWORD}},
            },
            "sidero": {"endpoints": ["192.0.2.40"], "auth": {"siderov1": {"identity": TALOS_IDENTITY}}},
        },
    }


def write_secret_configs(directory: Path, *, server: str = "https://127.0.0.1:9") -> tuple[Path, Path]:
    """A kubeconfig and a talosconfig full of marker secrets, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token.txt").write_text(TOKEN_FILE_CONTENT + "\n")
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(server=server), sort_keys=False))
    talosconfig = directory / "talosconfig"
    talosconfig.write_text(yaml.safe_dump(talosconfig_document(), sort_keys=False))
    return kubeconfig, talosconfig


@pytest.fixture
def configs(tmp_path: Path) -> tuple[Path, Path]:
    return write_secret_configs(tmp_path)


@pytest.fixture
def fresh_global_redactor(monkeypatch: pytest.MonkeyPatch) -> Redactor:
    """A fresh process-wide redactor, so tests cannot depend on each other's secrets."""
    fresh = Redactor()
    monkeypatch.setattr(redact_module, "REDACTOR", fresh)
    return fresh


# ----------------------------------------------------------------------------- collect_secrets


@pytest.mark.parametrize("marker", RAW_MARKERS)
def test_collect_secrets_finds_every_raw_value(configs: tuple[Path, Path], marker: str) -> None:
    kubeconfig, talosconfig = configs
    assert marker in collect_secrets(kubeconfig=kubeconfig, talosconfig=talosconfig)


@pytest.mark.parametrize(
    "decoded", [CLIENT_KEY_PEM.strip(), CLIENT_CERT_PEM.strip(), TALOS_KEY_PEM.strip(), *DECODED_MARKERS]
)
def test_collect_secrets_finds_decoded_forms(configs: tuple[Path, Path], decoded: str) -> None:
    kubeconfig, talosconfig = configs
    assert decoded in collect_secrets(kubeconfig=kubeconfig, talosconfig=talosconfig)


def test_collect_secrets_skips_non_secrets_and_short_values(configs: tuple[Path, Path]) -> None:
    kubeconfig, talosconfig = configs
    found = collect_secrets(kubeconfig=kubeconfig, talosconfig=talosconfig)
    for harmless in (
        "alice-the-admin", "talos-admin", "kubernetes-client-id", "https://issuer.example.com",
        "https://127.0.0.1:9", "192.0.2.20", "mycluster", "abc", "token.txt",
    ):  # fmt: skip
        assert harmless not in found
    assert all(len(secret) >= 8 for secret in found)


def test_collect_secrets_separately_per_file(configs: tuple[Path, Path]) -> None:
    kubeconfig, talosconfig = configs
    kube_only = collect_secrets(kubeconfig=kubeconfig)
    talos_only = collect_secrets(talosconfig=talosconfig)
    assert KUBE_TOKEN in kube_only and TALOS_KEY not in kube_only
    assert TALOS_KEY in talos_only and KUBE_TOKEN not in talos_only


@pytest.mark.parametrize("content", ["", "not: [valid", "- just\n- a list\n", "\x00\x01binary"])
def test_collect_secrets_tolerates_bad_files(tmp_path: Path, content: str) -> None:
    bad = tmp_path / "bad"
    bad.write_text(content)
    assert collect_secrets(kubeconfig=bad, talosconfig=tmp_path / "missing") == frozenset()


# ----------------------------------------------------------------------------- Redactor


def test_redactor_removes_every_marker_and_decoded_line(configs: tuple[Path, Path]) -> None:
    kubeconfig, talosconfig = configs
    redactor = Redactor(collect_secrets(kubeconfig=kubeconfig, talosconfig=talosconfig))
    text = "\n".join(
        [f"value {m} in a sentence" for m in ALL_MARKERS]
        + [CLIENT_KEY_PEM, TALOS_KEY_PEM, TALOS_CRT_PEM, f"error decoding: {CLIENT_CERT_LINE}."]
    )
    cleaned = redactor(text)
    assert_no_marker(cleaned)
    assert cleaned.count(REDACTED) >= len(ALL_MARKERS)
    assert "value ‹redacted› in a sentence" in cleaned


def test_redactor_replaces_longest_secret_first() -> None:
    redactor = Redactor(["abcdefgh12", "abcdefgh12345678"])
    assert redactor("x abcdefgh12345678 y") == f"x {REDACTED} y"


def test_redactor_add_rebuilds_and_ignores_short_values() -> None:
    redactor = Redactor()
    assert redactor("late-secret-1234") == "late-secret-1234"
    redactor.add(["late-secret-1234", "short"])
    assert redactor("late-secret-1234 short") == f"{REDACTED} short"
    assert "short" not in redactor.secrets


def test_redactor_treats_secrets_as_literals() -> None:
    redactor = Redactor(["a.b*c+d(e)[f]"])
    assert redactor("x a.b*c+d(e)[f] y axbbbcd") == f"x {REDACTED} y axbbbcd"


PLAIN_LINES = [
    "talosctl get extensions: nvidia-open-gpu-kernel-modules-production 570.172.08-v1.11.5",
    "pod log: Registered device plugin for 'nvidia.com/gpu' with Kubelet",
    "kubeconfig /home/u/.kube/config: context 'lab' not found (available: a, b)",
    "Unauthorized: bearer authentication failed",
    "the token was rejected; key: value",
    "node gpu-node-1 InternalIP 10.5.0.2",
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.172.08  Release Build",
    "factory.talos.dev/installer/6698d6f136c5bb37ca8bb8482c9084305084da0a5ead1f4dcae760796f8ab3a2:v1.11.5",
]


@pytest.mark.parametrize("line", PLAIN_LINES)
def test_redactor_leaves_ordinary_output_alone(line: str) -> None:
    assert Redactor()(line) == line


GENERIC_CASES = [
    # (text, secret part that must vanish, context that must stay)
    (
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIGenericKeyBody\n-----END EC PRIVATE KEY-----\nafter",
        "MHcCAQEEIGenericKeyBody",
        "after",
    ),
    ("log cut: -----BEGIN PRIVATE KEY-----\nMIIEvTruncatedBody", "MIIEvTruncatedBody", "log cut:"),
    ("Authorization: Bearer s3cr3t-header-token", "s3cr3t-header-token", "Authorization: Bearer"),
    ("curl -H 'Authorization: Basic YWRtaW46cGFzc3dvcmQ='", "YWRtaW46cGFzc3dvcmQ=", "curl"),
    ("sent bearer abc123.def456-ghi to server", "abc123.def456-ghi", "to server"),
    (
        "id eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl here",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl",
        "here",
    ),
    ("    token: abcdef.0123456789abcdef", "abcdef.0123456789abcdef", "token:"),
    ("join with 9z8y7x.0123456789abcdef now", "9z8y7x.0123456789abcdef", "now"),
    (
        "  secretboxEncryptionSecret: z01mye6j16bspJYtTB/5SFX8j7Ph8YSO",
        "z01mye6j16bspJYtTB/5SFX8j7Ph8YSO",
        "secretbox",
    ),
    ("  aescbcEncryptionSecret: Rk9PQkFSQkFaCg==AAAA", "Rk9PQkFSQkFaCg==AAAA", "aescbc"),
    (
        "    secret: xKgTkNNjN+6pc3ndr1Lz+D4qJPLZn0BkO1nkRo5cn4g=",
        "xKgTkNNjN+6pc3ndr1Lz+D4qJPLZn0BkO1nkRo5cn4g=",
        "secret:",
    ),
    (
        "        key: LS0tLS1CRUdJTiBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0KTUM0Q0FRQXdCUVlESzJW",
        "LS0tLS1CRUdJTiBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0KTUM0Q0FRQXdCUVlESzJW",
        "key:",
    ),
    ('{"token": "json-token-value-1234", "kind": "x"}', "json-token-value-1234", '"kind": "x"'),
    ("    password: hunter2hunter2", "hunter2hunter2", "password:"),
]


@pytest.mark.parametrize(("text", "secret", "kept"), GENERIC_CASES)
def test_generic_patterns_redact_without_known_secrets(text: str, secret: str, kept: str) -> None:
    cleaned = Redactor()(text)
    assert secret not in cleaned
    assert REDACTED in cleaned
    assert kept in cleaned


def test_redaction_is_idempotent(configs: tuple[Path, Path]) -> None:
    kubeconfig, talosconfig = configs
    redactor = Redactor(collect_secrets(kubeconfig=kubeconfig, talosconfig=talosconfig))
    text = f"token: {KUBE_TOKEN}\n{TALOS_KEY_PEM}\nbearer {ID_TOKEN}"
    once = redactor(text)
    assert redactor(once) == once


def test_install_secrets_from_teaches_the_process_wide_redact(
    configs: tuple[Path, Path], fresh_global_redactor: Redactor
) -> None:
    kubeconfig, talosconfig = configs
    assert KUBE_TOKEN in redact(f"x {KUBE_TOKEN}")
    install_secrets_from(kubeconfig, talosconfig)
    assert_no_marker(redact(" ".join(ALL_MARKERS)))
    assert KUBE_TOKEN in fresh_global_redactor.secrets


# ----------------------------------------------------------------------------- logging filter


def _logger_with_filter(redactor: Redactor) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger(f"talos-gpu-test-{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_redacting_filter_cleans_message_args_and_traceback() -> None:
    redactor = Redactor([KUBE_TOKEN, TALOS_PASSWORD])
    logger, stream = _logger_with_filter(redactor)
    logger.info("token is %s and password %r", KUBE_TOKEN, TALOS_PASSWORD)
    try:
        raise RuntimeError(f"failed with {KUBE_TOKEN}")
    except RuntimeError:
        logger.exception("request failed")
    output = stream.getvalue()
    assert_no_marker(output)
    assert "token is ‹redacted› and password '‹redacted›'" in output
    assert "RuntimeError: failed with ‹redacted›" in output


def test_redacting_filter_keeps_records_with_bad_format_args() -> None:
    logger, stream = _logger_with_filter(Redactor([KUBE_TOKEN]))
    logger.warning("only one %s %s", KUBE_TOKEN)  # wrong number of args
    output = stream.getvalue()
    assert "unformattable" in output
    assert_no_marker(output)


def test_redacting_filter_uses_process_wide_redactor_by_default(fresh_global_redactor: Redactor) -> None:
    fresh_global_redactor.add([EXEC_ENV_VALUE])
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "env %s", (EXEC_ENV_VALUE,), None)
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == f"env {REDACTED}"


# ----------------------------------------------------------------------------- errors


def test_usage_error_is_one_redacted_line(fresh_global_redactor: Redactor) -> None:
    fresh_global_redactor.add([KUBE_TOKEN])
    error = UsageError(f"kubeconfig /x: bad\nvalue {KUBE_TOKEN}")
    assert str(error) == "kubeconfig /x: bad value ‹redacted›"
    assert error.message == str(error)


def test_one_line_is_type_and_first_line() -> None:
    assert one_line(ValueError("first line\nsecond line")) == "ValueError: first line"
    assert one_line(TimeoutError()) == "TimeoutError"
    assert (
        one_line(OSError(2, "No such file or directory"))
        == "FileNotFoundError: [Errno 2] No such file or directory"
    )


def test_one_line_redacts_before_cutting(fresh_global_redactor: Redactor) -> None:
    fresh_global_redactor.add([KUBE_TOKEN])
    text = one_line(RuntimeError(f"{'x' * 190} {KUBE_TOKEN}"))
    assert len(text) <= 200
    assert "\n" not in text
    assert "kubetoken" not in text  # no prefix of the secret survives the cut
    assert one_line(RuntimeError(f"{TALOS_KEY_PEM}")) == f"RuntimeError: {REDACTED}"


def test_one_line_of_kubernetes_api_exception() -> None:
    from kubernetes.client.exceptions import ApiException

    exc = ApiException(status=403, reason="Forbidden")
    exc.body = '{"kind":"Status","message":"nodes is forbidden: User \\"x\\" cannot list nodes"}'
    assert one_line(exc) == 'ApiException: 403 Forbidden: nodes is forbidden: User "x" cannot list nodes'
    assert one_line(ApiException(status=500, reason="Internal Server Error")) == (
        "ApiException: 500 Internal Server Error"
    )


def test_one_line_of_urllib3_retry_error_leads_with_the_cause() -> None:
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    cause = NewConnectionError(
        object(), "Failed to establish a new connection: [Errno 111] Connection refused"
    )
    exc = MaxRetryError(None, "/api/v1/nodes" + "?x=" + "y" * 300, reason=cause)  # type: ignore[arg-type]
    text = one_line(exc)
    assert text.startswith("MaxRetryError: NewConnectionError: ")
    assert "Connection refused" in text
    assert "object at 0x" not in text


def test_many_known_secrets_take_the_compiled_path_and_all_go() -> None:
    from checks.redact import REDACTED, Redactor

    secrets = [f"planted-secret-{index:04d}-{'x' * (index % 7)}" for index in range(Redactor.PLAIN_LIMIT * 2)]
    few, many = Redactor(secrets[:3]), Redactor(secrets)
    text = " | ".join(reversed(secrets)) + " | planted-secret-99999 stays"
    for redactor, gone in ((few, secrets[:3]), (many, secrets)):
        cleaned = redactor(text)
        assert all(secret not in cleaned for secret in gone)
        assert cleaned.count(REDACTED) == len(gone) and cleaned.endswith("planted-secret-99999 stays")
    many.add(["planted-secret-99999"])  # a new secret after the alternation was built
    assert "planted-secret-99999" not in many(text)
