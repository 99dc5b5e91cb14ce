"""The lab's ``helm``: repositories and the nvidia-device-plugin release, against the lab's state.

Run as ``python -m lab.helm ...``. The state directory is the directory of the kubeconfig
(``--kubeconfig``, else ``$KUBECONFIG``). Installing renders the chart's DaemonSet (``lab/chart.py``)
into ``state["kube"]["daemonsets"]`` and records the release in ``state["helm"]``; the API server's
controller takes it from there. Messages follow Helm 3.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from lab import chart
from lab import faults as lab_faults
from lab import operator as gpu_operator
from lab import state as lab_state
from lab.goyaml import dump_helm

HELM_VERSION = "v3.17.3"
HELM_COMMIT = "e4da49785aa6e6ee2b86efd5dd9e43400318262b"
GO_VERSION = "go1.23.7"
CHART_REFERENCE = "nvdp/nvidia-device-plugin"
WAIT_POLL_S = 0.2


class HelmError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# --- command line -----------------------------------------------------------------------------------------

GLOBAL_VALUE_FLAGS = {"kubeconfig", "kube-context", "namespace", "kube-token", "kube-apiserver", "registry-config",
                      "repository-config", "repository-cache"}
GLOBAL_BOOL_FLAGS = {"debug", "help", "all-namespaces"}
SHORT_FLAGS = {"n": "namespace", "h": "help", "A": "all-namespaces", "o": "output", "f": "values", "i": "install",
               "a": "all"}
COMMAND_VALUE_FLAGS = {"output", "values", "version", "set", "set-string", "timeout", "description", "filter"}
COMMAND_BOOL_FLAGS = {"install", "create-namespace", "wait", "atomic", "reuse-values", "reset-values", "force",
                      "dry-run", "short", "all", "wait-for-jobs", "devel", "force-update", "keep-history",
                      "no-hooks", "skip-crds", "cleanup-on-fail", "date", "reverse"}


class Invocation:
    def __init__(self) -> None:
        self.words: list[str] = []
        self.values: dict[str, list[str]] = {}

    def value(self, name: str, default: str | None = None) -> str | None:
        found = self.values.get(name)
        return found[-1] if found else default

    def all(self, name: str) -> list[str]:
        return list(self.values.get(name, []))

    def flag(self, name: str) -> bool:
        found = self.values.get(name)
        return bool(found) and found[-1].lower() not in ("false", "0")


def parse_args(argv: list[str]) -> Invocation:
    invocation = Invocation()
    index = 0
    while index < len(argv):
        token = argv[index]
        index += 1
        if token == "--":
            invocation.words.extend(argv[index:])
            break
        if not token.startswith("-") or token == "-":
            invocation.words.append(token)
            continue
        if token.startswith("--"):
            name, has_inline, inline = token[2:].partition("=")
        else:
            letter = token[1]
            if letter not in SHORT_FLAGS:
                raise HelmError(f"Error: unknown shorthand flag: '{letter}' in {token}")
            name = SHORT_FLAGS[letter]
            rest = token[2:]
            has_inline = "=" if rest else ""
            inline = rest[1:] if rest.startswith("=") else rest
        if name in GLOBAL_VALUE_FLAGS or name in COMMAND_VALUE_FLAGS:
            if has_inline:
                value = inline
            elif index < len(argv):
                value = argv[index]
                index += 1
            else:
                raise HelmError(f"Error: flag needs an argument: --{name}")
        elif name in GLOBAL_BOOL_FLAGS or name in COMMAND_BOOL_FLAGS:
            value = inline if has_inline else "true"
        else:
            raise HelmError(f"Error: unknown flag: --{name}")
        invocation.values.setdefault(name, []).append(value)
    return invocation


# --- kubeconfig / state ------------------------------------------------------------------------------------


def kubeconfig_path(invocation: Invocation) -> Path:
    given = invocation.value("kubeconfig") or os.environ.get("KUBECONFIG")
    if not given:
        return Path.home() / ".kube" / "config"
    return Path(given.split(os.pathsep)[0]).expanduser()


def context_namespace(path: Path, context_name: str | None) -> str:
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "default"
    name = context_name or config.get("current-context")
    for entry in config.get("contexts") or []:
        if entry.get("name") == name:
            return str((entry.get("context") or {}).get("namespace") or "default")
    return "default"


def _resource_version(state: dict[str, Any]) -> int:
    highest = 0
    for objects in (state.get("kube") or {}).values():
        if not isinstance(objects, list):
            continue
        for item in objects:
            try:
                highest = max(highest, int(item.get("metadata", {}).get("resourceVersion", 0)))
            except (TypeError, ValueError, AttributeError):
                continue
    return highest + 1


def _release(state: dict[str, Any], name: str, namespace: str) -> dict[str, Any] | None:
    for release in state["helm"].get("releases", []):
        if release["name"] == name and release["namespace"] == namespace:
            return release
    return None


def _deploy_time(release: dict[str, Any]) -> str:
    stamp = release.get("updated", "")
    match = re.match(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})", stamp)
    if not match:
        return stamp
    parsed = time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
    return time.strftime("%a %b %e %H:%M:%S %Y", parsed)


def _iso_time(release: dict[str, Any]) -> str:
    stamp = release.get("updated", "")
    match = re.match(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(\.\d+)?", stamp)
    if not match:
        return stamp
    return f"{match.group(1)}T{match.group(2)}{match.group(3) or ''}Z"


def _status_block(release: dict[str, Any]) -> str:
    return (
        f"NAME: {release['name']}\n"
        f"LAST DEPLOYED: {_deploy_time(release)}\n"
        f"NAMESPACE: {release['namespace']}\n"
        f"STATUS: {release['status']}\n"
        f"REVISION: {release['revision']}\n"
        "TEST SUITE: None\n"
    )


def uitable(rows: list[list[str]]) -> str:
    """Helm's table (gosuri/uitable): cells padded to the column width, separated by a tab."""
    widths = [0] * max(len(row) for row in rows)
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    return "".join("\t".join(cell.ljust(widths[index]) for index, cell in enumerate(row)) + "\n" for row in rows)


