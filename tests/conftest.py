from __future__ import annotations

import pytest

from trainer.demo_model import DemoKit, build_demo_kit


@pytest.fixture(scope="session")
def demo_kit(tmp_path_factory) -> DemoKit:
    """The offline demo model, dataset and prompt, built once per test session."""
    return build_demo_kit(tmp_path_factory.mktemp("demo") / "kit")
