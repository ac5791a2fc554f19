"""How GRPO samples its completions on this machine (issue 19): the engine ``trainer.protocol.choose_generation_engine``
picks, as TRL settings or as a ``GRPOTrainer`` whose sampling goes through ``trainer.inference.graphed_sampler``."""

from __future__ import annotations

import os
import time
from importlib.util import find_spec
from typing import Any

import torch
from transformers import PreTrainedModel
from trl import GRPOTrainer

from trainer.inference.graphed_sampler import GraphedSampler
from trainer.inference.token_sampling import Sampling
from trainer.protocol import choose_generation_engine


def rollout_engine(device_kind: str, training_mode: str, notes: list[str]) -> str:
    engine = choose_generation_engine(
        os.environ, device_kind=device_kind, training_mode=training_mode, vllm_installed=find_spec("vllm") is not None
    )
    notes.append(f"GRPO samples its completions with the {engine!r} engine")
    return engine


def engine_arguments(engine: str) -> dict[str, Any]:
    """GRPOConfig keyword arguments for the engines TRL runs itself."""
    if engine == "vllm":
        return {"use_vllm": True, "vllm_mode": "colocate"}
    if engine == "paged":
        return {"use_transformers_continuous_batching": True}
    return {}


def trainer_class(engine: str) -> type[GRPOTrainer]:
    return GraphedGRPOTrainer if engine == "graphed" else TimedGRPOTrainer


class TimedGRPOTrainer(GRPOTrainer):
    """TRL's GRPO, logging the seconds each step spends sampling (``generation_s``): where a step's time goes."""

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        started = time.perf_counter()
        result = self._sample(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the completions are copied to the host next anyway
        self._metrics["train" if self.model.training else "eval"]["generation_s"].append(time.perf_counter() - started)
        return result

    def _sample(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images):
        return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)


class GraphedGRPOTrainer(TimedGRPOTrainer):
    """TRL's GRPO, sampling text-only prompts with a CUDA-graph decode loop on the training model itself."""

    _sampler: GraphedSampler | None = None

    def _sample(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images):
        if images is not None or multimodal_fields or self.min_p is not None or self.repetition_penalty != 1.0:
            # Images, min-p and repetition penalties are generate()'s own: leave those runs to TRL.
            return super()._sample(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        if self._sampler is None:
            self._sampler = GraphedSampler(
                _transformers_model(self.accelerator.unwrap_model(self.model)),
                eos_token_ids=self.eos_token_ids,
                pad_token_id=self._tokenizer.pad_token_id,
                sampling=Sampling(self.temperature, self.top_k or 0, self.top_p),
            )
        return self._sampler.generate(prompt_ids, self.max_completion_length), None


def _transformers_model(model: Any) -> PreTrainedModel:
    """The transformers model under PEFT's wrapper (its LoRA layers stay in it and run)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
