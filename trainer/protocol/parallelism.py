"""How a run on several GPUs shares the model: DDP or FSDP2, and why (issue 20). Standard library only.

DDP gives each GPU a whole copy of the weights and of the trained state, so a model whose copy does not fit one GPU
cannot train at all; FSDP2 (full shard) gives each GPU a slice and gathers one decoder layer at a time, at the cost of
moving every layer's weights between the GPUs twice per micro-batch. ``choose_strategy`` plans both with
``plan_fit`` (per GPU, the free memory of the tightest chosen GPU) and picks, for "auto", DDP while a whole copy fits
with room for the activations, FSDP2 otherwise; the reasons say which and why, with both per-GPU peaks. ftapp's
preflight calls it before the run and writes the strategy into the spec; the trainer plans its micro-batches with the
same sharding.

FSDP2 is offered for SFT only: DPO's reference passes and GRPO's token-by-token sampling on the training model are not
run sharded yet, so they keep DDP.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from trainer.protocol.memory_plan import GIB, FitPlan, Levers, ModelShape, Workload, leanest_need, plan_fit

AUTO, DDP, FSDP2 = "auto", "ddp", "fsdp2"
STRATEGIES = (AUTO, DDP, FSDP2)  # what a request may ask for; a spec holds DDP or FSDP2, as decided
SPEC_STRATEGIES = (DDP, FSDP2)
FSDP_METHODS = ("sft",)
# Time per token of FSDP2 against DDP with the same recipe: each layer's weights are all-gathered in the forward and
# again in the backward, mostly hidden behind the previous layer's compute. An estimate until bench/fsdp_gpu.py has
# measured it on two GPUs; "auto" takes DDP unless its own levers (smaller micro-batches, checkpointing) cost more.
FSDP_COST = 1.15


@dataclass(frozen=True)
class StrategyPlan:
    strategy: str  # ddp | fsdp2: what the run will use
    plan: FitPlan  # the chosen strategy's per-GPU plan
    ddp: FitPlan
    fsdp: FitPlan | None  # None with one GPU: nothing to shard over
    reasons: tuple[str, ...]

    @property
    def fits(self) -> bool:
        return self.plan.fits


def per_gpu(plan: FitPlan, shape: ModelShape, work: Workload, levers: Levers) -> str:
    """A plan's peak per GPU; for one that fits no way, the least any recipe needs (the requested one's would
    mostly count activations nobody would keep)."""
    if plan.fits:
        return f"~{plan.need.total / GIB:.1f} GiB per GPU"
    return f"at least ~{leanest_need(shape, work, levers) / GIB:.1f} GiB per GPU (does not fit)"


def choose_strategy(
    shape: ModelShape, work: Workload, free_bytes: int, gpus: int, requested: str = AUTO, levers: Levers = Levers(), method: str = "sft"
) -> StrategyPlan:
    """The strategy for ``gpus`` processes (one per GPU) and each strategy's plan. ``requested`` DDP or FSDP2 is kept
    (its plan may not fit: the caller refuses it, with the other strategy's figure as advice); "auto" takes the
    faster of the two that fit, DDP on a tie. With one GPU there is nothing to shard: DDP's plan (one process); a
    method FSDP2 does not run (DPO, GRPO) gets DDP from "auto"."""
    ddp = plan_fit(shape, replace(work, shards=1), free_bytes, levers)
    if gpus < 2:
        return StrategyPlan(DDP, ddp, ddp, None, ("one process holds the whole model: nothing to shard",))
    if method not in FSDP_METHODS and requested != FSDP2:
        return StrategyPlan(DDP, ddp, ddp, None, (f"DDP: FSDP2 runs {', '.join(FSDP_METHODS)} only; {method} keeps a whole copy per GPU",))
    sharded, sharded_levers = replace(work, shards=gpus), replace(levers, optimizer_8bit=False)
    fsdp = plan_fit(shape, sharded, free_bytes, sharded_levers)
    ddp_gib, fsdp_gib = per_gpu(ddp, shape, replace(work, shards=1), levers), per_gpu(fsdp, shape, sharded, sharded_levers)
    both = f"DDP {ddp_gib}, FSDP2 over {gpus} GPUs {fsdp_gib} ({free_bytes / GIB:.1f} GiB free on the tightest GPU)"
    if requested == DDP:
        advice = [f"FSDP2 would fit: {fsdp_gib}"] if fsdp.fits and not ddp.fits else []
        return StrategyPlan(DDP, ddp, ddp, fsdp, (f"DDP as asked: a whole copy on each of {gpus} GPUs; {both}", *advice))
    if requested == FSDP2:
        advice = [f"DDP would fit too, with less traffic between the GPUs: {ddp_gib}"] if ddp.fits else []
        return StrategyPlan(FSDP2, fsdp, ddp, fsdp, (f"FSDP2 as asked: each of {gpus} GPUs holds a slice; {both}", *advice))
    if ddp.fits and (not fsdp.fits or ddp.slowdown <= fsdp.slowdown * FSDP_COST):
        room = (
            "" if ddp.slowdown == 1.0 else f" after the changes below (~{ddp.slowdown:.2f}x the time per token, sharding would cost more)"
        )
        return StrategyPlan(
            DDP, ddp, ddp, fsdp, (f"auto chose DDP: a whole copy fits each GPU with room for the activations{room}; {both}",)
        )
    if fsdp.fits:
        why = (
            "a whole copy does not fit one GPU"
            if not ddp.fits
            else f"a whole copy fits only with changes costing ~{ddp.slowdown:.2f}x the time per token, sharding ~{fsdp.slowdown * FSDP_COST:.2f}x"
        )
        return StrategyPlan(FSDP2, fsdp, ddp, fsdp, (f"auto chose FSDP2: {why}; {both}",))
    # Refused either way; the sharded plan is the nearer miss, so its advice (more free memory per GPU) is the one to show.
    return StrategyPlan(FSDP2, fsdp, ddp, fsdp, (f"neither DDP nor FSDP2 fits: {both}",))
