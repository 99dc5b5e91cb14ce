"""Resolving the talosconfig, kubeconfig and external programs (checks.config)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from checks.config import (
    KubeTarget,
    TalosTarget,
    find_helm,
    helm_path,
    load_kube_api_client,
    resolve_kube,
    resolve_talos,
    talosctl_global_args,
    talosctl_path,
    validate_node_address,
)
from checks.errors import UsageError
from tests.paths import REPO, TALOS_SAMPLES
from tests.test_redact import (
    KUBE_TOKEN,
    TALOS_KEY,
    assert_no_marker,
    kubeconfig_document,
    talosconfig_document,
    write_secret_configs,
)


def usage_error(call, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    """The message of the UsageError the call raises; also checks it is one line without secrets."""
    with pytest.raises(UsageError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert "Traceback" not in message
    assert_no_marker(message)
    return message


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# The malformed line itself holds a secret: PyYAML would quote it in its message.
MALFORMED_WITH_SECRET = f"contexts:\n  a:\n    key: {TALOS_KEY}: [oops\n"
MALFORMED_KUBECONFIG = f"users:\n- name: x\n  user:\n    token: {KUBE_TOKEN}: {{\n"


# ----------------------------------------------------------------------------- node addresses


@pytest.mark.parametrize(
    "address",
    ["10.0.0.5", "192.0.2.20", "::1", "2001:db8::5", "fe80::1", "gpu-node-1", "a", "node.example.com",
     "node.example.com.", "n0de-1.Cluster.Local", "x" * 63 + ".example"],
)  # fmt: skip
def test_valid_node_addresses_pass_through(address: str) -> None:
    assert validate_node_address(address) == address


@pytest.mark.parametrize(
    "address",
    ["", "--help", "-n", "-node1", "a;b", "a b", " a", "a ", "a\tb", "a\nb", "a/b", "a$(id)", "a`id`", "a|b",
     "a&b", "a>b", "a'b", 'a"b', "a*", "node_1", "a..b", ".a", "-a.example.com", "a-.example.com",
     "x" * 64, "10.0.0.5:50000", "[::1]", "999.1.1.1", "10.0.0", "a" * 250 + ".example"],
)  # fmt: skip
def test_invalid_node_addresses_are_rejected(address: str) -> None:
    message = usage_error(validate_node_address, address)
    assert message.startswith("invalid node address ")


def test_invalid_node_address_message_quotes_and_truncates() -> None:
    assert usage_error(validate_node_address, "--help").startswith("invalid node address '--help'")
    assert usage_error(validate_node_address, "").startswith("invalid node address ''")
    long_message = usage_error(validate_node_address, "a;" * 200)
    assert "…" in long_message and len(long_message) < 200
    assert "\\n" in usage_error(validate_node_address, "a\nb")  # escaped, still one line


# ----------------------------------------------------------------------------- talosconfig


@pytest.fixture
def talosconfig(tmp_path: Path) -> Path:
    return write_secret_configs(tmp_path / "cfg")[1]


def test_resolve_talos_uses_current_context_and_first_node(talosconfig: Path) -> None:
    target = resolve_talos(str(talosconfig), None, None, env={})
    assert target == TalosTarget(
        talosconfig=talosconfig, context="mycluster", node="192.0.2.20", endpoints=("192.0.2.10",)
    )
    assert_no_marker(repr(target))


def test_resolve_talos_options_override_file(talosconfig: Path) -> None:
    target = resolve_talos(str(talosconfig), "withauth", "gpu-node-1", env={})
    assert (target.context, target.node, target.endpoints) == ("withauth", "gpu-node-1", ("192.0.2.30",))


def test_resolve_talos_from_environment_then_home(tmp_path: Path, talosconfig: Path) -> None:
    assert resolve_talos(None, None, None, env={"TALOSCONFIG": str(talosconfig)}).talosconfig == talosconfig
    home = tmp_path / "home"
    default = write(home / ".talos" / "config", talosconfig.read_text())
    assert resolve_talos(None, None, None, env={"HOME": str(home)}).talosconfig == default
    # the option wins over the environment
    assert (
        resolve_talos(str(talosconfig), None, None, env={"TALOSCONFIG": "/nope"}).talosconfig == talosconfig
    )


def test_resolve_talos_path_with_spaces_works(tmp_path: Path) -> None:
    _, talosconfig = write_secret_configs(tmp_path / "my configs" / "talos dir")
    target = resolve_talos(str(talosconfig), None, None, env={})
    assert target.talosconfig == talosconfig
    assert talosctl_global_args(target) == [
        "--talosconfig", str(talosconfig), "--context", "mycluster", "--nodes", "192.0.2.20",
    ]  # fmt: skip


def test_resolve_talos_reads_the_reconstructed_sample() -> None:
    target = resolve_talos(str(TALOS_SAMPLES / "talosconfig.RECONSTRUCTED.yaml"), None, None, env={})
    assert (target.context, target.node, target.endpoints) == ("mycluster", "192.0.2.20", ("192.0.2.10",))


def test_talosctl_global_args_without_context() -> None:
    target = TalosTarget(talosconfig=Path("/t c/config"), context=None, node="10.0.0.5", endpoints=())
    assert talosctl_global_args(target) == ["--talosconfig", "/t c/config", "--nodes", "10.0.0.5"]


def test_resolve_talos_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert usage_error(resolve_talos, str(missing), None, None, env={}) == f"talosconfig {missing}: not found"
    home = tmp_path / "home"
    message = usage_error(resolve_talos, None, None, None, env={"HOME": str(home)})
    assert message == f"talosconfig {home}/.talos/config: not found"


def test_resolve_talos_directory_and_unreadable(tmp_path: Path) -> None:
    assert "is a directory" in usage_error(resolve_talos, str(tmp_path), None, None, env={})
    unreadable = write(tmp_path / "locked", "context: a\n")
    unreadable.chmod(0)
    try:
        if os.access(unreadable, os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        assert "cannot be read (permission denied)" in usage_error(
            resolve_talos, str(unreadable), None, None, env={}
        )
    finally:
        unreadable.chmod(stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.parametrize("content", ["", "   \n", "# only a comment\n"])
def test_resolve_talos_empty_file(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "talosconfig", content)
    assert usage_error(resolve_talos, str(path), None, None, env={}) == f"talosconfig {path}: is empty"


def test_resolve_talos_malformed_yaml_gives_line_not_content(tmp_path: Path) -> None:
    path = write(tmp_path / "talosconfig", MALFORMED_WITH_SECRET)
    message = usage_error(resolve_talos, str(path), None, None, env={})
    assert message == f"talosconfig {path}: is not valid YAML (line 3)"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("- a\n- b\n", "is not a config file"),
        ("context: a\n", "no contexts defined"),
        ("context: a\ncontexts: {}\n", "no contexts defined"),
        ("contexts:\n  a: {nodes: [10.0.0.1]}\n  b: {}\n", "no current context set: pass --talos-context (available: a, b)"),
        ("context: a\ncontexts:\n  a: [1, 2]\n", "context 'a' is not a mapping"),
    ],
)  # fmt: skip
def test_resolve_talos_bad_structure(tmp_path: Path, document: str, expected: str) -> None:
    path = write(tmp_path / "talosconfig", document)
    assert expected in usage_error(resolve_talos, str(path), None, None, env={})


def test_resolve_talos_unknown_context_lists_available(talosconfig: Path) -> None:
    message = usage_error(resolve_talos, str(talosconfig), "prod", None, env={})
    assert (
        message
        == f"talosconfig {talosconfig}: context 'prod' not found (available: mycluster, sidero, withauth)"
    )


def test_resolve_talos_no_node(talosconfig: Path) -> None:
    message = usage_error(resolve_talos, str(talosconfig), "sidero", None, env={})
    assert message == "no node given: pass -n/--node or set nodes in the talosconfig context 'sidero'"


@pytest.mark.parametrize("node", ["--help", "a;b", "", "a b"])
def test_resolve_talos_rejects_bad_node_option(talosconfig: Path, node: str) -> None:
    assert usage_error(resolve_talos, str(talosconfig), None, node, env={}).startswith(
        f"invalid node address {node!r}"
    )


def test_resolve_talos_rejects_bad_node_in_file(tmp_path: Path) -> None:
    document = talosconfig_document()
    document["contexts"]["mycluster"]["nodes"] = ["--help"]
    path = write(tmp_path / "talosconfig", yaml.safe_dump(document))
    assert usage_error(resolve_talos, str(path), None, None, env={}).startswith(
        "invalid node address '--help'"
    )


# ----------------------------------------------------------------------------- kubeconfig


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    return write_secret_configs(tmp_path / "cfg")[0]


def test_resolve_kube_uses_current_context(kubeconfig: Path) -> None:
    target = resolve_kube(str(kubeconfig), None, env={})
    assert target == KubeTarget(kubeconfig=kubeconfig, context="lab", server="https://127.0.0.1:9")
    assert_no_marker(repr(target))


def test_resolve_kube_context_option(kubeconfig: Path) -> None:
    target = resolve_kube(str(kubeconfig), "other", env={})
    assert (target.context, target.server) == ("other", "https://198.51.100.7:6443")


def test_resolve_kube_from_environment_list_then_home(tmp_path: Path, kubeconfig: Path) -> None:
    env = {"KUBECONFIG": f"{kubeconfig}{os.pathsep}/second/config"}
    assert resolve_kube(None, None, env=env).kubeconfig == kubeconfig
    assert resolve_kube(None, None, env={"KUBECONFIG": f"{os.pathsep}{kubeconfig}"}).kubeconfig == kubeconfig
    home = tmp_path / "home"
    default = write(home / ".kube" / "config", kubeconfig.read_text())
    assert resolve_kube(None, None, env={"HOME": str(home)}).kubeconfig == default
    assert resolve_kube(str(kubeconfig), None, env={"KUBECONFIG": "/nope"}).kubeconfig == kubeconfig


def test_resolve_kube_path_with_spaces_works(tmp_path: Path) -> None:
    kubeconfig, _ = write_secret_configs(tmp_path / "my configs" / "kube dir")
    assert resolve_kube(str(kubeconfig), None, env={}).kubeconfig == kubeconfig


def test_resolve_kube_missing_empty_and_malformed(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert usage_error(resolve_kube, str(missing), None, env={}) == f"kubeconfig {missing}: not found"
    assert usage_error(resolve_kube, None, None, env={"KUBECONFIG": str(missing)}).endswith("not found")
    empty = write(tmp_path / "empty", "")
    assert usage_error(resolve_kube, str(empty), None, env={}) == f"kubeconfig {empty}: is empty"
    malformed = write(tmp_path / "malformed", MALFORMED_KUBECONFIG)
    assert usage_error(resolve_kube, str(malformed), None, env={}) == (
        f"kubeconfig {malformed}: is not valid YAML (line 4)"
    )


def test_resolve_kube_unknown_context_lists_available(kubeconfig: Path) -> None:
    message = usage_error(resolve_kube, str(kubeconfig), "prod", env={})
    assert message == f"kubeconfig {kubeconfig}: context 'prod' not found (available: lab, other)"


def test_resolve_kube_unknown_current_context(tmp_path: Path) -> None:
    document = kubeconfig_document()
    document["current-context"] = "gone"
    path = write(tmp_path / "kubeconfig", yaml.safe_dump(document))
    assert "context 'gone' not found" in usage_error(resolve_kube, str(path), None, env={})


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d.pop("current-context"),
            "no current-context set: pass --context (available: lab, other)",
        ),
        (lambda d: d.update(contexts=[]), "no contexts defined"),
        (lambda d: d["contexts"][0]["context"].pop("cluster"), "context 'lab' names no cluster"),
        (lambda d: d.update(clusters=[]), "context 'lab' refers to cluster 'lab', which is not defined"),
    ],
)
def test_resolve_kube_bad_structure(tmp_path: Path, change, expected: str) -> None:  # type: ignore[no-untyped-def]
    document = kubeconfig_document()
    change(document)
    path = write(tmp_path / "kubeconfig", yaml.safe_dump(document))
    assert usage_error(resolve_kube, str(path), None, env={}) == f"kubeconfig {path}: {expected}"


# ----------------------------------------------------------------------------- Kubernetes client


def tiny_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig that a real client can use: no CA to verify, a bearer token (a marker)."""
    return write(
        path,
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "tiny",
                "clusters": [
                    {"name": "tiny", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "tiny", "user": {"token": KUBE_TOKEN}}],
                "contexts": [{"name": "tiny", "context": {"cluster": "tiny", "user": "tiny"}}],
            }
        ),
    )


