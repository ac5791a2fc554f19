"""The public demo's limits (Hugging Face Spaces, or FTAPP_DEMO=1): what one visitor may do, and how much.

Visitors are anonymous, so these limits stand in for a login: small data, short runs, few at a
time, demo-size models on one device, uploads only, and nothing that spends the host's token,
changes the host's settings or runs code a visitor wrote (that last one is FT-018, through
``Settings.allows_custom_code``). Each limit has its rule ID, DM-001..DM-009; the services and
``validate_*`` functions add them to the usual validation when given a visitor or its caps
(``ftapp.demo.visitor``). A visitor is a signed cookie (``ftapp.demo.client_identity``),
which anyone can get afresh, so the caps on concurrent runs also hold per network address (DM-009):
one client cannot take every slot by clearing its cookies.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from ftapp import rules
from ftapp.errors import Problem
from ftapp.run_vocabulary import RunKind
from ftapp.settings import Settings

# Runs that hold a process: they count against the caps on concurrent runs. Serving is refused in
# the demo; inference workers of the Compare tab idle out on their own (and are small on CPU).
CAPPED_KINDS = (RunKind.FINETUNE, RunKind.EVALUATION, RunKind.EXPORT)
INFERENCE = RunKind.INFERENCE  # the Compare tab's workers: capped on their own, over all visitors (max_runs_total)
# What a visitor may export: a download of their adapter. Merges register models everyone would
# see, registrations fill the host's MLflow registry, and a push would use the host's token.
DEMO_EXPORT_ACTIONS = ("archive",)


@dataclass(frozen=True)
class DemoCaps:
    """The caps; a host changes one with FTAPP_DEMO_<FIELD>, e.g. FTAPP_DEMO_MAX_TRAIN_STEPS=100."""

    max_dataset_rows: int = 2000  # per uploaded dataset, and per training run
    max_train_steps: int = 200  # a run without max_steps stops here
    max_eval_rows: int = 50  # an evaluation without max_rows scores this many
    max_runs_per_visitor: int = 1  # queued or running training, evaluation and export runs
    max_runs_total: int = 4  # the same, over all visitors (and, counted apart, the Compare tab's workers)
    # The same per network address, over every visitor seen there: below max_runs_total, so that one
    # client (any number of cookies) leaves slots to the others.
    max_runs_per_address: int = 2
    max_model_parameters: int = 600_000_000  # demo-size models only
    max_upload_mb: int = 20  # gradio refuses larger uploads before they reach the app

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DemoCaps:
        environ = os.environ if environ is None else environ
        values = {}
        for item in fields(cls):
            raw = environ.get(f"FTAPP_DEMO_{item.name.upper()}")
            if raw is not None and raw.strip().isdigit() and int(raw) > 0:
                values[item.name] = int(raw)
        return cls(**values)


def owner_of(visitor_key: str) -> str:
    """The owner stored with a visitor's rows: a digest of its browser key, so that nothing on disk or in
    the database (run folders, specs shown in the UI) hands out the key itself."""
    return "v-" + hashlib.sha256(visitor_key.encode()).hexdigest()[:24]


def visitor_dir(settings: Settings, owner: str) -> Path:
    """Where a visitor's uploads are copied: a folder of their own under the home."""
    return settings.home / "visitors" / owner


def rows_problem(caps: DemoCaps, rows: int | None, field: str, what: str) -> Problem | None:
    if rows is not None and rows <= caps.max_dataset_rows:
        return None
    counted = "an unknown number of" if rows is None else f"{rows:,}"
    return Problem(
        rules.DEMO_ROWS,
        f"the demo takes at most {caps.max_dataset_rows:,} rows per {what} ({counted} rows here); use a smaller file or dataset_fraction",
        field,
    )


def training_steps(values: Mapping[str, object], train_rows: int, num_epochs: float) -> int:
    """The optimizer steps a run takes: max_steps when set, else epochs over micro-batches of rows."""
    max_steps = int(values.get("max_steps") or 0)  # type: ignore[call-overload]
    if max_steps > 0:
        return max_steps
    batch = int(values.get("per_device_train_batch_size") or 1) * int(values.get("gradient_accumulation_steps") or 1)  # type: ignore[call-overload]
    return max(1, math.ceil(train_rows * num_epochs / max(1, batch)))


