"""What the Compare tab says: the stream's status line, the worker line, the vote result. Pure functions."""

from __future__ import annotations

import time
from typing import Any

from ftapp.compare import CompareSnapshot, Vote, Worker
from ftapp.run_vocabulary import RunStatus

WAITING_TEXT = {
    RunStatus.QUEUED: "Waiting for a free device for this base model's inference worker…",
    "loading": "Loading the model and adapters (a new worker takes ~15 s on a CPU, longer for a big model)…",
    "waiting": "The worker is finishing another request first…",
}


def settings_text(generation: dict[str, Any], seed: int) -> str:
    """The settings an answer was generated with, in a line."""
    if generation.get("do_sample"):
        decoding = (
            f"sampling (temperature {generation.get('temperature')}, top_p {generation.get('top_p')}, top_k {generation.get('top_k')})"
        )
    else:
        decoding = "greedy"
    penalty = generation.get("repetition_penalty")
    extra = f" · repetition penalty {penalty}" if penalty not in (None, 1.0) else ""
    return f"{decoding} · max {generation.get('max_new_tokens')} new tokens{extra} · seed {seed}"


def status_text(snapshot: CompareSnapshot) -> str:
    comparison = snapshot.comparison
    settings = settings_text(comparison.generation, comparison.seed)
    if snapshot.done:
        tokens = sum(snapshot.new_tokens)
        speed = f" ({snapshot.tokens_per_s:.0f} tokens/s)" if snapshot.tokens_per_s else ""
        seconds = f" in {snapshot.seconds:.2f} s" if snapshot.seconds is not None else ""
        blind = " · **blind**: vote, then the names are revealed" if comparison.blind else ""
        return f"**Done** · {len(snapshot.texts)} outputs · {tokens} new tokens{seconds}{speed} · {settings}{blind}"
    if snapshot.phase == "generating":
        return f"**Generating** · step {snapshot.step} · {settings}"
    return f"{WAITING_TEXT.get(snapshot.phase, snapshot.phase)}  \n{settings}"


def worker_text(worker: Worker | None, model_name: str | None) -> str:
    if not model_name:
        return "Choose a base model. Its inference worker starts with the first **Generate**."
    if worker is None:
        return (
            f"No inference worker for **{model_name}**: the first **Generate** starts one (it keeps the model "
            "loaded, answers every comparison, and exits after an idle timeout)."
        )
    device = f"{worker.devices}" + (f" ({worker.device_name})" if worker.device_name and worker.device_name != worker.devices else "")
    state = "ready" if worker.ready else ("queued for a device" if worker.status == RunStatus.QUEUED else "loading the model")
    idle = f"unloads after {worker.idle_timeout_s:.0f} s idle"
    if worker.ready and worker.last_active:
        left = max(0.0, worker.idle_timeout_s - (time.time() - worker.last_active))
        idle += f" (in ~{left:.0f} s)"
    return f"Worker for **{model_name}**: {state} · device **{device}** · {idle} · {worker.served} answered · run `{worker.run_id[:8]}`"


def vote_text(vote: Vote) -> str:
    winner = vote.record.winner
    chosen = (
        "a tie"
        if winner == "tie"
        else f"**{winner}**" + (f" ({vote.reveal[winner]})" if vote.record.blind and winner in vote.reveal else "")
    )
    reveal = ""
    if vote.record.blind:
        reveal = "  \nRevealed: " + " · ".join(f"**{label}** = {name}" for label, name in vote.reveal.items())
    return f"Vote stored: {chosen}.{reveal}"
