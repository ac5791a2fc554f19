"""Which devices a run asks for: 'cpu', 'auto', or GPU ids such as '0,1'."""

from __future__ import annotations

from dataclasses import dataclass

from ftapp.errors import Problem
from ftapp.rules import Rule
from ftapp.runs.machine import Machine


@dataclass(frozen=True)
class DeviceChoice:
    kind: str  # "cpu" or "cuda"
    gpu_ids: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        return "cpu" if self.kind == "cpu" else ",".join(str(i) for i in self.gpu_ids)


def choose_devices(spec: str | None, machine: Machine, rule: Rule) -> tuple[DeviceChoice | None, list[Problem]]:
    text = (spec or "auto").strip().lower()
    if text == "cpu":
        return DeviceChoice("cpu"), []
    if text == "auto":
        if not machine.gpus:
            return DeviceChoice("cpu"), []
        best = max(machine.gpus, key=lambda g: g.memory_free_mib)
        return DeviceChoice("cuda", (best.index,)), []
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        return None, [Problem(rule, f"gpus must be 'cpu', 'auto' or GPU ids like '0' or '0,1' (got {spec!r})", "gpus")]
    ids = tuple(dict.fromkeys(int(p) for p in parts))
    missing = [i for i in ids if machine.gpu(i) is None]
    if missing:
        have = ", ".join(str(g.index) for g in machine.gpus) or "none: this machine has no CUDA GPU"
        return None, [Problem(rule, f"GPU {', '.join(map(str, missing))} does not exist (GPUs here: {have})", "gpus")]
    return DeviceChoice("cuda", ids), []
