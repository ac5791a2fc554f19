"""This workstation: GPUs (found without importing torch: the UI must never initialise CUDA), cores, memory."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total_mib: int
    memory_used_mib: int

    @property
    def memory_free_mib(self) -> int:
        return self.memory_total_mib - self.memory_used_mib


def detect_gpus(timeout_s: float = 5.0) -> list[GpuInfo]:
    """GPUs nvidia-smi reports, restricted to CUDA_VISIBLE_DEVICES when it is set."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total,memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            gpus.append(GpuInfo(int(parts[0]), parts[1], int(float(parts[2])), int(float(parts[3]))))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        allowed = {int(v) for v in visible.split(",") if v.strip().isdigit()}
        gpus = [g for g in gpus if g.index in allowed]
    return gpus


@dataclass(frozen=True)
class Machine:
    """What validation needs to know about this workstation."""

    gpus: tuple[GpuInfo, ...]
    cpu_count: int
    memory_available_mib: int

    def gpu(self, index: int) -> GpuInfo | None:
        return next((g for g in self.gpus if g.index == index), None)


def available_memory_mib() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)


def detect_machine() -> Machine:
    return Machine(tuple(detect_gpus()), os.cpu_count() or 1, available_memory_mib())
