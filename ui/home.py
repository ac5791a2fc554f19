"""Home: what this workstation has, what the registry holds, and the offline demo."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from ftapp.demo_kit import REAL_MODEL_HINT
from ftapp.run_vocabulary import LONG_LIVED, RunKind, RunStatus
from ftapp.runs import duration
from ftapp.services import Services
from ftapp.shipping import EndpointState
from ui.errors import shows_errors
from ui.run_text import elapsed_s, local_time, progress_bar, progress_fraction, progress_text, status_label
from ui.wiring import PRIVATE, bind, on_show

RECENT_ADAPTERS = 5
LIVE_REFRESH_S = 5.0  # progress on Home is a glance; the Runs tab is the place to watch a run closely
DEMO_HELP = (
    "The offline demo builds a tiny Llama model on this machine (no network; about a minute on a CPU) and "
    "registers it with a small support-intent dataset and a prompt, so every tab has something real "
    "to show. Building it again reuses what exists."
)


def gpu_holders(runs: Sequence[Any]) -> dict[str, list[str]]:
    """Device label ("0", "1", "cpu") -> names of the running runs placed on it."""
    holders: dict[str, list[str]] = {}
    for run in runs:
        for device in (run.gpus or "").split(","):
            if device.strip():
                holders.setdefault(device.strip(), []).append(f"{run.name or run.kind} (`{run.id[:8]}`)")
    return holders


def machine_summary(services: Services, running: Sequence[Any] = ()) -> str:
    machine = services.machine()
    holders = gpu_holders(running)
    memory_gib = machine.memory_available_mib / 1024
    lines = [
        "### This machine",
        f"- **CPU cores:** {machine.cpu_count}",
        f"- **Memory available:** {memory_gib:.1f} GiB",
    ]
    if holders.get("cpu"):
        lines.append(f"- **Running on the CPU:** {', '.join(holders['cpu'])}")
    if not machine.gpus:
        lines.append("- **GPUs:** none found (nvidia-smi); runs go to the CPU")
        return "\n".join(lines)
    lines += ["", "| GPU | Name | Memory used | Held by |", "|---:|---|---|---|"]
    for gpu in machine.gpus:
        lines.append(
            f"| {gpu.index} | {gpu.name} | {gpu.memory_used_mib / 1024:.1f} of {gpu.memory_total_mib / 1024:.1f} GiB | "
            f"{', '.join(holders.get(str(gpu.index), [])) or 'free'} |"
        )
    return "\n".join(lines)


def registry_summary(services: Services) -> str:
    counts = {
        "Models": len(services.models.list()),
        "Datasets": len(services.datasets.list()),
        "Prompts": len(services.prompts.list()),
        "Adapters": len(services.adapters.list()),
        "Configs": len(services.configs.list()),
    }
    lines = ["### Registry", "| Resource | Count |", "|---|---:|"]
    lines += [f"| {name} | {count} |" for name, count in counts.items()]
    if services.is_empty():
        lines.append("\nThe registry is empty: build the offline demo below, or import a dataset and a model.")
    return "\n".join(lines)


def summaries(services: Services) -> tuple[str, str, gr.Button]:
    # The demo button stays usable once the registry has content; it only stops being the
    # obvious next step.
    variant = "primary" if services.is_empty() else "secondary"
    running = services.runs.list(RunStatus.RUNNING)
    return machine_summary(services, running), registry_summary(services), gr.Button(variant=variant)


def worker_state(services: Services, run: Any, workers: dict[str, Any]) -> str:
    """What a live endpoint or compare worker is doing, in a few words."""
    if run.cancel_requested_at is not None:
        return "stopping"
    if run.status == RunStatus.QUEUED:
        return "⏳ waiting for its devices"
    if run.kind == RunKind.SERVE:
        endpoint = services.serving.endpoint(run.id)
        return f"🟢 serving at `{endpoint.base_url}`" if endpoint.state == EndpointState.SERVING else "loading the model"
    worker = workers.get(run.id)
    if worker is None or not worker.ready:
        return "loading the model"
    return f"ready · {worker.served} answered"


def workers_summary(services: Services, live: Sequence[Any]) -> list[str]:
    """Endpoints and compare workers: they wait for requests until stopped or idle, so they are not training."""
    lines = ["\n### Serving / workers"]
    if not live:
        return [*lines, "No endpoint or compare worker is running."]
    workers = {w.run_id: w for w in services.comparisons.workers()}
    what = {RunKind.SERVE: "endpoint (**Serve** tab)", RunKind.INFERENCE: "compare worker (**Compare** tab)"}
    lines += ["| What | Run | State | Up for | Devices |", "|---|---|---|---|---|"]
    lines += [
        f"| {what.get(run.kind, run.kind)} | {run.name or run.kind} (`{run.id[:8]}`) | {worker_state(services, run, workers)} | "
        f"{duration(elapsed_s(run)) if run.started_at else ''} | {run.gpus or run.devices_requested} |"
        for run in live
    ]
    return lines


def activity_summary(services: Services) -> str:
    """Running and queued runs with their progress, the endpoints and compare workers, then the newest adapters."""
    everything = [*services.runs.list(RunStatus.RUNNING), *services.runs.list(RunStatus.QUEUED)]
    live = [run for run in everything if run.kind not in LONG_LIVED]
    lines = ["### Training now"]
    if not live:
        lines.append("Nothing is training or queued. Start a run in the **Train** tab.")
    else:
        lines += ["| Status | Run | Progress | ETA | Devices |", "|---|---|---|---|---|"]
        for run in live:
            bar = f"`{progress_bar(progress_fraction(run), 12)}` " if run.status == RunStatus.RUNNING else ""
            step = f"{run.step or 0}/{run.total_steps}" if run.total_steps else progress_text(run)
            eta = duration(run.eta_s) if run.status == RunStatus.RUNNING and run.eta_s is not None else ""
            lines.append(
                f"| {status_label(run.status)} | {run.name or run.kind} (`{run.id[:8]}`) | {bar}{step} | "
                f"{eta} | {run.gpus or run.devices_requested} |"
            )
    lines += workers_summary(services, [run for run in everything if run.kind in LONG_LIVED])
    adapters = sorted(services.adapters.list(), key=lambda a: a.created_at, reverse=True)[:RECENT_ADAPTERS]
    lines.append("\n### Recent adapters")
    if not adapters:
        lines.append("None yet: a successful run registers its adapter here.")
    else:
        models = {m.id: m.name for m in services.models.list()}
        lines += ["| Adapter | Base model | From run | Added |", "|---|---|---|---|"]
        lines += [
            f"| {a.name} | {models.get(a.model_id, a.model_id)} | {f'`{a.run_id[:8]}`' if a.run_id else '—'} | {local_time(a.created_at)} |"
            for a in adapters
        ]
    return "\n".join(lines)


def live_summaries(services: Services) -> tuple[str, str]:
    return machine_summary(services, services.runs.list(RunStatus.RUNNING)), activity_summary(services)


@shows_errors
def build_demo(services: Services) -> str:
    """Build the offline demo model (no network) and register it with a demo dataset and prompt."""
    demo = services.demo.install()
    how = "Built the demo model and registered" if demo.built else "The demo model existed already; registered"
    return (
        f"{how}:\n\n"
        f"- **Model** `{demo.model.name}` ({demo.model.architecture}, "
        f"{demo.model.num_parameters or 0:,} parameters) at `{demo.model.location}`\n"
        f"- **Dataset** `{demo.dataset.name}` ({demo.dataset.num_rows} rows, format {demo.dataset.format})\n"
        f"- **Prompt** `{demo.prompt.name}` on that dataset"
    )


def real_model_help(services: Services) -> str:
    """The Home tab's offer of the real model, or how to get it."""
    if services.demo.real_model_request() is None:
        return (
            f"A real instruct model (SmolLM2-135M-Instruct, Apache-2.0) is one install away: `{REAL_MODEL_HINT}`, "
            "then restart the app. The tiny model above stays the quick fallback."
        )
    return (
        "**SmolLM2-135M-Instruct** (135M parameters, Apache-2.0) is installed: add it as a base model to fine-tune "
        "for real (converted once, about 30 s on two CPU cores; a CPU fine-tune takes minutes, not seconds)."
    )