def test_load_kube_api_client_builds_a_fast_failing_client(tmp_path: Path) -> None:
    from kubernetes import client as kube_client

    kubeconfig = tiny_kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:9")
    api_client = load_kube_api_client(resolve_kube(str(kubeconfig), None, env={}), redactor=None, request_timeout=2.0)
    try:
        assert api_client.configuration.host == "https://127.0.0.1:9"
        retries = api_client.configuration.retries  # one connection retry; a Retry-After is never slept on here
        assert retries.total in (0, 1) and retries.respect_retry_after_header is False
        started = time.monotonic()
        with pytest.raises(Exception) as caught:  # noqa: B017 - nothing listens on port 9
            kube_client.CoreV1Api(api_client).list_node()
        assert time.monotonic() - started < 5
        assert "refused" in str(caught.value).lower()
        assert_no_marker(str(caught.value))
    finally:
        api_client.close()


def test_load_kube_api_client_applies_the_default_timeout(tmp_path: Path) -> None:
    """A server that accepts connections but never answers must not hang a request."""
    from kubernetes import client as kube_client

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the kernel backlog; nobody ever reads
    try:
        port = silent.getsockname()[1]
        kubeconfig = tiny_kubeconfig(tmp_path / "kubeconfig", f"https://127.0.0.1:{port}")
        api_client = load_kube_api_client(resolve_kube(str(kubeconfig), None, env={}), redactor=None, request_timeout=0.3)
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                kube_client.CoreV1Api(api_client).list_node()
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                outcome.append(exc)

        worker = threading.Thread(target=call, daemon=True)
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive(), "a request to a silent server hung despite the default timeout"
        assert outcome, "the request to a silent server should have failed"
        assert "timed out" in str(outcome[0]).lower()
        api_client.close()
    finally:
        silent.close()