def _list_entry(release: dict[str, Any]) -> dict[str, str]:
    return {
        "name": release["name"],
        "namespace": release["namespace"],
        "revision": str(release["revision"]),
        "updated": release["updated"],
        "status": release["status"],
        "chart": release["chart"],
        "app_version": release["app_version"],
    }


# --- commands ------------------------------------------------------------------------------------------------


class Context:
    def __init__(self, invocation: Invocation, out: lab_faults.Output) -> None:
        self.invocation = invocation
        self.out = out
        self.kubeconfig = kubeconfig_path(invocation)
        self.state_dir = self.kubeconfig.parent
        self.namespace = invocation.value("namespace") or context_namespace(self.kubeconfig,
                                                                             invocation.value("kube-context"))

    def load(self) -> dict[str, Any]:
        try:
            return lab_state.load(self.state_dir)
        except FileNotFoundError as error:
            raise HelmError("Error: Kubernetes cluster unreachable: the server could not find the requested resource") \
                from error


def _write_repositories_file(state_dir: Path, repos: list[dict[str, str]]) -> None:
    """Mirror of the repositories for a person looking at ``$STATE/helm`` (the state is authoritative)."""
    directory = state_dir / "helm"
    directory.mkdir(exist_ok=True)
    document = {
        "apiVersion": "",
        "generated": "0001-01-01T00:00:00Z",
        "repositories": [{"name": repo["name"], "url": repo["url"], "caFile": "", "certFile": "", "keyFile": "",
                          "insecure_skip_tls_verify": False, "pass_credentials_all": False, "password": "",
                          "username": ""} for repo in repos],
    }
    (directory / "repositories.yaml").write_text(dump_helm(document))


