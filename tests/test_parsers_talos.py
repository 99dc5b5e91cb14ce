"""The talosctl parsers against the real outputs in tests/fixtures/samples/talos (copied from the shared reference)."""

from __future__ import annotations

import json

import pytest

from checks.parsers import (
    ParseError,
    Table,
    is_error,
    nvidia_extensions,
    parse_dmesg_nvrm,
    parse_extensions,
    parse_health,
    parse_json_stream,
    parse_kernel_module_specs,
    parse_machine_status,
    parse_modules_table,
    parse_nodename,
    parse_nvidia_container_runtime_config,
    parse_nvidia_version,
    parse_patch_output,
    parse_pci_devices,
    parse_proc_modules,
    parse_sysctl_value,
    parse_table,
    parse_talos_version,
    parse_upgrade_progress_line,
    parse_yaml_stream,
    schematic_id,
)
from checks.parsers.talos import Extension, extension_track, split_driver
from tests.paths import sample

VANILLA_ID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
SKEW = "WARNING: 10.0.64.1: server version 1.8.4 is older than client version 1.9.5\n"


def ok(value):
    """The value, failing the test with the ParseError's text when the parser refused the input."""
    assert not is_error(value), str(value)
    return value


# ---- ParseError -----------------------------------------------------------------------------------


def test_parse_error_is_a_value_with_a_readable_text() -> None:
    error = parse_table("no table here\nat all")
    assert isinstance(error, ParseError) and is_error(error)
    assert str(error) == f"expected {error.expected}: no table here"
    assert str(ParseError("a thing")) == "expected a thing"


def test_parse_error_detail_is_truncated_to_one_short_line() -> None:
    error = parse_table("x" * 500)
    assert is_error(error)
    assert len(error.detail) <= 120 and "\n" not in error.detail


# ---- tables ---------------------------------------------------------------------------------------


def test_table_cells_keep_single_spaces_and_map_by_column_name() -> None:
    table = ok(parse_table(sample("talos/get-pcidevices-kvm.txt")))
    assert table.columns == ("NODE", "NAMESPACE", "TYPE", "ID", "VERSION", "CLASS", "SUBCLASS", "VENDOR", "PRODUCT")
    assert len(table.rows) == 6
    first = table.rows[0]
    assert table.get(first, "SUBCLASS") == "Host bridge"
    assert table.get(first, "PRODUCT") == "440FX - 82441FX PMC [Natoma]"
    assert table.get(4, "VENDOR") == "Red Hat, Inc."
    assert table.get(first, "NO SUCH COLUMN") is None
    assert table.get(99, "ID") is None


def test_table_repeated_column_is_reached_by_occurrence() -> None:
    table = ok(parse_table(sample("talos/get-extensions-nvidia-lts-b200.txt")))
    assert table.columns.count("VERSION") == 2
    row = table.rows[0]
    assert table.get(row, "VERSION") == "1"
    assert table.get(row, "VERSION", occurrence=1) == "580.95.05-v1.18.0"
    assert table.get(row, "VERSION", occurrence=2) is None
    assert table.dicts()[0]["VERSION_2"] == "580.95.05-v1.18.0"


def test_table_skips_a_shell_prompt_and_survives_hand_shifted_rows() -> None:
    # The user's prompt " # tl get extensions" precedes the header, and anonymised IPs shift every row.
    table = ok(parse_table(sample("talos/get-extensions-nvidia-lts-b200.txt")))
    assert [table.get(row, "NAME") for row in table.rows] == [
        "nvidia-container-toolkit-lts",
        "nvidia-open-gpu-kernel-modules-lts",
        "nvidia-fabricmanager-lts",
    ]
    assert {table.get(row, "NAMESPACE") for row in table.rows} == {"runtime"}


def test_table_without_node_column_and_with_dollar_prompt() -> None:
    table = ok(parse_table(sample("talos/get-extensions-schematic-virtual.txt")))
    assert "NODE" not in table.columns
    assert table.get(0, "NAME") == "schematic"
    assert table.get(0, "VERSION", 1) == VANILLA_ID


