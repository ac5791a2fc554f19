"""Which engine samples GRPO's completions: decided the same way by ftapp's preflight (for its time estimate) and by
the trainer (``trainer.recipes.rollout_engine``). Standard library only.

* ``vllm``: TRL's colocated vLLM, whenever vLLM is installed (the fastest there is).
* ``graphed``: ``trainer.inference.graphed_sampler``: a static KV cache and the decode step captured once as a CUDA
  graph and replayed per token, on the training model itself (adapters included): no copy of the weights, no
  weight sync, and none of eager decoding's per-kernel launch cost, which is what TRL's plain ``generate`` spends its
  time on for models of a few billion parameters (issue 19: 23 generations/s on a 1B shape).
* ``paged``: transformers' continuous batching as TRL drives it (``use_transformers_continuous_batching``).
* ``generate``: TRL's plain ``model.generate`` (CPU, QLoRA's 4-bit layers, or when asked for).

``FTAPP_GRPO_GENERATION`` (auto | vllm | graphed | paged | generate) overrides "auto", for benchmarks and for a
machine where one engine misbehaves; it travels in the trainer's environment like ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

from collections.abc import Mapping

GENERATION_ENV = "FTAPP_GRPO_GENERATION"
GENERATION_ENGINES = ("auto", "vllm", "graphed", "paged", "generate")


def choose_generation_engine(environ: Mapping[str, str], *, device_kind: str, training_mode: str, vllm_installed: bool) -> str:
    """The engine a GRPO run samples with; an unknown ``FTAPP_GRPO_GENERATION`` is an error, not a silent default."""
    requested = environ.get(GENERATION_ENV, "auto").strip().lower() or "auto"
    if requested not in GENERATION_ENGINES:
        raise ValueError(f"{GENERATION_ENV}={requested!r} is not one of {', '.join(GENERATION_ENGINES)}")
    if device_kind != "cuda":
        # vLLM and continuous batching need a GPU; the graphed sampler runs its steps eagerly on a CPU (tests ask for it).
        return "graphed" if requested == "graphed" else "generate"
    if requested == "vllm" and not vllm_installed:
        return "generate" if training_mode == "qlora" else "graphed"
    if requested == "graphed" and training_mode == "qlora":
        return "generate"  # bitsandbytes' 4-bit kernels are not captured
    if requested != "auto":
        return requested
    if vllm_installed:
        return "vllm"
    return "generate" if training_mode == "qlora" else "graphed"