def cmd_repo(ctx: Context) -> int:
    words = ctx.invocation.words
    sub = words[1] if len(words) > 1 else ""
    if sub == "add":
        if len(words) != 4:
            raise HelmError('Error: "helm repo add" requires 2 arguments\n\nUsage:  helm repo add [NAME] [URL] [flags]')
        name, url = words[2], words[3].rstrip("/")
        with lab_state.mutate(ctx.state_dir) as state:
            repos = state["helm"].setdefault("repos", [])
            existing = next((repo for repo in repos if repo["name"] == name), None)
            if existing and existing["url"].rstrip("/") == url:
                ctx.out.out(f'"{name}" already exists with the same configuration, skipping\n')
                return 0
            if existing and not ctx.invocation.flag("force-update"):
                raise HelmError(f"Error: repository name ({name}) already exists, please specify a different name")
            if existing:
                existing["url"] = url
            else:
                repos.append({"name": name, "url": url})
            _write_repositories_file(ctx.state_dir, repos)
        ctx.out.out(f'"{name}" has been added to your repositories\n')
        return 0
    if sub in ("list", "ls"):
        repos = ctx.load()["helm"].get("repos", [])
        if not repos:
            raise HelmError("Error: no repositories to show")
        output = ctx.invocation.value("output", "table")
        if output == "json":
            ctx.out.out(json.dumps([{"name": r["name"], "url": r["url"]} for r in repos], separators=(",", ":")) + "\n")
        elif output == "yaml":
            ctx.out.out(dump_helm([{"name": r["name"], "url": r["url"]} for r in repos]))
        else:
            ctx.out.out(uitable([["NAME", "URL"]] + [[r["name"], r["url"]] for r in repos]))
        return 0
    if sub in ("update", "up"):
        repos = ctx.load()["helm"].get("repos", [])
        if not repos:
            raise HelmError("Error: no repositories found. You must add one before updating")
        lines = ["Hang tight while we grab the latest from your chart repositories..."]
        lines += [f'...Successfully got an update from the "{repo["name"]}" chart repository' for repo in repos]
        lines.append("Update Complete. ⎈Happy Helming!⎈")
        ctx.out.out("\n".join(lines) + "\n")
        return 0
    if sub in ("remove", "rm"):
        names = words[2:]
        with lab_state.mutate(ctx.state_dir) as state:
            repos = state["helm"].setdefault("repos", [])
            for name in names:
                if not any(repo["name"] == name for repo in repos):
                    raise HelmError(f'Error: no repo named "{name}" found')
            state["helm"]["repos"] = [repo for repo in repos if repo["name"] not in names]
            _write_repositories_file(ctx.state_dir, state["helm"]["repos"])
        for name in names:
            ctx.out.out(f'"{name}" has been removed from your repositories\n')
        return 0
    raise HelmError(f'Error: unknown command "{sub}" for "helm repo"')


def cmd_list(ctx: Context) -> int:
    state = ctx.load()
    releases = state["helm"].get("releases", [])
    if not ctx.invocation.flag("all-namespaces"):
        releases = [release for release in releases if release["namespace"] == ctx.namespace]
    releases = sorted(releases, key=lambda release: release["name"])
    output = ctx.invocation.value("output", "table")
    entries = [_list_entry(release) for release in releases]
    if output == "json":
        ctx.out.out(json.dumps(entries, separators=(",", ":")) + "\n")
    elif output == "yaml":
        ctx.out.out(dump_helm(entries))
    elif ctx.invocation.flag("short"):
        ctx.out.out("".join(entry["name"] + "\n" for entry in entries))
    else:
        header = ["NAME", "NAMESPACE", "REVISION", "UPDATED", "STATUS", "CHART", "APP VERSION"]
        rows = [[entry["name"], entry["namespace"], entry["revision"], entry["updated"], entry["status"],
                 entry["chart"], entry["app_version"]] for entry in entries]
        ctx.out.out(uitable([header] + rows))
    return 0


def _find_release(ctx: Context, state: dict[str, Any], verb: str) -> dict[str, Any]:
    words = ctx.invocation.words
    if len(words) < 2:
        raise HelmError(f'Error: "helm {verb}" requires 1 argument')
    release = _release(state, words[1], ctx.namespace)
    if release is None:
        raise HelmError("Error: release: not found")
    return release


def _status_document(state: dict[str, Any], release: dict[str, Any]) -> dict[str, Any]:
    daemonset = next((item for item in state["kube"].get("daemonsets", [])
                      if item["metadata"].get("annotations", {}).get("meta.helm.sh/release-name") == release["name"]),
                     None)
    stamp = _iso_time(release)
    return {
        "name": release["name"],
        "info": {
            "first_deployed": stamp,
            "last_deployed": stamp,
            "deleted": "",
            "description": "Install complete" if release["revision"] == 1 else "Upgrade complete",
            "status": release["status"],
        },
        "chart": {
            "metadata": {"name": chart.CHART_NAME, "version": release["app_version"],
                         "description": "A Helm chart for the nvidia-device-plugin on Kubernetes",
                         "apiVersion": "v2", "appVersion": release["app_version"], "kubeVersion": ">= 1.10.0-0",
                         "type": "application"},
        },
        "config": release.get("values") or {},
        "manifest": chart.manifest(daemonset) if daemonset else "",
        "version": release["revision"],
        "namespace": release["namespace"],
    }


