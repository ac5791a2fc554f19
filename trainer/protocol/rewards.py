"""What DPO and GRPO runs add to the run contract: verifiable rewards. Standard library only.

Import from ``trainer.protocol``, which re-exports these names (ftapp may import nothing else of
the trainer). A GRPO ``TrainSpec`` carries ``rewards``: a tuple of ``RewardSpec``, each one check
from the library below with its weight; the run's reward for a completion is the weighted sum.
Method hyper-parameters (DPO's beta and loss type, GRPO's generations per prompt...) travel in
``TrainSpec.method_settings`` as a plain dict, validated by ftapp before the spec is written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# TRL 1.16's DPOConfig loss types (trl/trainer/dpo_trainer.py raises on any other); one per run here.
DPO_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)

# kind -> what it scores, for people (the UI's and the CLI's help text)
REWARD_KINDS: dict[str, str] = {
    "exact_match": "1 when the completion, stripped and case-folded, equals the reference column's value, else 0.",
    "numeric_match": "1 when the last number in the completion equals the reference's number (within tolerance), else 0.",
    "regex_match": "1 when the completion matches `pattern` (Python regex, searched anywhere), else 0.",
    "valid_json": "1 when the completion parses as JSON, else 0.",
    "length_penalty": "0 up to `target_length` characters, then minus the share it runs over (-1 at twice the length).",
    "custom_python": "A function `reward(completion, reference, row) -> float` in the file `code_path`; "
    "only when the app runs locally and unshared.",
}
CUSTOM_REWARD = "custom_python"  # the one kind that runs code someone supplied


@dataclass(frozen=True)
class RewardSpec:
    kind: str  # one of REWARD_KINDS
    weight: float = 1.0
    pattern: str | None = None  # regex_match
    tolerance: float = 1e-6  # numeric_match: absolute difference still counted as equal
    target_length: int | None = None  # length_penalty, in characters
    code_path: str | None = None  # custom_python

    @property
    def name(self) -> str:
        """The name of the first reward of its kind; ``reward_names`` numbers the ones after it."""
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reward_names(rewards: tuple[RewardSpec, ...] | list[RewardSpec]) -> list[str]:
    """The names the rewards' metrics are logged under (``rewards/<name>/mean``), in order: the kind,
    and from the second reward of a kind on, the kind with its count (``regex_match``, ``regex_match_2``)."""
    seen: dict[str, int] = {}
    names = []
    for reward in rewards:
        seen[reward.kind] = seen.get(reward.kind, 0) + 1
        names.append(reward.name if seen[reward.kind] == 1 else f"{reward.name}_{seen[reward.kind]}")
    return names
