"""Process settings for moving models: resident memory and garbage-collector pauses.

Memory. Models stream through the coordinator as 1 MiB chunks on dozens of gRPC threads. With
glibc's defaults every thread may get its own malloc arena, and the dynamic mmap threshold soon
rises past 1 MiB, so freed chunks stay in fragmented arenas instead of going back to the OS: RSS
then grows to several times the model size. Two arenas and a fixed 256 KiB mmap threshold (large
buffers are mapped and unmapped, never cached) keep RSS near the live data. No-op without glibc.

Garbage collection. Every chunk makes a handful of short-lived container objects in gRPC's Python
layer; with the default thresholds the cyclic collector then walks the whole heap many times per
model (5 % of a 40 MB fetch in a profile). Freezing the start-up heap and raising the first
threshold keeps collection, not stops it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_malloc(arenas: int = 2, mmap_threshold: int = 256 * 1024) -> bool:
    """Returns whether glibc accepted the settings."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok_arenas = int(mallopt(_M_ARENA_MAX, arenas)) == 1
    ok_threshold = int(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) == 1
    return ok_arenas and ok_threshold


def tune_for_bulk_transfer() -> None:
    """Call once at process start, after imports (coordinator and node)."""
    tune_malloc()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
