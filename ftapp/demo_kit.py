"""The offline demo: a tiny pre-trained Llama, a support-intent dataset and its prompt.

The model is built by ``python -m trainer demo`` in a child process, because building it needs
torch and the app process never imports torch.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ftapp.datasets.service import AddDatasetRequest, DatasetService
from ftapp.errors import FtappError
from ftapp.models.service import AddModelRequest, ModelService
from ftapp.prompts.service import AddPromptRequest, PromptService
from ftapp.settings import Settings
from storage import DatasetRecord, ModelRecord, PromptRecord

DEMO_MODEL = "demo-tiny-llama"
DEMO_DATASET = "demo-support-intents"
DEMO_PROMPT = "demo-intent-prompt"
BUILD_TIMEOUT_S = 600
KIT_MANIFEST = "demo_kit.json"  # trainer.demo.model.MANIFEST_FILE; ftapp may not import trainer


@dataclass(frozen=True)
class DemoResources:
    model: ModelRecord
    dataset: DatasetRecord
    prompt: PromptRecord
    built: bool  # False when an earlier build was reused


class DemoInstaller:
    def __init__(self, settings: Settings, models: ModelService, datasets: DatasetService,
                 prompts: PromptService):
        self.settings, self.models, self.datasets, self.prompts = settings, models, datasets, prompts
        self._lock = threading.Lock()

    @property
    def kit_dir(self) -> Path:
        return self.settings.models_dir / DEMO_MODEL

    def _build(self) -> dict:
        self.settings.models_dir.mkdir(parents=True, exist_ok=True)
        log = self.settings.models_dir / f"{DEMO_MODEL}.build.log"
        with open(log, "w", encoding="utf-8") as handle:
            # stderr to the log file, never an undrained pipe; stdout carries the one JSON line.
            result = subprocess.run(
                [sys.executable, "-m", "trainer", "demo", str(self.kit_dir)],
                stdout=subprocess.PIPE, stderr=handle, text=True, timeout=BUILD_TIMEOUT_S,
            )
        if result.returncode != 0:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise FtappError(f"building the demo model failed (exit {result.returncode}); log {log}:\n{tail}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def _existing_kit(self) -> dict | None:
        # The builder writes its manifest last (paths relative to the kit), so its presence means
        # a finished build.
        manifest = self.kit_dir / KIT_MANIFEST
        if not manifest.is_file():
            return None
        kit = json.loads(manifest.read_text(encoding="utf-8"))
        kit["model_dir"] = str(self.kit_dir / kit["model_dir"])
        kit["dataset_path"] = str(self.kit_dir / kit["dataset_path"])
        return kit

    def is_building(self) -> bool:
        return self._lock.locked()

    def install(self) -> DemoResources:
        """Build (once) and register the demo; registering again returns what exists.

        The first app start builds in a background thread while a user may click the Home tab's
        button or run `ftapp models demo`; a thread lock and a file lock make the later callers
        wait for the build and then reuse it instead of building into the same directory.
        """
        self.settings.models_dir.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.settings.models_dir / f".{DEMO_MODEL}.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            return self._install_locked()

    def _install_locked(self) -> DemoResources:
        kit = self._existing_kit()
        built = kit is None
        if kit is None:
            kit = self._build()
        model = next((m for m in self.models.list() if m.name == DEMO_MODEL), None)
        if model is None:
            model = self.models.add(AddModelRequest(
                type="project", name=DEMO_MODEL, location=kit["model_dir"],
                description="Tiny Llama built offline and briefly pre-trained, for demos and tests.",
            ))
        dataset = next((d for d in self.datasets.list() if d.name == DEMO_DATASET), None)
        if dataset is None:
            dataset = self.datasets.add(AddDatasetRequest(
                name=DEMO_DATASET, location=kit["dataset_path"],
                description="Synthetic customer-support requests labelled with a snake_case intent.",
            ))
        prompt = next((p for p in self.prompts.list() if p.name == DEMO_PROMPT), None)
        if prompt is None:
            spec = kit["prompt"]
            prompt = self.prompts.add(AddPromptRequest(
                name=DEMO_PROMPT, dataset_id=dataset.id, prompt_template=spec["prompt_template"],
                input_template=spec["input_template"], completion_template=spec["completion_template"],
                description="Maps a support request to its intent.",
            ))
        return DemoResources(model, dataset, prompt, built)
