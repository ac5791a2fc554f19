"""The run lifecycle: requests (FT-), specs, the supervisor and scheduler, event ingest, preflight.

Its public surface: what ``ui`` and ``cli`` import. Modules inside ftapp import the submodules."""

from ftapp.runs.command_line import train_command
from ftapp.runs.fine_tune_request import ADAPTER_NAME_HINT, FineTuneRequest, preset_configs
from ftapp.runs.ingest import RunRecord
from ftapp.runs.log_text import LOG_TAIL_MARKER, duration, failure_summary, readable_log
from ftapp.runs.machine import Machine
from ftapp.runs.memory import MemoryEstimate
from ftapp.runs.method_request import CUSTOM_REWARD, REWARD_KINDS
from ftapp.runs.preflight import Preflight
from ftapp.runs.specs import UnreadableSpecError, run_spec, spec_dict
from ftapp.runs.strategy import STRATEGY_CHOICES, STRATEGY_HELP
from ftapp.runs.training_presets import TrainingPreset
from trainer.protocol import TrainSpec

__all__ = [
    "ADAPTER_NAME_HINT",
    "CUSTOM_REWARD",
    "duration",
    "failure_summary",
    "FineTuneRequest",
    "LOG_TAIL_MARKER",
    "Machine",
    "MemoryEstimate",
    "Preflight",
    "preset_configs",
    "readable_log",
    "REWARD_KINDS",
    "RunRecord",
    "STRATEGY_CHOICES",
    "STRATEGY_HELP",
    "TrainSpec",
    "UnreadableSpecError",
    "run_spec",
    "spec_dict",
    "train_command",
    "TrainingPreset",
]