def test_table_with_empty_node_cell_aligns_by_header_position() -> None:
    table = ok(parse_table(sample("talos/get-extensions-flavor-virtual.txt")))
    row = table.rows[0]
    assert table.get(row, "NODE") == ""
    assert table.get(row, "NAMESPACE") == "runtime"
    assert table.get(row, "NAME") == "flavor"
    assert table.get(row, "VERSION", 1) == VANILLA_ID


def test_table_after_version_skew_warning_keeps_multi_word_column_names() -> None:
    table = ok(parse_table(sample("talos/get-members-header.txt")))
    assert "MACHINE TYPE" in table.columns
    assert table.rows == ()


def test_table_tolerates_trailing_whitespace_and_rows_longer_than_the_header() -> None:
    text = sample("talos/get-version-resource.txt")
    table = ok(parse_table(text))
    assert [table.get(row, "VERSION", 1) for row in table.rows] == ["v1.12.7"] * 3
    long_row = (
        "NODE       NAMESPACE   TYPE                 ID       VERSION   STATE\n"
        "10.5.0.3   runtime     LoadedKernelModule   nvidia   1         Live   extra  words   \n"
    )
    wide = ok(parse_table(long_row))
    assert wide.get(0, "ID") == "nvidia"
    assert wide.get(0, "STATE") == "Live   extra  words"


def test_table_header_only_is_an_empty_table_not_an_error() -> None:
    table = ok(parse_table("NODE   NAMESPACE   TYPE   ID   VERSION   NAME   VERSION\n"))
    assert isinstance(table, Table) and table.rows == ()


# ---- yaml / json streams --------------------------------------------------------------------------


def test_yaml_stream_ids_are_strings_and_empty_node_is_empty_text() -> None:
    documents = ok(parse_yaml_stream(sample("talos/get-extensions-flavor-virtual.yaml")))
    assert len(documents) == 1
    assert documents[0]["metadata"]["id"] == "0"
    assert documents[0]["node"] == ""
    # timestamps stay text (no datetime objects in parsed resources)
    assert documents[0]["metadata"]["created"] == "2023-09-07T14:06:03Z"


def test_yaml_stream_with_several_documents_and_a_leading_warning() -> None:
    one = sample("talos/get-extensions.yaml")
    two = sample("talos/get-extensions-intel-ucode-docs.yaml")
    documents = ok(parse_yaml_stream(SKEW + one + "---\n" + two))
    assert [d["spec"]["metadata"]["name"] for d in documents] == ["gvisor", "intel-ucode"]


def test_yaml_stream_refuses_broken_yaml_and_accepts_no_output() -> None:
    assert ok(parse_yaml_stream("")) == []
    broken = parse_yaml_stream("node: 1.2.3.4\nmetadata:\n    id: [unclosed\n")
    assert is_error(broken)


def test_json_stream_is_a_stream_of_objects_not_an_array() -> None:
    text = sample("talos/get-extensions.json.RECONSTRUCTED")
    documents = ok(parse_json_stream(text + text))
    assert len(documents) == 2
    assert documents[0]["spec"]["metadata"]["name"] == "gvisor"
    numeric = ok(parse_json_stream('{"metadata": {"id": 0}}\n{"metadata": {"id": 1}}'))
    assert [d["metadata"]["id"] for d in numeric] == ["0", "1"]


