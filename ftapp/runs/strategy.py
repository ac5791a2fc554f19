"""How a training run on several GPUs shares the model (issue 20): the request's choice, checked (FT-020).

"auto" is decided by the preflight (``ftapp.runs.preflight``, through ``trainer.protocol.choose_strategy``) and the
spec holds the decision. FSDP2 asked for where it cannot help is refused rather than quietly turned into DDP: with
one GPU (or the CPU) there is nothing to shard the model over and FSDP2 would only add its all-gathers.
"""

from __future__ import annotations

from typing import Any

from ftapp import rules
from ftapp.errors import Problem
from ftapp.runs.devices import DeviceChoice
from trainer.protocol import FSDP2, FSDP_METHODS, STRATEGIES

# The Train tab's picker and the command line's --strategy say the same.
STRATEGY_HELP = (
    "How several GPUs share the model. auto: DDP while a whole copy fits each GPU, else FSDP2 (the preflight says "
    "why); fsdp2: each GPU holds a slice (SFT, 2+ GPUs)."
)
STRATEGY_CHOICES = (("auto", "auto"), ("DDP: a whole copy per GPU", "ddp"), ("FSDP2: the model sharded over the GPUs", "fsdp2"))


def strategy_problems(strategy: Any, method: str, devices: DeviceChoice | None, processes: Any) -> list[Problem]:
    if strategy not in STRATEGIES:
        return [Problem(rules.TRAIN_STRATEGY, f"strategy must be one of {', '.join(STRATEGIES)} (got {str(strategy)[:40]!r})", "strategy")]
    if strategy != FSDP2:
        return []
    problems = []
    if method not in FSDP_METHODS:
        problems.append(
            Problem(
                rules.TRAIN_STRATEGY,
                f"FSDP2 trains {', '.join(FSDP_METHODS)} only; {method} keeps a whole copy per GPU: choose auto or ddp",
                "strategy",
            )
        )
    if devices is None:  # FT-005 says why
        return problems
    gpus = len(devices.gpu_ids) if devices.kind == "cuda" else 0
    if gpus < 2:
        where = "the CPU" if devices.kind == "cpu" else f"one GPU ({devices.label})"
        problems.append(
            Problem(
                rules.TRAIN_STRATEGY,
                f"FSDP2 shards the model over several GPUs; on {where} there is nothing to shard over and it would only add "
                "traffic: choose 2 or more GPUs, or auto/ddp",
                "strategy",
            )
        )
    elif processes != gpus:
        problems.append(
            Problem(
                rules.TRAIN_STRATEGY,
                f"FSDP2 runs one process per GPU: {gpus} processes for GPUs {devices.label} (got {processes})",
                "strategy",
            )
        )
    return problems