def steps_problem(caps: DemoCaps, steps: int) -> Problem | None:
    if steps <= caps.max_train_steps:
        return None
    return Problem(
        rules.DEMO_STEPS,
        f"the demo trains at most {caps.max_train_steps} steps per run (this one asks for {steps}); "
        f"set max_steps to {caps.max_train_steps} or fewer",
        "max_steps",
    )


def eval_rows_problem(caps: DemoCaps, max_rows: int) -> Problem | None:
    if max_rows <= caps.max_eval_rows:
        return None
    return Problem(rules.DEMO_ROWS, f"the demo evaluates at most {caps.max_eval_rows} rows (max_rows {max_rows})", "max_rows")


def concurrency_problems(caps: DemoCaps, own_live: list[str], all_live: int) -> list[Problem]:
    """``own_live``: names of the visitor's queued or running runs; ``all_live``: every visitor's count."""
    problems = []
    if len(own_live) >= caps.max_runs_per_visitor:
        problems.append(
            Problem(
                rules.DEMO_RUNS_PER_VISITOR,
                f"the demo runs {caps.max_runs_per_visitor} job(s) per visitor at a time; wait for "
                f"{', '.join(repr(n) for n in own_live)} to finish, or cancel it in the Runs tab",
                "runs",
            )
        )
    if all_live >= caps.max_runs_total:
        problems.append(
            Problem(
                rules.DEMO_RUNS_TOTAL,
                f"the demo is busy ({all_live} jobs queued or running for all visitors, "
                f"at most {caps.max_runs_total}); try again in a few minutes",
                "runs",
            )
        )
    return problems


def address_problem(caps: DemoCaps, address_live: list[str], what: str = "job(s)") -> Problem | None:
    """``address_live``: names of the queued or running runs of every visitor seen at this visitor's address."""
    if len(address_live) < caps.max_runs_per_address:
        return None
    return Problem(
        rules.DEMO_RUNS_PER_ADDRESS,
        f"the demo runs at most {caps.max_runs_per_address} {what} at a time per network address, "
        f"whichever browser or cookie asks ({len(address_live)} queued or running from yours: "
        f"{', '.join(repr(n) for n in address_live)}); wait for one to finish",
        "runs",
    )


def gpus_problem(gpus: str) -> Problem | None:
    if (gpus or "auto").strip().lower() in ("auto", "cpu"):
        return None
    return Problem(rules.DEMO_MODEL_AND_DEVICE, f"the demo chooses the device itself: gpus 'auto' or 'cpu' (got {gpus!r})", "gpus")


def device_problems(caps: DemoCaps, gpus: str, num_processes: int, num_parameters: int | None, model_name: str) -> list[Problem]:
    problems = [p for p in (gpus_problem(gpus),) if p]
    if num_processes != 1:
        problems.append(Problem(rules.DEMO_MODEL_AND_DEVICE, f"the demo runs one process per job (got {num_processes})", "num_processes"))
    if num_parameters is None or num_parameters > caps.max_model_parameters:
        size = "of unknown size" if num_parameters is None else f"has {num_parameters:,} parameters"
        problems.append(
            Problem(
                rules.DEMO_MODEL_AND_DEVICE,
                f"model '{model_name}' {size}; the demo trains demo-size models of at most {caps.max_model_parameters:,} parameters",
                "base_model_id",
            )
        )
    return problems


def upload_only(what: str, field: str) -> Problem:
    return Problem(
        rules.DEMO_UPLOADS_ONLY,
        f"the demo takes uploads only: {what} is refused (no Hugging Face Hub downloads, no server paths); upload the file instead",
        field,
    )


def not_uploaded_here(name: str, demo: bool) -> Problem:
    """A request naming a file (a gradio FileData) that this client did not upload: a server path, or another visitor's upload."""
    if demo:
        return upload_only(f"{name!r} (not a file this browser uploaded)", "location")
    return Problem(
        rules.DATASET_LOCATION,
        f"{name!r} was not uploaded by this browser: a shared app imports only files uploaded in this "
        "session (or, by path, files under an --allow-root folder); upload the file instead",
        "location",
    )


def host_only(action: str, field: str | None = None) -> Problem:
    return Problem(rules.DEMO_HOST_ONLY, f"{action} is not part of the public demo; run ftapp on your own machine for it", field)


def shared_read_only(kind: str, name: str) -> Problem:
    return Problem(rules.DEMO_READ_ONLY, f"{kind} '{name}' is shared by every visitor of the demo and cannot be changed or removed", "id")
