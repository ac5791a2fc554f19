"""A local model as the judge: it writes its reasoning and verdict; when it states none, its likeliest verdict is read.

A small or untuned judge often rambles past the verdict line. Then the verdict is the likeliest of " A", " B" and
" tie" (summed log-probabilities) after its own text and "Verdict:", the way lm-eval scores multiple choice, and the
stored reason says so. When the judge is the base model already loaded for the answers, its adapters are switched
off while it judges instead of loading it again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trainer.evaluation.judge import LIKELIHOOD_NOTE, Judgement, parse_verdict
from trainer.inference.generation import continuation_scores, encode_prompt, generate_batch, generation_config
from trainer.protocol import VERDICT_A, VERDICT_B, VERDICT_TIE

_CHOICES = ((VERDICT_A, " A"), (VERDICT_B, " B"), (VERDICT_TIE, " tie"))


class LocalJudge:
    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_new_tokens: int):
        self.model, self.tokenizer = model, tokenizer
        self.config = generation_config(model, tokenizer, {"max_new_tokens": max_new_tokens, "do_sample": False})

    def judge(self, prompts: Sequence[str]) -> list[Judgement]:
        chat = bool(getattr(self.tokenizer, "chat_template", None))
        ids = [encode_prompt(self.tokenizer, [{"role": "user", "content": p}] if chat else p) for p in prompts]
        with self._base_only():
            texts = generate_batch(self.model, self.tokenizer, ids, self.config).texts
            verdicts = [parse_verdict(text) for text in texts]
            unstated = [i for i, verdict in enumerate(verdicts) if not verdict]
            for i, verdict in zip(unstated, self._likeliest([ids[i] for i in unstated], [texts[i] for i in unstated])):
                verdicts[i] = verdict
        return [
            Judgement(verdict, text + (LIKELIHOOD_NOTE if i in unstated else "")) for i, (verdict, text) in enumerate(zip(verdicts, texts))
        ]

    def _likeliest(self, prompt_ids: list[list[int]], texts: list[str]) -> list[str]:
        if not prompt_ids:
            return []
        contexts = [
            ids + list(self.tokenizer(text + "\nVerdict:", add_special_tokens=False)["input_ids"]) for ids, text in zip(prompt_ids, texts)
        ]
        options = [list(self.tokenizer(word, add_special_tokens=False)["input_ids"]) for _, word in _CHOICES]
        scores = continuation_scores(
            self.model, [c for c in contexts for _ in options], [o for _ in contexts for o in options], self.tokenizer.pad_token_id
        )
        picked = []
        for row in range(len(contexts)):
            row_scores = [scores[row * len(options) + k][0] for k in range(len(options))]
            picked.append(_CHOICES[row_scores.index(max(row_scores))][0])
        return picked

    def _base_only(self) -> contextlib.AbstractContextManager:
        return self.model.disable_adapter() if isinstance(self.model, PeftModel) else contextlib.nullcontext()
