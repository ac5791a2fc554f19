"""The inference worker's model: one base model loaded once, adapters attached on demand, answers streamed.

Every target of a request (the base alone or one adapter) answers the same prompt in ONE
mixed-adapter batch (``trainer.inference.generation.generate_batch``), so N outputs cost about one forward
pass per token, not N. Adapters stay attached between requests (keyed by path); past
``MAX_ADAPTERS`` the least recently used is dropped, so a long session cannot fill the GPU.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase
from transformers.generation.streamers import BaseStreamer

from trainer.inference.generation import BASE_ADAPTER, encode_prompt, generate_batch, generation_config
from trainer.model_loading import detect_device, load_tokenizer
from trainer.protocol import InferenceRequest, InferenceSpec

MAX_ADAPTERS = 8
LINE_INTERVAL_S = 0.03  # at most ~30 partial lines a second: a page cannot show more, the file stays small

Write = Callable[[dict[str, Any]], None]


class TextsSoFar(BaseStreamer):
    """A transformers streamer that writes every row's decoded text so far as one response line.

    ``generate`` calls ``put`` with the prompt ids first, then with each step's new token per row
    (shape ``(batch,)``). A row that emitted a stop token is finished: what follows is padding.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, rows: int, stop_ids: set[int], write: Write, interval_s: float = LINE_INTERVAL_S
    ):
        self.tokenizer, self.stop_ids, self.write, self.interval_s = tokenizer, stop_ids, write, interval_s
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.finished = [False] * rows
        self.step = 0
        self._prompt_seen = False
        self._last_write = 0.0
        self._unwritten = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the prompt ids: nothing generated yet
            self._prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.finished[row]:
                continue
            if token in self.stop_ids:
                self.finished[row] = True
            else:
                self.tokens[row].append(int(token))
        self.step += 1
        self._unwritten = True
        now = time.monotonic()
        if now - self._last_write >= self.interval_s:
            self._flush(now)

    def end(self) -> None:
        if self._unwritten:
            self._flush(time.monotonic())

    def texts(self) -> list[str]:
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in self.tokens]

    def _flush(self, now: float) -> None:
        self.write({"step": self.step, "texts": self.texts()})
        self._last_write, self._unwritten = now, False


def stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    eos = model.generation_config.eos_token_id
    eos = tokenizer.eos_token_id if eos is None else eos
    return set(eos if isinstance(eos, list) else [eos]) - {None}


class InferenceSession:
    def __init__(self, spec: InferenceSpec):
        device = detect_device(spec.device)
        if device.kind == "cpu" and spec.cpu_threads:
            torch.set_num_threads(spec.cpu_threads)
        self.device = device
        self.tokenizer = load_tokenizer(spec.model)
        kwargs: dict[str, Any] = {
            "dtype": torch.bfloat16 if device.kind == "cuda" and device.bf16 else torch.float32,
            "revision": spec.model.revision,
        }
        if device.kind == "cuda":
            kwargs["device_map"] = {"": 0}  # CUDA_VISIBLE_DEVICES holds the one GPU the scheduler gave us
        print(f"loading base model {spec.model.source}", file=sys.stderr, flush=True)
        self.model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(spec.model.source, **kwargs)
        self.model.eval()
        self.adapters: OrderedDict[str, str] = OrderedDict()  # path → adapter name, least recently used first
        self._names = 0
        self.facts = {"device": device.kind, "device_name": device.name, "model": spec.model.source}

    def answer(self, request: InferenceRequest, write: Write) -> dict[str, Any]:
        """Generate every target's answer in one batch, streaming lines; returns the final line's fields."""
        if not request.targets:
            raise ValueError("the request has no targets")
        names = [self._attach(t.adapter_path) if t.adapter_path else BASE_ADAPTER for t in request.targets]
        mixed = isinstance(self.model, PeftModel)
        prompt_ids = encode_prompt(self.tokenizer, request.prompt)
        config = generation_config(self.model, self.tokenizer, request.generation)
        streamer = TextsSoFar(self.tokenizer, len(names), stop_ids(self.model, self.tokenizer), write)
        torch.manual_seed(request.seed)  # sampling draws from the global generator (CUDA's included)
        generated = generate_batch(self.model, self.tokenizer, [prompt_ids] * len(names), config, names if mixed else None, streamer)
        tokens = sum(generated.new_tokens)
        return {
            "texts": generated.texts,
            "new_tokens": generated.new_tokens,
            "seconds": round(generated.seconds, 4),
            "tokens_per_s": round(tokens / generated.seconds, 1) if generated.seconds > 0 else None,
            "prompt_tokens": len(prompt_ids),
        }

    def _attach(self, path: str) -> str:
        """The adapter's name in the model, loading it the first time it is asked for."""
        if path in self.adapters:
            self.adapters.move_to_end(path)
            return self.adapters[path]
        if path.startswith(("/", ".", "~")) and not Path(path).expanduser().exists():
            raise FileNotFoundError(f"adapter not found at {path}")
        self._names += 1
        name = f"a{self._names}"
        print(f"attaching adapter {path} as {name}", file=sys.stderr, flush=True)
        if isinstance(self.model, PeftModel):
            try:
                self.model.load_adapter(path, adapter_name=name)
            except Exception:
                if name in self.model.peft_config:  # a half-attached adapter must not linger
                    self.model.delete_adapter(name)
                raise
        else:
            self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
        self.model.eval()
        self.adapters[path] = name
        self._evict()
        return name

    def _evict(self) -> None:
        # The newest adapter is last and a request has at most a handful, so the oldest is never in use.
        while len(self.adapters) > MAX_ADAPTERS:
            _, name = self.adapters.popitem(last=False)
            self.model.delete_adapter(name)
