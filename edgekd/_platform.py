"""What the host can do: the CPU's int8 instructions, and the memory free for data.

Int8 is only fast where the CPU has dot-product instructions (x86 VNNI/AMX, Arm dotprod); the
reports carry these flags so a figure can be read against the hardware that produced it. Readers
that size arrays by a user's setting (an image size, a count) ask `available_bytes` first, so a
typo is one line naming the setting, not a MemoryError or the kernel's out-of-memory killer.
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


def available_bytes() -> int | None:
    """Memory the kernel can still give this process (MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fits_in_memory(needed: int, share: float = 0.8) -> bool:
    """`needed` bytes fit in `share` of the free memory (True where the free memory is unknown)."""
    free = available_bytes()
    return free is None or needed <= share * free


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, or None (another C library, another OS)."""
    if platform.system() != "Linux":
        return None
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


TRIM_EVERY = 8  # batches (or training steps) between calls of release_freed_memory


def release_freed_memory() -> None:
    """Hand memory the process has freed back to the operating system. Batches of varying sequence
    lengths leave glibc's heap fragmented: over 10^5 sentences its resident memory grew by 0.8 GB
    that nothing used (tools/stream_text.py); trimming every few batches keeps it flat at no
    measurable cost. A no-op where glibc is not the C library."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
