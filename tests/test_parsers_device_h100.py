"""The parsers on outputs captured on a real H100 (tests/fixtures/device-h100/ORIGIN.md)."""

from pathlib import Path

from checks import parsers

FIXTURES = Path(__file__).parent / "fixtures" / "device-h100"
PREFIX = "h100-sxm-580.159.04-"


def read(name: str) -> str:
    return (FIXTURES / (PREFIX + name)).read_text()


def test_nvidia_smi_table_from_a_real_h100() -> None:
    smi = parsers.parse_nvidia_smi(read("nvidia-smi.txt"))
    assert not parsers.is_error(smi), smi
    assert smi.driver_version == "580.159.04"
    assert smi.cuda_version == "13.0"
    assert [(g.index, g.name, g.bus_id) for g in smi.gpus] == [(0, "NVIDIA H100 80GB HBM3", "00000000:00:06.0")]
    assert smi.gpus[0].memory_total_mib == 81559
    assert smi.gpus[0].power_cap_w == 700


def test_open_driver_banner_without_a_build_date() -> None:
    # the real banner ends "Release Build  (nixbld@)  " with no date: the parser must not need one
    version = parsers.parse_nvidia_version(read("proc-driver-nvidia-version.txt"))
    assert not parsers.is_error(version), version
    assert (version.version, version.flavor) == ("580.159.04", "open")
    assert "15.3.0" in version.gcc


def test_proc_modules_with_open_taint_flags() -> None:
    modules = parsers.parse_proc_modules(read("proc-modules.txt"))
    assert not parsers.is_error(modules), modules
    assert [(m.name, m.state) for m in modules] == [("nvidia_uvm", "Live"), ("nvidia", "Live")]
    assert modules[1].size == 14299136


def test_query_csv_and_list() -> None:
    rows = parsers.parse_nvidia_smi_csv(read("nvidia-smi-query-noheader.csv"))
    assert rows == [("NVIDIA H100 80GB HBM3", "0x233010DE")]
    listed = parsers.parse_nvidia_smi_list(read("nvidia-smi-L.txt"))
    assert not parsers.is_error(listed)
    assert [(g.index, g.name) for g in listed] == [(0, "NVIDIA H100 80GB HBM3")]