def test_load_kube_api_client_with_colon_in_path(tmp_path: Path) -> None:
    kubeconfig, _ = write_secret_configs(tmp_path / "a:b")
    api_client = load_kube_api_client(resolve_kube(str(kubeconfig), None, env={}), redactor=None)
    assert api_client.configuration.host == "https://127.0.0.1:9"
    api_client.close()


def test_load_kube_api_client_bad_context_is_a_usage_error(kubeconfig: Path) -> None:
    target = KubeTarget(kubeconfig=kubeconfig, context="nowhere", server=None)
    message = usage_error(load_kube_api_client, target, redactor=None)
    assert message.startswith(f"kubeconfig {kubeconfig}: context 'nowhere' cannot be loaded: ConfigException")


def test_load_kube_api_client_malformed_file_quotes_no_content(tmp_path: Path) -> None:
    path = write(tmp_path / "kubeconfig", MALFORMED_KUBECONFIG)
    message = usage_error(load_kube_api_client, KubeTarget(kubeconfig=path, context="x", server=None), redactor=None)
    assert message == f"kubeconfig {path}: is not valid YAML (line 4)"


def test_load_kube_api_client_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    message = usage_error(load_kube_api_client, KubeTarget(kubeconfig=missing, context=None, server=None), redactor=None)
    assert message.startswith(f"kubeconfig {missing}:")