def cmd_status(ctx: Context) -> int:
    state = ctx.load()
    release = _find_release(ctx, state, "status")
    if ctx.invocation.value("output") == "json":
        ctx.out.out(json.dumps(_status_document(state, release), separators=(",", ":")) + "\n")
    elif ctx.invocation.value("output") == "yaml":
        ctx.out.out(dump_helm(_status_document(state, release)))
    else:
        ctx.out.out(_status_block(release))
    return 0


def cmd_get(ctx: Context) -> int:
    words = ctx.invocation.words
    if len(words) < 2 or words[1] != "values":
        raise HelmError(f'Error: unknown command "{words[1] if len(words) > 1 else ""}" for "helm get"')
    state = ctx.load()
    release = _release(state, words[2], ctx.namespace) if len(words) > 2 else None
    if release is None:
        raise HelmError("Error: release: not found")
    values = release.get("values") or {}
    if ctx.invocation.flag("all"):
        values = chart.merged_values(values)
    output = ctx.invocation.value("output", "table")
    if output == "json":
        ctx.out.out(json.dumps(values, separators=(",", ":"), sort_keys=True) + "\n")
    elif output == "yaml":
        ctx.out.out(dump_helm(values))
    else:
        heading = "COMPUTED VALUES:" if ctx.invocation.flag("all") else "USER-SUPPLIED VALUES:"
        ctx.out.out(f"{heading}\n{dump_helm(values) if values else 'null' + chr(10)}")
    return 0


