"""Which queued runs may start now: GPUs are owned by one run at a time, first come first served.

A queued run waits while an earlier queued run wants any of the same devices, so a run that needs
two GPUs is not starved by a stream of one-GPU runs; runs on disjoint GPUs start together.
"""

from __future__ import annotations

from dataclasses import dataclass

CPU = "cpu"


@dataclass(frozen=True)
class Placement:
    run_id: str
    device: str  # "cpu" or "cuda"
    gpu_ids: tuple[int, ...]

    @property
    def label(self) -> str:
        return CPU if self.device == CPU else ",".join(map(str, self.gpu_ids))


def _wanted(request: str, all_gpus: list[int]) -> tuple[str, tuple[int, ...]] | None:
    text = (request or "auto").strip().lower()
    if text == CPU or (text == "auto" and not all_gpus):
        return CPU, ()
    if text == "auto":
        return "auto", ()
    return "cuda", tuple(int(p) for p in text.split(",") if p.strip())


def readable_request(request: str | None) -> bool:
    """Whether ``request`` names devices the planner reads: 'cpu', 'auto' (or nothing) or GPU ids like 0,1."""
    text = (request or "auto").strip().lower()
    ids = [part.strip() for part in text.split(",") if part.strip()]
    return text in (CPU, "auto") or bool(ids) and all(part.isdigit() for part in ids)


def plan_starts(
    queued: list[tuple[str, str]], busy_gpus: set[int], cpu_runs: int, all_gpus: list[int], max_cpu_runs: int = 1
) -> list[Placement]:
    """Placements for the queued ``(run_id, devices_requested)`` pairs, oldest first, that fit now."""
    free = [g for g in all_gpus if g not in busy_gpus]
    claimed: set[int] = set()  # GPUs an earlier waiting run is entitled to
    placements: list[Placement] = []
    for run_id, request in queued:
        wanted = _wanted(request, all_gpus)
        if wanted is None:
            continue
        kind, ids = wanted
        if kind == CPU:
            if cpu_runs < max_cpu_runs:
                placements.append(Placement(run_id, CPU, ()))
                cpu_runs += 1
            continue
        if kind == "auto":
            choice = next((g for g in free if g not in claimed), None)
            if choice is None:
                claimed.update(all_gpus)
                continue
            ids = (choice,)
        if all(g in free and g not in claimed for g in ids):
            placements.append(Placement(run_id, "cuda", ids))
            free = [g for g in free if g not in ids]
        claimed.update(ids)
    return placements
