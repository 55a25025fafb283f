"""bench/_machine.py: benches use bf16 on a CPU only where it is native, and name the machine."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import _machine  # noqa: E402

AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx avx2 fma\n"
SAPPHIRE = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
            "flags\t\t: avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile\n")
AVX512_NO_BF16 = "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: avx2 avx512f avx512bw avx512vl avx512dq\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\nCPU implementer\t: 0x41\n"


def test_cpu_model_and_flags_from_cpuinfo():
    assert _machine.cpu_model(SAPPHIRE) == "Intel(R) Xeon(R) Platinum 8480+"
    assert "avx512_bf16" in _machine.cpu_flags(SAPPHIRE)
    assert _machine.cpu_flags(GRAVITON3) >= {"sve", "bf16"}
    assert _machine.cpu_model("") != ""  # falls back to what platform reports


@pytest.mark.parametrize("cpuinfo,native", [(AVX2_ONLY, False), (AVX512_NO_BF16, False), (SAPPHIRE, True),
                                            (GRAVITON3, True)])
def test_native_bf16_from_flags(cpuinfo, native):
    assert _machine.native_bf16(_machine.cpu_flags(cpuinfo))[0] is native


@pytest.mark.parametrize("avx512_bf16,amx,native", [(False, False, False), (True, False, True), (False, True, True)])
def test_native_bf16_from_torch_probes(monkeypatch, avx512_bf16, amx, native):
    fake = types.SimpleNamespace(cpu=types.SimpleNamespace(_is_avx512_bf16_supported=lambda: avx512_bf16,
                                                           _is_amx_tile_supported=lambda: amx))
    monkeypatch.setattr(_machine.platform, "machine", lambda: "x86_64")
    assert _machine.native_bf16(torch_module=fake)[0] is native


def test_auto_dtype_is_bf16_only_where_native():
    emulated = (False, "no native bf16 (no AVX512_BF16, no AMX)")
    assert _machine.pick_dtype("auto", "cpu", emulated)[0] == "float32"
    assert "float32" in _machine.pick_dtype("auto", "cpu", emulated)[1]
    assert _machine.pick_dtype("auto", "cpu", (True, "native bf16 (AMX)"))[0] == "bfloat16"
    assert _machine.pick_dtype("auto", "cuda", emulated)[0] == "bfloat16"
    dtype, why = _machine.pick_dtype("bfloat16", "cpu", emulated)  # asked for: kept, and said
    assert dtype == "bfloat16" and "EMULATED" in why
    assert _machine.pick_dtype("float32", "cpu", (True, "native"))[0] == "float32"


def test_machine_lines_name_cpu_capability_torch_and_dtype():
    import torch

    lines = _machine.machine_lines("cpu", "float32", "why", threads=1)
    assert lines[0].startswith("machine: ") and torch.backends.cpu.get_cpu_capability() in lines[0]
    assert f"torch {torch.__version__}, 1 torch thread," in lines[1]
    assert lines[-1] == "dtype: float32 (why)"