@shows_errors
def add_real_model(services: Services) -> str:
    model = services.demo.install_real_model()
    return (
        f"Registered **{model.name}** ({model.architecture}, {model.num_parameters or 0:,} parameters) from "
        f"`{model.location or model.huggingface_name}`; choose it in the Train tab."
    )


def render(services: Services) -> None:
    with gr.Tab("Home", id="home") as tab:
        with gr.Row(equal_height=False):
            machine = gr.Markdown()
            registry = gr.Markdown()
        activity = gr.Markdown(elem_id="home-activity")
        gr.Markdown(f"### Offline demo\n{DEMO_HELP}")
        demo_button = gr.Button("Build the offline demo", variant="secondary", scale=0)
        demo_result = gr.Markdown()
        gr.Markdown(real_model_help(services))
        real_button = gr.Button("Add the real model", variant="secondary", scale=0, visible=services.demo.real_model_request() is not None)
        real_result = gr.Markdown()
        timer = gr.Timer(LIVE_REFRESH_S)  # inside the tab: in gr.Tabs it would count as a tab
    refresh = bind(summaries, services)
    on_show(tab, refresh, [machine, registry, demo_button])
    on_show(tab, bind(activity_summary, services), [activity])
    timer.tick(bind(live_summaries, services), outputs=[machine, activity], show_progress="hidden", api_visibility=PRIVATE)
    # One build at a time: two concurrent builds would write the same model directory.
    demo_button.click(
        bind(build_demo, services),
        outputs=demo_result,
        concurrency_limit=1,
        concurrency_id="demo-build",
        api_name="build_demo",
    ).success(refresh, outputs=[machine, registry, demo_button], show_progress="hidden", api_visibility=PRIVATE)
    real_button.click(
        bind(add_real_model, services),
        outputs=real_result,
        concurrency_limit=1,
        concurrency_id="demo-build",
        api_name="add_real_model",
    ).success(refresh, outputs=[machine, registry, demo_button], show_progress="hidden", api_visibility=PRIVATE)
