"""What the host CPU can do for int8: read once, reported with every quantization and bench.

Int8 is only fast where the CPU has dot-product instructions (x86 VNNI/AMX, Arm dotprod); the
reports carry these flags so a figure can be read against the hardware that produced it.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

_INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, str]:
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "Hardware") and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    present = [f for f in _INT8_FLAGS if f in flags]
    dot_product = any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp"))
    return {
        "cpu": model or platform.processor() or "unknown",
        "cores": str(os.cpu_count()),
        "machine": platform.machine(),
        "int8_features": ", ".join(present) or "none detected",
        "int8_dot_product": "yes" if dot_product else "no",
    }
