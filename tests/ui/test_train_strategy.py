"""The Train tab's Strategy picker (issue 20) on real services: the preflight says which strategy and why, with both
per-GPU peaks; FSDP2 where nothing can be sharded is refused with its rule; Start writes the strategy into the spec.
Two GPUs are a ``Machine`` the services see in place of this CPU-only one."""

from __future__ import annotations

import json

import gradio as gr
import pytest

import ftapp.runs.service as run_service
from ftapp.runs.machine import GpuInfo, Machine
from ftapp.services import Services
from ui import train

TWO_GPUS = Machine((GpuInfo(0, "NVIDIA H200", 143_771, 1_000), GpuInfo(1, "NVIDIA H200", 143_771, 1_000)), 32, 256 * 1024)


def test_fsdp2_on_two_gpus_is_planned_said_and_written_into_the_spec(services: Services, train_form, monkeypatch) -> None:
    monkeypatch.setattr(run_service, "detect_machine", lambda: TWO_GPUS)
    form = train_form(devices="0,1", strategy="fsdp2")

    text = train.preflight(services, form)
    assert "**Strategy: FSDP2**" in text and "- FSDP2 as asked: each of 2 GPUs holds a slice; DDP ~" in text

    train.start_training(services, form)
    [run] = services.runs.list()
    spec = json.loads(run.spec)
    assert (spec["strategy"], spec["num_processes"]) == ("fsdp2", 2)


def test_fsdp2_on_the_cpu_is_refused_with_its_rule(services: Services, train_form) -> None:
    with pytest.raises(gr.Error, match="FT-020: FSDP2 shards the model over several GPUs; on the CPU"):
        train.preflight(services, train_form(strategy="fsdp2"))
