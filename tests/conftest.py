from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def demo_kit(tmp_path_factory):
    """The offline demo model, dataset and prompt, built once per test session."""
    # Imported here: torch is costly and most tests never need the kit.
    from trainer.demo_model import build_demo_kit

    return build_demo_kit(tmp_path_factory.mktemp("demo") / "kit")