def test_importing_config_does_not_import_kubernetes() -> None:
    code = "import sys, checks.config, checks.profile, checks.redact, checks.errors; print(sorted(" \
        "m for m in ('kubernetes', 'textual', 'lab') if m in sys.modules))"  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- external programs


def make_executable(path: Path) -> Path:
    write(path, "#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_talosctl_from_environment_variable(tmp_path: Path) -> None:
    tool = make_executable(tmp_path / "custom dir" / "my-talosctl")
    assert talosctl_path(env={"TALOSCTL": str(tool), "PATH": ""}) == str(tool)


def test_talosctl_from_path(tmp_path: Path) -> None:
    tool = make_executable(tmp_path / "bin" / "talosctl")
    assert talosctl_path(env={"PATH": f"/nonexistent{os.pathsep}{tool.parent}"}) == str(tool)
    # a bare name in $TALOSCTL is looked up on PATH too
    renamed = make_executable(tmp_path / "bin" / "talosctl-1.11")
    assert talosctl_path(env={"TALOSCTL": "talosctl-1.11", "PATH": str(tool.parent)}) == str(renamed)


def test_talosctl_missing(tmp_path: Path) -> None:
    assert (
        usage_error(talosctl_path, env={"PATH": str(tmp_path)})
        == "talosctl not found: install it or set $TALOSCTL"
    )


def test_talosctl_variable_naming_nothing_executable(tmp_path: Path) -> None:
    not_executable = write(tmp_path / "talosctl", "data")
    message = usage_error(talosctl_path, env={"TALOSCTL": str(not_executable), "PATH": ""})
    assert message == f"$TALOSCTL={str(not_executable)!r}: not an executable file"
    assert "not found on PATH" in usage_error(
        talosctl_path, env={"TALOSCTL": "nosuchtool", "PATH": str(tmp_path)}
    )


def test_helm_lookup(tmp_path: Path) -> None:
    assert find_helm(env={"PATH": str(tmp_path)}) is None
    assert find_helm(env={"HELM": str(tmp_path / "nope"), "PATH": ""}) is None
    assert usage_error(helm_path, env={"PATH": str(tmp_path)}) == "helm not found: install it or set $HELM"
    assert "$HELM=" in usage_error(helm_path, env={"HELM": str(tmp_path / "nope"), "PATH": ""})
    helm = make_executable(tmp_path / "bin" / "helm")
    assert find_helm(env={"PATH": str(helm.parent)}) == str(helm)
    assert helm_path(env={"HELM": str(helm), "PATH": ""}) == str(helm)


def test_load_kube_api_client_teaches_only_the_redactor_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Registering the kubeconfig's secrets is the caller's explicit choice, never a hidden side effect."""
    from checks import redact as redact_module
    from checks.redact import Redactor

    process_wide = Redactor()
    monkeypatch.setattr(redact_module, "REDACTOR", process_wide)
    target = resolve_kube(str(tiny_kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:9")), None, env={})
    load_kube_api_client(target, redactor=None).close()
    assert KUBE_TOKEN not in process_wide.secrets  # None: nobody learns them
    given = Redactor()
    load_kube_api_client(target, redactor=given).close()
    assert KUBE_TOKEN in given.secrets and KUBE_TOKEN not in process_wide.secrets