def _typed(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _apply_set(values: dict[str, Any], expression: str, as_string: bool) -> None:
    for assignment in re.split(r"(?<!\\),", expression):
        key, separator, raw = assignment.partition("=")
        if not separator:
            raise HelmError(f'Error: failed parsing --set data: key "{assignment}" has no value')
        path = key.split(".")
        target = values
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[path[-1]] = raw if as_string else _typed(raw)


def _user_values(invocation: Invocation) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in invocation.all("values"):
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text()
        except OSError as error:
            raise HelmError(f"Error: open {path}: {(error.strerror or str(error)).lower()}") from error
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise HelmError(f"Error: failed to parse {path}: error converting YAML to JSON: {error}") from error
        if not isinstance(loaded, dict):
            raise HelmError(f"Error: failed to parse {path}: error unmarshaling JSON: cannot unmarshal into values")
        values = _merge_user_values(values, loaded)
    for expression in invocation.all("set"):
        _apply_set(values, expression, as_string=False)
    for expression in invocation.all("set-string"):
        _apply_set(values, expression, as_string=True)
    return values


def _merge_user_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge_user_values(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _chart_version(ctx: Context, state: dict[str, Any], reference: str) -> tuple[str, str]:
    """(the chart's name, the version asked for or the newest): nvidia-device-plugin from any repository,
    gpu-operator (versions with a leading v, as NVIDIA's repository names them)."""
    repo, _, chart_name = reference.partition("/")
    if not chart_name:
        raise HelmError(f"Error: repo {reference} not found" if "/" in reference else
                        f"Error: non-absolute URLs should be in form of repo_name/path_to_chart, got: {reference}")
    if not any(item["name"] == repo for item in state["helm"].get("repos", [])):
        raise HelmError(f"Error: repo {repo} not found")
    wanted = ctx.invocation.value("version")
    known = {chart.CHART_NAME: ([v for v in chart.KNOWN_VERSIONS], chart.CHART_VERSION),
             gpu_operator.CHART_NAME: (list(gpu_operator.KNOWN_VERSIONS), gpu_operator.CHART_VERSION)}
    if chart_name not in known:
        raise HelmError(f'Error: chart "{chart_name}" matching {wanted or ""} not found in {repo} index. '
                        "(try 'helm repo update'): no chart name found")
    versions, newest = known[chart_name]
    if wanted:
        version = next((v for v in versions if v.lstrip("v") == wanted.lstrip("v")), None)
        if version is None:
            raise HelmError(f'Error: chart "{chart_name}" matching {wanted} not found in {repo} index. '
                            f"(try 'helm repo update'): no chart version found for {chart_name}-{wanted}")
        return chart_name, version
    return chart_name, newest


def _namespace_exists(state: dict[str, Any], namespace: str) -> bool:
    return any(item["metadata"]["name"] == namespace for item in state["kube"].get("namespaces", []))


def _daemonset_ready(state: dict[str, Any], namespace: str, name: str) -> bool:
    for item in state["kube"].get("daemonsets", []):
        metadata = item["metadata"]
        if metadata["namespace"] == namespace and metadata["name"] == name:
            status = item.get("status") or {}
            if status.get("observedGeneration", 0) < metadata.get("generation", 1):
                return False
            return status.get("numberReady", 0) >= status.get("desiredNumberScheduled", 0)
    return False


class _DryRun(Exception):
    def __init__(self, existed: bool, record: dict[str, Any], rendered: dict[str, Any]) -> None:
        super().__init__("dry run")
        self.existed, self.record, self.rendered = existed, record, rendered


class _Printed(Exception):
    """A dry run that stores nothing: its whole output."""

    def __init__(self, text: str) -> None:
        super().__init__("dry run")
        self.text = text


def cmd_upgrade(ctx: Context, *, install_only: bool = False) -> int:
    try:
        return _upgrade(ctx, install_only=install_only)
    except _Printed as printed:
        ctx.out.out(printed.text)
        return 0
    except _DryRun as dry:
        name = dry.record["name"]
        if not install_only:
            ctx.out.out(f'Release "{name}" has been upgraded. Happy Helming!\n' if dry.existed
                        else f'Release "{name}" does not exist. Installing it now.\n')
        ctx.out.out(_status_block(dry.record))
        ctx.out.out("HOOKS:\nMANIFEST:\n---\n# Source: nvidia-device-plugin/templates/daemonset-device-plugin.yml\n")
        manifest = {key: value for key, value in dry.rendered.items() if key != "status"}
        manifest["metadata"] = {key: value for key, value in manifest["metadata"].items()
                                if key not in ("uid", "resourceVersion", "creationTimestamp", "generation")}
        ctx.out.out(yaml.safe_dump(manifest, sort_keys=False))
        return 0


def _upgrade(ctx: Context, *, install_only: bool) -> int:
    invocation = ctx.invocation
    words = invocation.words
    verb = "install" if install_only else "upgrade"
    if len(words) < 3:
        raise HelmError(f'Error: "helm {verb}" requires 2 arguments')
    release_name, reference = words[1], words[2]
    install = install_only or invocation.flag("install")
    failure = "INSTALLATION FAILED" if install_only else "UPGRADE FAILED"
    user_values = _user_values(invocation)
    namespace = ctx.namespace
    now = time.time()
    with lab_state.mutate(ctx.state_dir) as state:
        chart_name, version = _chart_version(ctx, state, reference)
        existing = _release(state, release_name, namespace)
        if install_only and existing is not None:
            raise HelmError("Error: INSTALLATION FAILED: cannot re-use a name that is still in use")
        if existing is None and not install:
            raise HelmError(f'Error: UPGRADE FAILED: "{release_name}" has no deployed releases')
        if existing is None:
            failure = "INSTALLATION FAILED"
        if invocation.flag("reuse-values") and existing is not None:
            user_values = _merge_user_values(existing.get("values") or {}, user_values)
        if not _namespace_exists(state, namespace):
            if invocation.flag("create-namespace"):
                from lab.scenarios import namespace_object

                state["kube"].setdefault("namespaces", []).append(
                    namespace_object(namespace, now, _resource_version(state)))
            else:
                raise HelmError(f'Error: {failure}: create: failed to create: namespaces "{namespace}" not found')
        if chart_name == gpu_operator.CHART_NAME:
            return _install_operator(ctx, state, existing, release_name, version, user_values, now,
                                     install_only=install_only)
        try:
            rendered = chart.render_daemonset(release_name, namespace, user_values, created=now,
                                              resource_version=_resource_version(state), chart_version=version)
        except chart.ChartError as error:
            raise HelmError(f"Error: {failure}: {error}") from error
        daemonsets = state["kube"].setdefault("daemonsets", [])
        key = (rendered["metadata"]["namespace"], rendered["metadata"]["name"])
        for index, item in enumerate(daemonsets):
            if (item["metadata"]["namespace"], item["metadata"]["name"]) == key:
                previous = item
                generation = int(previous["metadata"].get("generation", 1))
                if previous["spec"]["template"] != rendered["spec"]["template"]:
                    generation += 1
                rendered["metadata"].update(
                    uid=previous["metadata"]["uid"],
                    creationTimestamp=previous["metadata"]["creationTimestamp"],
                    generation=generation,
                )
                rendered["metadata"]["annotations"]["deprecated.daemonset.template.generation"] = str(generation)
                rendered["status"] = previous.get("status", rendered["status"])
                daemonsets[index] = rendered
                break
        else:
            daemonsets.append(rendered)
        record = {
            "name": release_name,
            "namespace": namespace,
            "revision": (existing["revision"] + 1) if existing else 1,
            "status": "deployed",
            "chart": f"{chart.CHART_NAME}-{version}",
            "app_version": version,
            "updated": chart.helm_time(now),
            "values": user_values,
        }
        if invocation.flag("dry-run"):  # render and report, store nothing (mutate writes nothing on raise)
            record["status"] = "pending-upgrade" if existing else "pending-install"
            raise _DryRun(existing is not None, record, rendered)
        releases = state["helm"].setdefault("releases", [])
        if existing is not None:
            releases[releases.index(existing)] = record
        else:
            releases.append(record)
    if invocation.flag("wait") or invocation.flag("atomic"):
        timeout = _duration(invocation.value("timeout", "5m0s") or "5m0s")
        deadline = time.monotonic() + timeout
        while not _daemonset_ready(ctx.load(), key[0], key[1]):
            if time.monotonic() > deadline:
                with lab_state.mutate(ctx.state_dir) as state:
                    stored = _release(state, release_name, namespace)
                    if stored is not None:
                        stored["status"] = "failed"
                raise HelmError(f"Error: {failure}: context deadline exceeded")
            time.sleep(WAIT_POLL_S)
    if not install_only:
        if existing is None:
            ctx.out.out(f'Release "{release_name}" does not exist. Installing it now.\n')
        else:
            ctx.out.out(f'Release "{release_name}" has been upgraded. Happy Helming!\n')
    ctx.out.out(_status_block(record))
    return 0


def _install_operator(ctx: Context, state: dict[str, Any], existing: dict[str, Any] | None, release_name: str,
                      version: str, user_values: dict[str, Any], now: float, *, install_only: bool) -> int:
    """The gpu-operator chart: its CRD (kept by a later uninstall, as Helm keeps a chart's crds/) and its
    ClusterPolicy `cluster-policy`; the operator (lab/operator.py, run by the API server) does the rest."""
    namespace = ctx.namespace
    kube = state["kube"]
    policies = kube.setdefault("clusterpolicies", [])
    previous = next((p for p in policies if p["metadata"]["name"] == gpu_operator.CLUSTER_POLICY), None)
    policy = gpu_operator.render_cluster_policy(release_name, namespace, user_values, chart_version=version,
                                                created=now, resource_version=_resource_version(state))
    if previous is not None:
        policy["metadata"]["creationTimestamp"] = previous["metadata"]["creationTimestamp"]
        if previous.get("spec") != policy["spec"]:
            policy["metadata"]["generation"] = int(previous["metadata"].get("generation") or 1) + 1
    record = {
        "name": release_name, "namespace": namespace, "revision": (existing["revision"] + 1) if existing else 1,
        "status": "deployed", "chart": f"{gpu_operator.CHART_NAME}-{version}", "app_version": version,
        "updated": chart.helm_time(now), "values": user_values,
    }
    heading = "" if install_only else (f'Release "{release_name}" has been upgraded. Happy Helming!\n' if existing
                                       else f'Release "{release_name}" does not exist. Installing it now.\n')
    if ctx.invocation.flag("dry-run"):  # mutate writes nothing when this raises
        record["status"] = "pending-upgrade" if existing else "pending-install"
        manifest = {key: value for key, value in policy.items()}
        manifest["metadata"] = {"name": policy["metadata"]["name"], "labels": policy["metadata"]["labels"]}
        raise _Printed(heading + _status_block(record) + "HOOKS:\nMANIFEST:\n---\n"
                       "# Source: gpu-operator/templates/clusterpolicy.yaml\n" + yaml.safe_dump(manifest, sort_keys=False))
    crds = kube.setdefault("crds", [])
    if gpu_operator.CRD not in crds:
        crds.append(gpu_operator.CRD)
    kube["clusterpolicies"] = [p for p in policies if p is not previous] + [policy]
    releases = state["helm"].setdefault("releases", [])
    if existing is not None:
        releases[releases.index(existing)] = record
    else:
        releases.append(record)
    ctx.out.out(heading + _status_block(record))
    return 0


def _duration(text: str) -> float:
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts:
        try:
            return float(text)
        except ValueError as error:
            raise HelmError(f'Error: invalid argument "{text}" for "--timeout" flag: time: invalid duration') from error
    for number, unit in parts:
        total += float(number) * {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}[unit]
    return total


def cmd_uninstall(ctx: Context) -> int:
    words = ctx.invocation.words
    if len(words) < 2:
        raise HelmError('Error: "helm uninstall" requires at least 1 argument')
    for name in words[1:]:
        with lab_state.mutate(ctx.state_dir) as state:
            release = _release(state, name, ctx.namespace)
            if release is None:
                raise HelmError(f"Error: uninstall: Release not loaded: {name}: release: not found")
            state["helm"]["releases"].remove(release)
            for kind in ("daemonsets", "clusterpolicies"):  # the chart's objects (a CRD stays, as Helm keeps crds/)
                state["kube"][kind] = [
                    item for item in state["kube"].get(kind, [])
                    if item["metadata"].get("annotations", {}).get("meta.helm.sh/release-name") != name
                    or item["metadata"].get("annotations", {}).get("meta.helm.sh/release-namespace") != ctx.namespace
                ]
        ctx.out.out(f'release "{name}" uninstalled\n')
    return 0


def cmd_version(ctx: Context) -> int:
    if ctx.invocation.flag("short"):
        ctx.out.out(f"{HELM_VERSION}+g{HELM_COMMIT[:7]}\n")
    else:
        ctx.out.out(f'version.BuildInfo{{Version:"{HELM_VERSION}", GitCommit:"{HELM_COMMIT}", '
                    f'GitTreeState:"clean", GoVersion:"{GO_VERSION}"}}\n')
    return 0


COMMANDS: dict[str, Callable[[Context], int]] = {
    "repo": cmd_repo,
    "list": cmd_list,
    "ls": cmd_list,
    "status": cmd_status,
    "get": cmd_get,
    "upgrade": cmd_upgrade,
    "install": lambda ctx: cmd_upgrade(ctx, install_only=True),
    "uninstall": cmd_uninstall,
    "delete": cmd_uninstall,
    "version": cmd_version,
}

USAGE = """\
The Kubernetes package manager (talos-gpu lab simulation)

Usage:
  helm [command]

Available Commands:
  get         download extended information of a named release
  install     install a chart
  list        list releases
  repo        add, list, remove, update, and index chart repositories
  status      display the status of the named release
  uninstall   uninstall a release
  upgrade     upgrade a release
  version     print the client version information
"""


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    out: lab_faults.Output | None = None
    try:
        invocation = parse_args(arguments)
        if invocation.flag("help") or not invocation.words:
            sys.stdout.write(USAGE)
            return 0
        command = invocation.words[0]
        if command not in COMMANDS:
            raise HelmError(f'Error: unknown command "{command}" for "helm"\nRun \'helm --help\' for usage.')
        state_dir = kubeconfig_path(invocation).parent
        try:
            state = lab_state.load(state_dir)
        except (FileNotFoundError, json.JSONDecodeError):
            state = {}
        latency_ms = float((state.get("knobs") or {}).get("talosctl_latency_ms", 0) or 0)
        if latency_ms:
            time.sleep(latency_ms / 1000)
        words = invocation.words[:2] if command == "repo" else invocation.words[:1]
        fault_knobs = state.get("faults") or {}
        replaced = lab_faults.apply_entry_faults(fault_knobs, "helm", words)
        if replaced is not None:
            return replaced
        out = lab_faults.Output(fault_knobs, "helm", words)
        return COMMANDS[command](Context(invocation, out))
    except HelmError as error:
        if out is not None:
            out.close()
            out = None
        sys.stderr.write(error.message + "\n")
        return error.code
    finally:
        if out is not None:
            out.close()


if __name__ == "__main__":
    sys.exit(main())
