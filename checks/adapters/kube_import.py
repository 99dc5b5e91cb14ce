"""Import the parts of the official `kubernetes` client that talos-gpu uses, and only those.

`import kubernetes.client` executes the package's `__init__`, which imports every API group and all
~800 model classes: ~0.6 s of one core here, the largest single cost of `talos-gpu check` (issue 7).
The app reads and writes raw JSON (`_preload_content=False`), so it needs `ApiClient`,
`Configuration`, `ApiException`, four API classes and the kubeconfig loader — about 30 modules.

`kubernetes_client()` registers the packages `kubernetes`, `kubernetes.client`,
`kubernetes.client.api` and `kubernetes.client.models` as *deferred*: real package modules (their
own spec, `__path__` and file) whose `__init__` has not run yet, then imports the submodules it
needs directly. The first access to any other name of a deferred package (`client.V1Pod`,
`kubernetes.__version__`) runs that package's `__init__` in place, so other code importing the
client the usual way still gets all of it. If the package is already imported, or the lean path
fails for any reason (another client version laid out differently), it falls back to the plain
import. The client's code is used unchanged; only the order of imports differs. Measured by
`bench/seed_vs_check.py`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

DEFERRED = ("kubernetes", "kubernetes.client", "kubernetes.client.api", "kubernetes.client.models")
NEEDED = ("kubernetes.client.exceptions", "kubernetes.client.configuration", "kubernetes.client.rest",
          "kubernetes.client.api_client", "kubernetes.client.api.core_v1_api", "kubernetes.client.api.apps_v1_api",
          "kubernetes.client.api.node_v1_api", "kubernetes.client.api.version_api")


@dataclass(frozen=True)
class KubernetesClient:
    """The classes of the official client that the adapters use."""

    ApiClient: Any
    Configuration: Any
    ApiException: Any
    CoreV1Api: Any
    AppsV1Api: Any
    NodeV1Api: Any
    VersionApi: Any
    config: ModuleType  # kubernetes.config: new_client_from_config and friends
    lean: bool  # True when the deferred path was taken (for tests and benchmarks)


_lock = threading.Lock()
_loaded: KubernetesClient | None = None


def kubernetes_client() -> KubernetesClient:
    """The client's classes, importing as little as possible the first time (thread-safe)."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _import()
        return _loaded


def prewarm() -> None:
    """Start importing in a daemon thread now, so that it overlaps whatever the caller does next (the
    first `kubernetes_client()` call then waits for it, or finds it done). Idempotent."""
    global _prewarming
    with _lock:
        if _loaded is not None or _prewarming:
            return
        _prewarming = True
    threading.Thread(target=_prewarm, name="kubernetes-import", daemon=True).start()


def _prewarm() -> None:
    try:
        kubernetes_client()
    except Exception:  # noqa: BLE001 - the caller's own kubernetes_client() call will raise it again
        pass


_prewarming = False


def _import() -> KubernetesClient:
    client = _import_client()
    _guard_exec_plugins()
    return client


def _guard_exec_plugins() -> None:
    """The kubeconfig's exec credential plugin is started by the client with `subprocess.Popen`: make it
    `GuardedPopen` (own process group, stdin /dev/null, bounded, killed on the way out), so a hanging
    plugin neither blocks for ever nor outlives talos-gpu."""
    from types import SimpleNamespace

    from checks.runner import GuardedPopen

    module = sys.modules.get("kubernetes.config.exec_provider")
    current = getattr(module, "subprocess", None)
    if module is None or current is None or getattr(current, "Popen", None) is GuardedPopen:
        return
    import subprocess

    module.subprocess = SimpleNamespace(**{**vars(subprocess), "Popen": GuardedPopen})  # type: ignore[attr-defined]


def _import_client() -> KubernetesClient:
    if "kubernetes.client" not in sys.modules:
        registered: list[str] = []
        try:
            return _lean(registered)
        except Exception:  # noqa: BLE001 - any surprise: forget the deferred packages, import normally
            for name in registered:
                module = sys.modules.get(name)
                if module is not None and module.__dict__.get("_talos_gpu_deferred"):
                    del sys.modules[name]
    return _collect(importlib.import_module("kubernetes.client"), importlib.import_module("kubernetes.config"),
                    lean=False)


def _lean(registered: list[str]) -> KubernetesClient:
    for name in DEFERRED:
        if name not in sys.modules:
            _register_deferred(name)
            registered.append(name)
    modules = {name: importlib.import_module(name) for name in NEEDED}
    client = sys.modules["kubernetes.client"]
    # the kubeconfig loader does `from kubernetes.client import ApiClient, Configuration`: both must be
    # there before it is imported, or that line would run the package's __init__
    if client.__dict__.get("_talos_gpu_deferred"):
        client.__dict__.setdefault("ApiClient", modules["kubernetes.client.api_client"].ApiClient)
        client.__dict__.setdefault("Configuration", modules["kubernetes.client.configuration"].Configuration)
    return _collect(client, importlib.import_module("kubernetes.config"), lean=True)


def _collect(client: ModuleType, config: ModuleType, *, lean: bool) -> KubernetesClient:
    def attribute(module: str, name: str) -> Any:
        return getattr(importlib.import_module(module), name)

    return KubernetesClient(
        ApiClient=attribute("kubernetes.client.api_client", "ApiClient"),
        Configuration=attribute("kubernetes.client.configuration", "Configuration"),
        ApiException=attribute("kubernetes.client.exceptions", "ApiException"),
        CoreV1Api=attribute("kubernetes.client.api.core_v1_api", "CoreV1Api"),
        AppsV1Api=attribute("kubernetes.client.api.apps_v1_api", "AppsV1Api"),
        NodeV1Api=attribute("kubernetes.client.api.node_v1_api", "NodeV1Api"),
        VersionApi=attribute("kubernetes.client.api.version_api", "VersionApi"),
        config=config,
        lean=lean,
    )


def _register_deferred(name: str) -> None:
    """Put the package `name` in sys.modules with its `__init__` not yet run (see the module doc)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not a package")
    module = importlib.util.module_from_spec(spec)
    loading = threading.RLock()
    loader = spec.loader

    def __getattr__(attribute: str) -> Any:  # noqa: N807 - the module-level hook (PEP 562)
        if attribute.startswith("__") and attribute.endswith("__") and attribute != "__version__":
            raise AttributeError(attribute)
        with loading:
            if module.__dict__.get("_talos_gpu_deferred"):
                module.__dict__["_talos_gpu_deferred"] = False
                del module.__dict__["__getattr__"]
                loader.exec_module(module)  # the package's own __init__, now
        try:
            return module.__dict__[attribute]
        except KeyError:
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}") from None

    module.__dict__["__getattr__"] = __getattr__
    module.__dict__["_talos_gpu_deferred"] = True
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, module)
