"""What every bench prints first: the machine its figures come from, and the dtype it picked.

CPU figures depend on the instruction set far more than on the clock: on a core without native
bfloat16 (AVX2 only, or AVX512 without AVX512_BF16 / AMX) torch emulates bf16 convolutions and
matmuls. Reported in issue 10 from an AVX2-only machine: the SparseVideoNav bench's bf16 VAE ran at
~0.4 GFLOP/s there (a 14.3 s chunk encode), against ~30 GFLOP/s (0.17 s) with native bf16 in
docs/bench/bench_sparsevideonav.txt. So a bench uses bf16 on a CPU only where it is native, else
float32, and says which and why in its header.

Imported by the benches as ``from _machine import ...`` (the bench folder is on sys.path when a
bench runs as a script).
"""
from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Optional

# /proc/cpuinfo flags of native bf16 arithmetic (x86: AVX512_BF16 dot products, AMX tiles;
# aarch64: the BF16 extension).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_model(cpuinfo: Optional[str] = None) -> str:
    """'Intel(R) Xeon(R) Platinum 8480+' (Linux: /proc/cpuinfo), else what platform reports."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags(cpuinfo: Optional[str] = None) -> set[str]:
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_bf16(flags: Optional[set[str]] = None, torch_module=None) -> tuple[bool, str]:
    """(native, why): does this CPU compute bf16 in hardware?

    torch's own probes (torch.cpu._is_avx512_bf16_supported / _is_amx_tile_supported) when it has
    them, else the /proc/cpuinfo flags. Not torch.ops.mkldnn._is_mkldnn_bf16_supported(): it says
    whether oneDNN can run bf16 at all, which includes AVX512 cores that emulate it.
    ``flags`` given: decide from those flags alone (tests, other machines).
    """
    if flags is None:
        torch_module = torch_module or _torch()
        probes = [getattr(getattr(torch_module, "cpu", None), name, None)
                  for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        if all(callable(p) for p in probes):
            avx512_bf16, amx = (bool(p()) for p in probes)
            if avx512_bf16 or amx:
                return True, "native bf16 (" + " + ".join(n for n, on in (("AVX512_BF16", avx512_bf16),
                                                                          ("AMX", amx)) if on) + ")"
            if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
                return False, "no native bf16 (no AVX512_BF16, no AMX)"
        flags = cpu_flags()
    found = [f for f in NATIVE_BF16_FLAGS if f in flags]
    if found:
        return True, f"native bf16 ({', '.join(found)})"
    return False, "no native bf16 (cpu flags lack " + ", ".join(NATIVE_BF16_FLAGS) + ")"


def pick_dtype(requested: str, device: str, native: Optional[tuple[bool, str]] = None) -> tuple[str, str]:
    """(dtype name, reason). ``requested`` 'auto': bfloat16 on CUDA and on CPUs with native bf16, else
    float32. An explicit dtype is kept, with a warning in the reason when it is emulated bf16."""
    if device.startswith("cuda"):
        return ("bfloat16" if requested == "auto" else requested), "cuda"
    native_ok, why = native if native is not None else native_bf16()
    if requested == "auto":
        return ("bfloat16", why) if native_ok else ("float32", f"{why}: float32, as bf16 would be emulated")
    if requested == "bfloat16" and not native_ok:
        return requested, f"{why}: bf16 EMULATED as asked, expect CPU figures many times slower"
    return requested, f"as asked ({why})"


def _torch():
    import torch
    return torch


def machine_lines(device: str = "cpu", dtype: Optional[str] = None, dtype_reason: str = "",
                  threads: Optional[int] = None) -> list[str]:
    """The header every bench prints: CPU model and torch capability, torch version and threads, dtype."""
    torch = _torch()
    threads = torch.get_num_threads() if threads is None else threads
    lines = [cpu_line(),
             f"torch {torch.__version__}, {threads} torch thread{'s' if threads != 1 else ''}, python "
             f"{platform.python_version()}, {platform.machine()}; load average {load_average()}"]
    if dtype:
        lines.append(f"dtype: {dtype}" + (f" ({dtype_reason})" if dtype_reason else ""))
    return lines


def cpu_line() -> str:
    """'machine: <CPU model>; <n> cpus; torch CPU capability AVX512; native bf16 (AVX512_BF16 + AMX)'."""
    torch = _torch()
    return (f"machine: {cpu_model()}; {os.cpu_count()} cpus; torch CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}; {native_bf16()[1]}")


def command_line() -> str:
    """'$ .venv/bin/python bench/<bench>.py <arguments>': the first line a bench prints (what to rerun)."""
    return "$ " + " ".join([".venv/bin/python", f"bench/{Path(sys.argv[0]).name}", *map(shlex.quote, sys.argv[1:])])


def load_average() -> str:
    """1-minute load: other processes on a small machine move CPU figures a lot, so it is printed."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "n/a"


def print_machine(device: str = "cpu", dtype: Optional[str] = None, dtype_reason: str = "",
                  threads: Optional[int] = None) -> None:
    for line in machine_lines(device, dtype, dtype_reason, threads):
        print(line, flush=True)
