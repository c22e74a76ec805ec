"""The CPU's theoretical peak from /proc/cpuinfo texts (tests/spec/data/cpuinfo: four real CPU families and this
project's machine), and the GPU table."""

from __future__ import annotations

from pathlib import Path

import pytest

from turbo_edge.spec.host import cpu_model_name, cpu_peak_flops, cpu_vendor, gpu_peak_flops

DATA = Path(__file__).parent / "data" / "cpuinfo"


def _text(name: str) -> str:
    return (DATA / name).read_text()


@pytest.mark.parametrize(("name", "per_cycle", "mhz", "words"), [
    ("amd_zen4_genoa.txt", 32, 2400.0, "Zen 4"),  # 512-bit ops on 256-bit pipes
    ("amd_zen5_epyc_vm.txt", 64, 2596.102, "Zen 5"),  # full-width AVX-512 (told by avx512_vp2intersect)
    ("intel_sapphire_rapids.txt", 64, 2000.0, "two 512-bit FMA units"),
    ("intel_icelake.txt", 64, 2900.0, "two 512-bit FMA units"),
    ("amd_zen2_avx2.txt", 32, 2250.0, "AVX2 + FMA"),
])
def test_fp32_peak_from_flags_cores_and_clock(name, per_cycle, mhz, words):
    peak = cpu_peak_flops("fp32", cpuinfo=_text(name), cores=4)
    assert peak["flop_per_cycle_per_core"] == per_cycle and peak["cores"] == 4 and peak["mhz"] == mhz
    assert peak["flops_per_s"] == pytest.approx(per_cycle * 4 * mhz * 1e6)
    assert words in peak["basis"] and cpu_model_name(_text(name)) in peak["basis"]


def test_vendor_from_vendor_id_or_model_name():
    assert cpu_vendor(_text("amd_zen4_genoa.txt")) == "amd" and cpu_vendor(_text("intel_icelake.txt")) == "intel"
    assert cpu_vendor("model name\t: AMD EPYC\n") == "amd" and cpu_vendor("flags\t: sse\n") is None


def test_bf16_and_int8_peaks_where_the_flags_have_them():
    zen4, spr, icl, zen2 = (_text(n) for n in ("amd_zen4_genoa.txt", "intel_sapphire_rapids.txt", "intel_icelake.txt", "amd_zen2_avx2.txt"))
    assert cpu_peak_flops("bf16", zen4, cores=1)["flop_per_cycle_per_core"] == 64  # avx512_bf16: 2x its fp32
    assert cpu_peak_flops("int8", zen4, cores=1)["flop_per_cycle_per_core"] == 128  # avx512_vnni: 4x its fp32
    assert cpu_peak_flops("bf16", spr, cores=1)["flop_per_cycle_per_core"] == 1024  # AMX
    assert cpu_peak_flops("int8", spr, cores=1)["flop_per_cycle_per_core"] == 2048
    assert cpu_peak_flops("fp16", spr, cores=1)["flop_per_cycle_per_core"] == 128  # avx512_fp16
    assert cpu_peak_flops("int8", icl, cores=1)["flop_per_cycle_per_core"] == 256 and cpu_peak_flops("bf16", icl) is None
    assert cpu_peak_flops("int8", zen2) is None and cpu_peak_flops("bf16", zen2) is None  # no VNNI, no BF16
    assert "avx512_vnni" in cpu_peak_flops("int8", zen4, cores=1)["basis"]


def test_no_flags_or_clock_is_unknown_and_cores_default_to_affinity():
    import os

    assert cpu_peak_flops("fp32", cpuinfo="") is None
    assert cpu_peak_flops("fp32", cpuinfo="flags\t: sse sse2 avx2 fma\n") is None  # no clock
    assert cpu_peak_flops("fp32", _text("amd_zen2_avx2.txt"))["cores"] == len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="unknown precision"):
        cpu_peak_flops("fp8", _text("amd_zen2_avx2.txt"))


def test_gpu_peaks_by_device_name():
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3", "fp16")["flops_per_s"] == 989e12
    assert gpu_peak_flops("NVIDIA H100 PCIe", "fp16")["flops_per_s"] == 756e12
    assert gpu_peak_flops("NVIDIA H200", "fp32")["flops_per_s"] == 67e12
    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB", "bf16")["flops_per_s"] == 312e12
    assert gpu_peak_flops("NVIDIA GeForce RTX 4090", "fp32")["flops_per_s"] == 82.6e12
    assert gpu_peak_flops("NVIDIA L4", "int8")["flops_per_s"] == 242.5e12
    assert gpu_peak_flops("NVIDIA L40S") is None and gpu_peak_flops("Tesla T4") is None
