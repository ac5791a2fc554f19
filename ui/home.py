"""Home: what this workstation has, what the registry holds, and the offline demo."""

from __future__ import annotations

import gradio as gr

from ftapp.services import Services
from ui.errors import shows_errors
from ui.wiring import bind, on_show

DEMO_HELP = (
    "The offline demo builds a tiny Llama model on this machine (no network; about a minute on a CPU) and "
    "registers it with a small support-intent dataset and a prompt, so every tab has something real "
    "to show. Building it again reuses what exists."
)


def machine_summary(services: Services) -> str:
    machine = services.machine()
    memory_gib = machine.memory_available_mib / 1024
    lines = [
        "### This machine",
        f"- **CPU cores:** {machine.cpu_count}",
        f"- **Memory available:** {memory_gib:.1f} GiB",
    ]
    if not machine.gpus:
        lines.append("- **GPUs:** none found (nvidia-smi); runs go to the CPU")
    for gpu in machine.gpus:
        lines.append(
            f"- **GPU {gpu.index}:** {gpu.name}, {gpu.memory_free_mib / 1024:.1f} of "
            f"{gpu.memory_total_mib / 1024:.1f} GiB free"
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
    return machine_summary(services), registry_summary(services), gr.Button(variant=variant)


@shows_errors
def build_demo(services: Services) -> str:
    demo = services.demo.install()
    how = "Built the demo model and registered" if demo.built else "The demo model existed already; registered"
    return (
        f"{how}:\n\n"
        f"- **Model** `{demo.model.name}` ({demo.model.architecture}, "
        f"{demo.model.num_parameters or 0:,} parameters) at `{demo.model.location}`\n"
        f"- **Dataset** `{demo.dataset.name}` ({demo.dataset.num_rows} rows, format {demo.dataset.format})\n"
        f"- **Prompt** `{demo.prompt.name}` on that dataset"
    )


def render(services: Services) -> None:
    with gr.Tab("Home", id="home") as tab:
        with gr.Row(equal_height=False):
            machine = gr.Markdown()
            registry = gr.Markdown()
        gr.Markdown(f"### Offline demo\n{DEMO_HELP}")
        demo_button = gr.Button("Build the offline demo", variant="secondary", scale=0)
        demo_result = gr.Markdown()
    refresh = bind(summaries, services)
    on_show(tab, refresh, [machine, registry, demo_button])
    # One build at a time: two concurrent builds would write the same model directory.
    demo_button.click(
        bind(build_demo, services), outputs=demo_result, concurrency_limit=1, concurrency_id="demo-build",
    ).success(refresh, outputs=[machine, registry, demo_button], show_progress="hidden")
