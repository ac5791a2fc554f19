"""The range of every number a user can type, defined once per concept.

A number outside these is a typo or an attack, never a plan: ``max_steps=10**30`` passes a ``>= 1`` check,
the trainer then reports 10^30 total steps, and SQLite's 64-bit integers cannot store them. Each typed config
field (CF-005) and each numeric request field (FT-004..FT-011, FT-018, FT-019, EV-010, CP-005, CP-006, BU-001)
names the ``Bound`` of its concept here; its check, its message and its help text all read the bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ftapp.errors import Problem

if TYPE_CHECKING:  # rules.py imports this module for its texts
    from ftapp.rules import Rule


def _shown(number: float) -> str:
    if isinstance(number, int) and abs(number) >= 10**15:
        return f"{'-' if number < 0 else ''}10^{int(math.log10(abs(number)))}"
    if isinstance(number, int) or number.is_integer() and abs(number) < 10**15:
        return f"{int(number):,}"
    return f"{number:g}"


@dataclass(frozen=True)
class Bound:
    low: float
    high: float
    whole: bool = False  # an integer (a bool is no number, a float with a fraction no whole number)
    low_open: bool = False  # ``low`` itself is refused

    def above(self, low: float, open: bool = False) -> Bound:
        """The same concept with another lower end (``-1: run the epochs``, ``0: off``)."""
        return replace(self, low=low, low_open=open)

    @property
    def text(self) -> str:
        if self.whole:
            return f"a whole number from {_shown(int(self.low))} to {_shown(int(self.high))}"
        return (
            f"a number > {_shown(self.low)} and <= {_shown(self.high)}"
            if self.low_open
            else (f"a number from {_shown(self.low)} to {_shown(self.high)}")
        )

    def allows(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.whole else (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return (value > self.low if self.low_open else value >= self.low) and value <= self.high

    def problem(self, rule: Rule, field: str, value: Any, name: str | None = None) -> Problem | None:
        """None when ``value`` lies in the bound, else the problem, naming the range."""
        if self.allows(value):
            return None
        return Problem(rule, f"{name or field} must be {self.text} (got {shown_value(value)})", field)


def shown_value(value: Any) -> str:
    """A value for a message: a 10^30 integer shown as such (``str`` refuses ints over 4,300 digits), text cut short."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return _shown(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Optimizer steps, and intervals counted in them (eval, save, logging, warm-up).
STEPS = Bound(1, 10_000_000, whole=True)
EPOCHS = Bound(0, 1_000, low_open=True)
LEARNING_RATE = Bound(0, 1, low_open=True)
# A share of the rows (dataset_fraction, train_test_split) or of a probability mass (top_p).
FRACTION = Bound(0, 1, low_open=True)
# A share that may be zero: warm-up ratio, dropout, weight decay.
RATIO = Bound(0, 1)
# Sequences per (micro-)batch, and micro-batches per optimizer step.
BATCH = Bound(1, 65_536, whole=True)
# A sequence length in tokens: max_length, max_new_tokens, max_completion_length.
TOKENS = Bound(1, 1_048_576, whole=True)
# Tokens per micro-batch for padding-free batching (0: batch by sequence count).
BATCH_TOKENS = Bound(0, 16_777_216, whole=True)
ROWS = Bound(1, 100_000_000, whole=True)
SEED = Bound(0, 2**32 - 1, whole=True)  # torch takes any int, but numpy-style seeds stop here
# Multipliers and penalties >= 0: gradient-norm clip, NEFTune noise, KL beta (0: off); .above(0, open=True) when 0 is meaningless.
FACTOR = Bound(0, 100)
LORA_RANK = Bound(1, 1_024, whole=True)
LORA_ALPHA = Bound(0, 65_536, low_open=True)
PROCESSES = Bound(0, 256, whole=True)  # data-loading workers, CPU threads
CHECKPOINTS = Bound(1, 1_000, whole=True)
GENERATIONS = Bound(2, 1_024, whole=True)  # completions sampled per GRPO prompt
BEAMS = Bound(1, 64, whole=True)
VOCABULARY = Bound(0, 1_048_576, whole=True)  # top_k: tokens of a vocabulary (0: off)
REWARD_WEIGHT = Bound(-1_000, 1_000)
REWARD_TOLERANCE = Bound(0, 1e12)  # numeric_match: |answer - reference| allowed
CHARACTERS = Bound(1, 1_000_000, whole=True)  # a completion's length in characters (DS-006's longest value)
NODES = Bound(1, 1_024, whole=True)
GPUS_PER_NODE = Bound(1, 64, whole=True)

SQLITE_INTEGER = Bound(-(2**63), 2**63 - 1, whole=True)


def storable_int(value: Any) -> int | None:
    """``value`` when it is an integer SQLite can store (64 bits), else None: numbers a trainer reports are untrusted."""
    return value if SQLITE_INTEGER.allows(value) else None