def test_json_stream_truncated_is_an_error() -> None:
    text = sample("talos/get-extensions.json.RECONSTRUCTED")
    assert is_error(parse_json_stream(text[: len(text) // 2]))


# ---- extensions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["get-extensions.yaml", "get-extensions.json.RECONSTRUCTED"],
)
def test_extensions_from_yaml_and_json_carry_metadata(name: str) -> None:
    (extension,) = ok(parse_extensions(sample(f"talos/{name}")))
    assert extension == Extension(
        id="000.ghcr.io-smira-gvisor-c927b54-dirty",
        name="gvisor",
        version="20220117.0-v1.0.0",
        author="Andrew Rynhard",
        description="This system extension provides gVisor using containerd's runtime handler.",
        node="172.20.0.2",
    )


def test_extensions_table_uses_the_second_version_column() -> None:
    extensions = ok(parse_extensions(sample("talos/get-extensions-nvidia-oss-docs.txt")))
    assert [(e.name, e.version, e.node) for e in extensions] == [
        ("nvidia-container-toolkit", "515.65.01-v1.10.0", "172.31.41.27"),
        ("nvidia-open-gpu-kernel-modules", "515.65.01-v1.2.0", "172.31.41.27"),
    ]


@pytest.mark.parametrize(
    "name",
    ["get-extensions-schematic-virtual.txt", "get-extensions-flavor-virtual.txt", "get-extensions-flavor-virtual.yaml"],
)
def test_schematic_virtual_extension_gives_the_schematic_id(name: str) -> None:
    extensions = ok(parse_extensions(sample(f"talos/{name}")))
    assert schematic_id(extensions) == VANILLA_ID


def test_schematic_id_is_none_without_factory_image() -> None:
    extensions = ok(parse_extensions(sample("talos/get-extensions-nvidia-lts-b200.txt")))
    assert schematic_id(extensions) is None


def test_extensions_table_after_upgrade_output_lists_modules_dep() -> None:
    text = sample("talos/upgrade-output-legacy-success.txt")
    extensions = ok(parse_extensions(text))
    assert [e.name for e in extensions][-1] == "modules.dep"
    assert extensions[-1].id == "modules.dep" and extensions[-1].version == "6.6.22-talos"


def test_extensions_refuse_text_that_is_no_listing() -> None:
    assert is_error(parse_extensions(""))
    assert is_error(parse_extensions("error: rpc error: code = Unavailable desc = connection refused"))


def test_split_driver_and_tracks() -> None:
    assert split_driver("570.172.08-v1.11.5") == ("570.172.08", "v1.11.5")
    assert split_driver("580.95.05") == ("580.95.05", "")
    assert split_driver("580.95.05-v1.12.0-beta.0") == ("580.95.05", "v1.12.0-beta.0")
    assert extension_track("nvidia-open-gpu-kernel-modules-production") == ("nvidia-open-gpu-kernel-modules", "production")
    assert extension_track("siderolabs/nvidia-container-toolkit-lts") == ("nvidia-container-toolkit", "lts")
    assert extension_track("nvidia-container-toolkit") == ("nvidia-container-toolkit", "")
    assert extension_track("gvisor") is None


def test_nvidia_extensions_take_versions_apart() -> None:
    extensions = ok(parse_extensions(sample("talos/get-extensions-nvidia-lts-b200.txt")))
    found = {e.base: e for e in nvidia_extensions(extensions)}
    assert found["nvidia-container-toolkit"].driver == found["nvidia-open-gpu-kernel-modules"].driver == "580.95.05"
    assert found["nvidia-open-gpu-kernel-modules"].suffix == "v1.12.0-beta.0"
    assert {e.track for e in found.values()} == {"lts"}


# ---- modules --------------------------------------------------------------------------------------


def test_proc_modules_with_nvidia() -> None:
    modules = ok(parse_proc_modules(sample("talos/read-proc-modules-nvidia.txt")))
    by_name = {m.name: m for m in modules}
    assert set(by_name) == {"nvidia_uvm", "nvidia_drm", "nvidia_modeset", "nvidia"}
    assert by_name["nvidia"].size == 39047168
    assert by_name["nvidia"].refcount is None and by_name["nvidia"].dependencies == ()
    assert all(m.state == "Live" and m.is_live and m.taints == "PO" for m in modules)


def test_proc_modules_without_nvidia() -> None:
    modules = ok(parse_proc_modules(sample("talos/read-proc-modules-no-nvidia.txt")))
    assert len(modules) == 14
    assert not any(m.name.startswith("nvidia") for m in modules)


def test_proc_modules_refcounts_dependencies_and_a_leading_warning() -> None:
    text = SKEW + "nvidia 39047168 2 nvidia_uvm,nvidia_modeset, Live 0xffffffffc00ac000 (PO)\n"
    (module,) = ok(parse_proc_modules(text))
    assert module.refcount == 2
    assert module.dependencies == ("nvidia_uvm", "nvidia_modeset")


def test_proc_modules_truncated_line_is_an_error_not_a_short_list() -> None:
    text = sample("talos/read-proc-modules-nvidia.txt")
    cut = text[: text.index("nvidia_modeset") + 20]
    assert is_error(parse_proc_modules(cut))
    assert is_error(parse_proc_modules(""))


def test_modules_table_loaded_kernel_module() -> None:
    modules = ok(parse_modules_table(sample("talos/get-modules-loadedkernelmodule-docs.txt")))
    assert [(m.name, m.state) for m in modules] == [
        ("nvidia_uvm", "Live"),
        ("nvidia_drm", "Live"),
        ("nvidia_modeset", "Live"),
        ("nvidia", "Live"),
    ]


def test_modules_table_kernel_module_status_by_column_name() -> None:
    # Talos 1.14 KernelModuleStatus: a TYPE and STATE in different positions; read by name.
    text = (
        "NODE       NAMESPACE   TYPE                 ID         VERSION   STATE     TYPE\n"
        "10.5.0.3   runtime     KernelModuleStatus   nvidia     1         Live      loadable\n"
    )
    (module,) = ok(parse_modules_table(text))
    assert module.name == "nvidia" and module.state == "Live"


def test_kernel_module_specs_from_table_and_yaml() -> None:
    names = ok(parse_kernel_module_specs(sample("talos/get-kernelmodulespec-b200.txt")))
    assert names == ["ib_umad", "nvidia", "nvidia_drm", "nvidia_modeset", "nvidia_uvm"]
    yaml_text = "".join(
        f"node: 10.5.0.2\nmetadata:\n    namespace: runtime\n    type: KernelModuleSpecs.runtime.talos.dev\n"
        f"    id: {name}\nspec:\n    name: {name}\n---\n"
        for name in ("nvidia", "nvidia_uvm")
    )
    assert ok(parse_kernel_module_specs(yaml_text)) == ["nvidia", "nvidia_uvm"]


# ---- driver version -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version", "gcc"),
    [
        ("read-nvidia-version-docs-oss.txt", "515.65.01", "gcc version 12.2.0 (GCC)"),
        ("read-nvidia-version-docs-proprietary.txt", "510.60.02", "gcc version 11.2.0 (GCC)"),
    ],
)
def test_driver_version_proprietary_banner(name: str, version: str, gcc: str) -> None:
    driver = ok(parse_nvidia_version(sample(f"talos/{name}")))
    assert (driver.version, driver.flavor, driver.gcc) == (version, "proprietary", gcc)
    assert driver.banner.startswith("NVIDIA UNIX x86_64 Kernel Module")


def test_driver_version_open_banner() -> None:
    banner_line = sample("talos/dmesg-nvrm-open-module-loading.txt").splitlines()[0]
    banner = banner_line[banner_line.index("NVIDIA UNIX") :]
    text = f"NVRM version: {banner}\nGCC version:  gcc version 13.2.0 (GCC)\n"
    driver = ok(parse_nvidia_version(text))
    assert (driver.version, driver.flavor) == ("570.172.08", "open")
    # the dmesg banner itself is accepted as well
    assert ok(parse_nvidia_version(sample("talos/dmesg-nvrm-open-module-loading.txt"))).version == "570.172.08"


def test_driver_version_refuses_other_text() -> None:
    assert is_error(parse_nvidia_version("open /proc/driver/nvidia/version: no such file or directory"))


# ---- health ---------------------------------------------------------------------------------------


def test_health_all_ok_despite_transient_errors() -> None:
    report = ok(parse_health(sample("talos/health-ok-full-with-transients.txt")))
    assert report.discovered_nodes == ("192.168.4.26",)
    assert report.checks[0].name == "etcd to be healthy"
    assert all(check.ok is True for check in report.checks)
    assert report.failed_check is None and report.error is None and report.passed


def test_health_partial_run_has_an_unfinished_last_check() -> None:
    report = ok(parse_health(sample("talos/health-ok-partial.txt")))
    assert report.discovered_nodes == ("10.0.1.180", "10.0.0.91")
    assert report.checks[-1].name == "all control plane components to be ready"
    assert report.checks[-1].ok is None
    assert report.failed_check is None and not report.passed


def test_health_timeout_with_spinner_names_the_failed_check_and_the_error() -> None:
    report = ok(parse_health(sample("talos/health-fail-timeout.txt")))
    assert report.error == "context deadline exceeded"
    failed = report.failed_check
    assert failed is not None and failed.name == "etcd to be healthy"
    assert failed.ok is False and failed.message == "expected a response with 0 node(s), got 1"


def test_health_error_keeps_continuation_lines() -> None:
    report = ok(parse_health(sample("talos/health-fail-etcd-preparing.txt")))
    failed = report.failed_check
    assert failed is not None and failed.name == "etcd to be healthy"
    assert failed.message.startswith("1 error occurred:")
    assert '10.5.0.2: service "etcd" not in expected state "Running"' in failed.message


def test_health_deadline_while_a_check_is_in_progress_blames_that_check() -> None:
    text = "waiting for etcd to be healthy: OK\nwaiting for kubelet to be healthy: ...\ncontext deadline exceeded\n"
    report = ok(parse_health(text))
    assert report.failed_check is not None and report.failed_check.name == "kubelet to be healthy"


def test_health_refuses_unrelated_text() -> None:
    assert is_error(parse_health("hello world\n"))


# ---- version --------------------------------------------------------------------------------------


def test_talos_version_with_server() -> None:
    version = ok(parse_talos_version(sample("talos/version.txt")))
    assert (version.client_tag, version.server_tag, version.node) == ("v1.7.5", "v1.7.4", "k8s-control-01")


def test_talos_version_after_skew_warning() -> None:
    warning = sample("talos/version-skew-warning.txt").splitlines()[0]
    version = ok(parse_talos_version(warning + "\n" + sample("talos/version.txt")))
    assert version.server_tag == "v1.7.4"


def test_talos_version_without_server_section() -> None:
    text = sample("talos/version.txt").split("Server:")[0] + "error getting version: rpc error: code = Unavailable\n"
    version = ok(parse_talos_version(text))
    assert version.client_tag == "v1.7.5" and version.server_tag is None and version.node is None


def test_talos_version_needs_a_client_tag() -> None:
    assert is_error(parse_talos_version(sample("talos/version-skew-warning.txt")))


# ---- machine status -------------------------------------------------------------------------------


def test_machine_status_from_yaml_with_unmet_conditions() -> None:
    text = (
        "node: 10.0.1.180\nmetadata:\n    namespace: runtime\n    type: MachineStatuses.runtime.talos.dev\n"
        "    id: machine\nspec:\n    stage: booting\n    status:\n        ready: false\n"
        "        unmetConditions:\n            - name: nodeReady\n"
        '              reason: node "ip-10-0-1-180" is not ready\n'
    )
    status = ok(parse_machine_status(text))
    assert status.stage == "booting" and status.ready is False
    assert status.unmet == (("nodeReady", 'node "ip-10-0-1-180" is not ready'),)


def test_machine_status_from_the_reconstructed_table_header() -> None:
    header = next(line for line in sample("talos/machinestatus.RECONSTRUCTED.txt").splitlines() if line.startswith("NODE"))
    status = ok(parse_machine_status(header + "\n10.5.0.2   runtime     MachineStatus   machine   5         running   true\n"))
    assert status.stage == "running" and status.ready is True and status.unmet == ()


def test_machine_status_stage_with_a_space() -> None:
    header = "NODE       NAMESPACE   TYPE            ID        VERSION   STAGE           READY"
    status = ok(parse_machine_status(header + "\n10.5.0.2   runtime     MachineStatus   machine   7         shutting down   false\n"))
    assert status.stage == "shutting down" and status.ready is False


# ---- PCI devices ----------------------------------------------------------------------------------


def test_pci_devices_table_has_no_nvidia_gpu_in_a_kvm_guest() -> None:
    devices = ok(parse_pci_devices(sample("talos/get-pcidevices-kvm.txt")))
    assert len(devices) == 6
    display = devices[4]
    assert (display.class_name, display.subclass, display.product) == (
        "Display controller",
        "VGA compatible controller",
        "QXL paravirtual graphic card",
    )
    assert not any(device.is_nvidia_gpu for device in devices)


def test_pci_devices_yaml_finds_gpus_but_not_their_audio_functions() -> None:
    def document(pci_id: str, cls: str, class_id: str, product: str) -> str:
        return (
            f"node: 10.5.0.2\nmetadata:\n    namespace: hardware\n    type: PCIDevices.hardware.talos.dev\n"
            f"    id: {pci_id}\nspec:\n    class: {cls}\n    subclass: 3D controller\n"
            f"    vendor: NVIDIA Corporation\n    product: {product}\n    class_id: '{class_id}'\n"
            f"    subclass_id: '0x02'\n    vendor_id: '0x10de'\n    product_id: '0x2321'\n    driver: nvidia\n"
        )

    text = (
        document("0000:33:00.0", "Display controller", "0x03", "GH100 [H100 NVL]")
        + "---\n"
        + document("0000:33:00.1", "Multimedia controller", "0x04", "audio")
        + "---\n"
        + document("0000:8b:00.0", "Display controller", "0x03", "GH100 [H100 NVL]")
    )
    devices = ok(parse_pci_devices(text))
    assert [d.id for d in devices if d.is_nvidia_gpu] == ["0000:33:00.0", "0000:8b:00.0"]
    assert devices[0].vendor_id == "0x10de" and devices[0].driver == "nvidia"


# ---- node name, sysctl, runtime config ------------------------------------------------------------


def test_nodename_from_yaml() -> None:
    text = (
        "node: 10.5.0.2\nmetadata:\n    namespace: network\n    type: Nodenames.kubernetes.talos.dev\n"
        "    id: nodename\nspec:\n    nodename: gpu-node-1\n    hostnameVersion: \"1\"\n"
    )
    assert parse_nodename(text) == "gpu-node-1"
    assert is_error(parse_nodename("node: 10.5.0.2\nmetadata:\n    id: nodename\nspec: {}\n"))


@pytest.mark.parametrize(("text", "value"), [("1\n", "1"), ("  2 \n", "2"), (SKEW + "1\n", "1"), ("4096\t16384\t4194304\n", "4096\t16384\t4194304")])
def test_sysctl_value(text: str, value: str) -> None:
    assert parse_sysctl_value(text) == value


@pytest.mark.parametrize("text", ["", "   \n", "1\n2\n", "\x00\x01"])
def test_sysctl_value_refuses_empty_or_odd_content(text: str) -> None:
    assert is_error(parse_sysctl_value(text))


def test_container_runtime_config_no_cgroups() -> None:
    config = ok(parse_nvidia_container_runtime_config('[nvidia-container-cli]\nno-cgroups = true\n\n[nvidia-container-runtime]\nlog-level = "info"\n'))
    assert config.no_cgroups is True
    assert config.raw_sections == ("nvidia-container-cli", "nvidia-container-runtime")
    unset = ok(parse_nvidia_container_runtime_config('[nvidia-container-cli]\n#no-cgroups = false\nload-kmods = true\n'))
    assert unset.no_cgroups is None
    assert ok(parse_nvidia_container_runtime_config("")).no_cgroups is None


def test_container_runtime_config_invalid_toml_is_an_error() -> None:
    assert is_error(parse_nvidia_container_runtime_config("[nvidia-container-cli\nno-cgroups = true"))
    assert is_error(parse_nvidia_container_runtime_config("no-cgroups = yes"))


# ---- dmesg ----------------------------------------------------------------------------------------


def test_dmesg_groups_the_failures_of_one_gpu() -> None:
    result = parse_dmesg_nvrm(sample("talos/dmesg-nvrm-open-module-loading.txt"))
    assert not is_error(result)
    assert result.driver_banner is not None and "570.172.08" in result.driver_banner
    (failure,) = result.failures
    assert failure.pci_id == "0000:01:00.0"
    assert "Cannot initialize GSP firmware RM" in failure.message
    assert "RmInitAdapter failed" in failure.message and "rm_init_adapter failed" in failure.message
    assert result.failed_pci_ids == ("0000:01:00.0",)


def test_dmesg_with_talosctl_prefixes_and_two_gpus() -> None:
    prefix = "10.5.0.2: kern:    info: [2025-11-20T10:00:0{n}.000000000Z]: "
    lines = [
        "NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  570.172.08  Release Build",
        "NVRM: GPU 0000:8b:00.0: RmInitAdapter failed! (0x62:0x65:1859)",
        "NVRM: Xid (PCI:0000:33:00): 79, pid=1234, name=python, GPU has fallen off the bus.",
    ]
    text = "\n".join(prefix.format(n=i) + line for i, line in enumerate(lines))
    result = parse_dmesg_nvrm(text)
    assert not is_error(result)
    assert result.failed_pci_ids == ("0000:8b:00.0", "0000:33:00.0")
    assert result.failures[1].message.startswith("79, pid=1234")


def test_dmesg_without_nvrm_lines() -> None:
    result = parse_dmesg_nvrm("[    0.000000] Linux version 6.12.57-talos\n")
    assert not is_error(result)
    assert result.driver_banner is None and result.failures == ()


# ---- upgrade --------------------------------------------------------------------------------------


def _events(name: str) -> list:
    return [event for line in sample(f"talos/{name}").splitlines() if (event := parse_upgrade_progress_line(line))]


def test_upgrade_success() -> None:
    events = _events("upgrade-output-legacy-success.txt")
    assert events[0].kind == "watching"
    assert (events[1].node, events[1].kind) == ("192.168.1.111", "post-check-passed")


def test_upgrade_stuck_at_actor_id_after_skew_warning() -> None:
    kinds = [(event.node, event.kind) for event in _events("upgrade-output-legacy-stuck-actor-id.txt")]
    assert kinds == [("k8s-control-01", "skew-warning"), (None, "watching"), ("k8s-control-01", "waiting-actor")]


def test_upgrade_noninteractive_quoted_nodes() -> None:
    events = _events("upgrade-output-legacy-noninteractive.txt")
    assert (events[0].node, events[0].kind) == ("talos-123", "waiting-actor")
    assert {event.node for event in events} == {"talos-123", "talos-345"}
    assert events[-1].kind == "progress" and events[-1].text == "task: stopAllPods action: START"


def test_upgrade_image_not_found_is_an_error_for_the_node() -> None:
    events = _events("upgrade-output-legacy-image-not-found.txt")
    assert (events[1].node, events[1].kind) == ("10.10.100.1", "error")
    assert events[2].kind == "error" and events[2].text.endswith("not found")


def test_upgrade_terraform_wrapped_debug_lines() -> None:
    events = _events("upgrade-output-legacy-debug.txt")
    assert {event.node for event in events} == {"10.0.1.180"}
    assert {event.kind for event in events} == {"progress"}


def test_upgrade_lifecycle_api_completes() -> None:
    events = _events("upgrade-output-lifecycle-api-v1.14.txt")
    assert {event.node for event in events} == {"192.168.10.3"}
    assert events[-1].kind == "post-check-passed"
    assert not any(event.kind == "error" for event in events)


def test_upgrade_lines_to_ignore_and_unavailable() -> None:
    assert parse_upgrade_progress_line("") is None
    assert parse_upgrade_progress_line("$ talosctl upgrade -n 10.5.0.2") is None
    event = parse_upgrade_progress_line("    * 10.5.0.2: unavailable, retrying...")
    assert event is not None and (event.node, event.kind) == ("10.5.0.2", "unavailable")
    plain = parse_upgrade_progress_line("node1: upgrade completed")
    assert plain is not None and (plain.node, plain.kind) == ("node1", "post-check-passed")
    keyword = parse_upgrade_progress_line("stage: BOOTING ready: false")
    assert keyword is not None and (keyword.node, keyword.kind) == (None, "progress")


# ---- patch mc -------------------------------------------------------------------------------------


def _dry_run(mode_details: str, diff: str) -> str:
    """The reconstructed dry-run output with its placeholders filled in (comment lines dropped)."""
    lines = [line for line in sample("talos/patch-mc-dry-run.RECONSTRUCTED.txt").splitlines() if not line.startswith("#")]
    text = "\n".join(lines).replace("<node>", "10.5.0.2").replace("<modeDetails>", mode_details)
    return text.replace('<unified diff of config documents, or the literal "No changes.">', diff) + "\n"


def test_patch_dry_run_with_a_diff() -> None:
    diff = "--- a\n+++ b\n@@ -1 +1,2 @@\n machine:\n+  sysctls:"
    result = ok(parse_patch_output(_dry_run("Applied configuration without a reboot", diff)))
    assert result.dry_run and not result.applied and not result.skipped_no_changes
    assert result.reboot is False and result.mode_details == "Applied configuration without a reboot"
    assert result.diff == diff


def test_patch_dry_run_that_would_reboot_and_one_without_changes() -> None:
    reboot = ok(parse_patch_output(_dry_run("Applied configuration with a reboot", "+ files")))
    assert reboot.reboot is True and reboot.dry_run
    same = ok(parse_patch_output(_dry_run("Applied configuration without a reboot", "No changes.")))
    assert same.skipped_no_changes and same.diff == "No changes."


def test_patch_applied_staged_and_skipped() -> None:
    applied = ok(parse_patch_output(
        "patched MachineConfigs.config.talos.dev/v1alpha1 at the node 10.5.0.2\nApplied configuration with a reboot\n"
    ))
    assert applied.applied and applied.reboot is True and not applied.dry_run
    staged = ok(parse_patch_output(
        "patched MachineConfigs.config.talos.dev/v1alpha1 at the node 10.5.0.2\n"
        "Staged configuration to be applied after the next reboot\n"
    ))
    assert staged.applied and staged.reboot is False
    skipped = ok(parse_patch_output("Apply was skipped: no changes detected.\n"))
    assert skipped.skipped_no_changes and not skipped.applied


def test_patch_error_output_is_a_parse_error() -> None:
    result = parse_patch_output("error applying new configuration: rpc error: code = InvalidArgument desc = bad\n")
    assert is_error(result) and "error applying new configuration" in result.detail


def test_json_stream_round_trips_a_yaml_stream() -> None:
    documents = ok(parse_yaml_stream(sample("talos/get-extensions.yaml")))
    text = "\n".join(json.dumps(document, indent=4) for document in documents)
    assert ok(parse_json_stream(text)) == documents


def test_no_kernel_module_specs_is_an_empty_list() -> None:
    # `talosctl get kernelmodulespecs -o yaml` prints nothing when the config requests no module
    assert parse_kernel_module_specs("") == []
    assert parse_kernel_module_specs("\n") == []
