"""A serve request (an OpenAI-compatible endpoint for a model, or a base model + adapter) and its rules.

It shares the export rules: the model (EX-001, EX-005), the adapter (EX-002, EX-004, EX-006), the
devices (EX-009); and has two of its own, the engine (EX-010) and the request limits (EX-011) that the
endpoint's request guard enforces. ``auto`` picks vLLM when it is installed (it serves adapters natively
and enforces an API key), ``transformers serve`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec

from ftapp import rules
from ftapp.demo import policy
from ftapp.errors import Problem
from ftapp.runs.devices import choose_devices
from ftapp.runs.machine import Machine
from ftapp.shipping.export_request import resolve_adapter, resolve_model
from storage import Transaction
from trainer.protocol import SERVE_ENGINES

ENGINE_CHOICES = ("auto", *SERVE_ENGINES)
# EX-011: (low, high) of each request limit; the defaults are ServeRequest's.
LIMIT_BOUNDS = {"max_tokens": (1, 32_768), "request_timeout_s": (1, 3_600), "max_queue": (0, 1_024)}


@dataclass(frozen=True)
class ServeRequest:
    model_id: str
    adapter_id: str = ""
    gpus: str = "auto"
    engine: str = "auto"  # auto | transformers | vllm
    max_tokens: int = 1024  # the most completion tokens one request gets (a larger max_tokens is capped)
    request_timeout_s: float = 120.0  # generation time per request, and the longest wait for a turn
    max_queue: int = 32  # requests waiting for their turn; more are answered 429


def vllm_installed() -> bool:
    return find_spec("vllm") is not None  # a look-up only: importing vllm would cost seconds and a CUDA context


def chosen_engine(engine: str, has_vllm: bool) -> str:
    return ("vllm" if has_vllm else "transformers") if engine == "auto" else engine


def validate_serve(
    tx: Transaction, request: ServeRequest, machine: Machine, has_vllm: bool, caps: policy.DemoCaps | None = None
) -> list[Problem]:
    """Every problem of the request; ``caps``: a public demo visitor's, to whom serving is the host's alone (DM-007)."""
    if caps:
        return [policy.host_only("serving an endpoint", "model_id")]
    problems: list[Problem] = []
    model = resolve_model(tx, request.model_id, needs_weights=True, problems=problems)
    if request.adapter_id:
        resolve_adapter(tx, request.adapter_id, model, problems)
    problems += choose_devices(request.gpus, machine, rules.EXPORT_DEVICES)[1]
    if request.engine not in ENGINE_CHOICES:
        problems.append(
            Problem(rules.SERVE_ENGINE, f"engine must be one of {', '.join(ENGINE_CHOICES)} (got {request.engine!r})", "engine")
        )
    elif request.engine == "vllm" and not has_vllm:
        problems.append(
            Problem(
                rules.SERVE_ENGINE, "engine vllm is not installed in this environment (pip install vllm), or choose transformers", "engine"
            )
        )
    for name, (low, high) in LIMIT_BOUNDS.items():
        value = getattr(request, name)
        whole = name != "request_timeout_s"
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or not low <= value <= high:
            kind = "a whole number" if whole else "a number of seconds"
            problems.append(Problem(rules.SERVE_LIMITS, f"{name} must be {kind} from {low} to {high:,} (got {value!r})", name))
    return problems
