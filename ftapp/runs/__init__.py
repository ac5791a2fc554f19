"""The run lifecycle: requests (FT-), specs, the supervisor and scheduler, event ingest, preflight.

Its public surface: what ``ui`` and ``cli`` import. Modules inside ftapp import the submodules."""

from ftapp.runs.fine_tune_request import FineTuneRequest
from ftapp.runs.ingest import RunRecord
from ftapp.runs.machine import Machine
from ftapp.runs.memory import MemoryEstimate
from ftapp.runs.method_request import CUSTOM_REWARD, REWARD_KINDS
from ftapp.runs.preflight import Preflight
from ftapp.runs.specs import UnreadableSpecError, run_spec, spec_dict
from trainer.protocol import TrainSpec

__all__ = [
    "CUSTOM_REWARD",
    "FineTuneRequest",
    "Machine",
    "MemoryEstimate",
    "Preflight",
    "REWARD_KINDS",
    "RunRecord",
    "TrainSpec",
    "UnreadableSpecError",
    "run_spec",
    "spec_dict",
]
