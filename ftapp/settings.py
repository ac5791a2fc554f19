"""The one settings object, built in ``launch.py`` (or the CLI) and handed to every service."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def on_spaces(environ: Mapping[str, str]) -> bool:
    """Hugging Face Spaces sets SYSTEM=spaces (what gradio itself checks) and SPACE_ID=owner/name."""
    return environ.get("SYSTEM") == "spaces" or bool(environ.get("SPACE_ID"))


def demo_requested(environ: Mapping[str, str]) -> bool:
    """FTAPP_DEMO=1 or 0 decides; without it, running on Spaces means the public demo."""
    raw = (environ.get("FTAPP_DEMO") or "").strip()
    return _flag(raw) if raw else on_spaces(environ)


def demo_home(data: Path = Path("/data")) -> Path:
    """The demo's home: Spaces' persistent storage when the Space has it (mounted at /data), else a
    fresh temporary folder, which a restart forgets."""
    if data.is_dir() and os.access(data, os.W_OK):
        return data / "ftapp"
    return Path(tempfile.mkdtemp(prefix="ftapp-demo-"))


@dataclass(frozen=True)
class Settings:
    home: Path
    host: str = "127.0.0.1"
    port: int = 7860
    offline: bool = False
    # Runs log to the local MLflow store unless FTAPP_MLFLOW=0 (e.g. a training host without mlflow).
    mlflow_enabled: bool = True
    # Server folders a request may name (uploads, operator-allowed roots); None: any path, which is
    # right for a local app but not for one shared with other people.
    allowed_roots: tuple[Path, ...] | None = None
    # The public demo (FTAPP_DEMO=1, or on Hugging Face Spaces): visitors upload, train small, download.
    demo: bool = False

    @property
    def is_local(self) -> bool:
        """The app is local and unshared: whoever sends a request is the host (no ``--share``/``--host``, no demo)."""
        return self.allowed_roots is None and not self.demo

    @property
    def allows_custom_code(self) -> bool:
        """Whether a request may run code its sender supplied (custom reward functions): only when the
        app is local and unshared, since that code runs on the host with the app's rights."""
        return self.is_local

    @classmethod
    def from_env(cls, home: str | Path | None = None, **overrides) -> Settings:
        overrides.setdefault("demo", demo_requested(os.environ))
        chosen = home or os.environ.get("FTAPP_HOME") or (demo_home() if overrides["demo"] else Path.home() / ".ftapp")
        offline = _flag(os.environ.get("HF_HUB_OFFLINE")) or _flag(os.environ.get("FTAPP_OFFLINE"))
        mlflow = os.environ.get("FTAPP_MLFLOW", "1").strip().lower() not in {"0", "false", "no", "off"}
        return cls(home=Path(chosen).expanduser().resolve(), offline=offline, mlflow_enabled=mlflow, **overrides)

    @property
    def db_path(self) -> Path:
        return self.home / "ftapp.db"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def exports_dir(self) -> Path:
        """Export archives only: the one folder of the home the UI may hand to a browser (no specs, no keys)."""
        return self.home / "exports"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.home / "mlartifacts"

    def create_dirs(self) -> None:
        for path in (self.home, self.datasets_dir, self.models_dir, self.runs_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.mkdir(mode=0o700, exist_ok=True)
