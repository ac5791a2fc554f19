"""Real services on a throw-away home: handlers are tested against SQLite and real files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ftapp.services import Services, open_services
from ftapp.settings import Settings

SHARED_DATA = (Path(__file__).resolve().parents[2] / "../shared/data").resolve()
ALPACA = SHARED_DATA / "alpaca_en_demo.json"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing here may reach the Hub; a Hub look-up must fail fast instead of retrying.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    opened = open_services(Settings.from_env(tmp_path / "home"))
    yield opened
    opened.close()


@pytest.fixture
def alpaca() -> Path:
    if not ALPACA.is_file():
        pytest.skip(f"real sample data {ALPACA} is absent")
    return ALPACA
