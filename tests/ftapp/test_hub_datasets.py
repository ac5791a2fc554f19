"""DS-002 for Hub datasets, checked without a network: offline mode, an unreachable endpoint and
malformed requests must all fail fast with a message that says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftapp.datasets.hub import HubUnreachableError, _feature_kind, inspect_hub_dataset, read_hub_rows
from ftapp.errors import NetworkRequiredError, ValidationError

REPO_ROOT = Path(__file__).resolve().parents[2]
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture
def online_env(monkeypatch):
    for variable in OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
@pytest.mark.parametrize(
    "call",
    [
        lambda: inspect_hub_dataset("tatsu-lab/alpaca"),
        lambda: read_hub_rows("tatsu-lab/alpaca", None, "train", offset=5, limit=5),
    ],
    ids=["inspect", "read_rows"],
)
def test_offline_fails_fast_with_ds002(online_env, variable, call):
    # Import both libraries while online, so only a check made at call time can notice the switch.
    import datasets  # noqa: F401
    import huggingface_hub  # noqa: F401

    online_env.setenv(variable, "1")
    started = time.monotonic()
    with pytest.raises(HubUnreachableError) as caught:
        call()
    assert time.monotonic() - started < 2
    error = caught.value
    assert isinstance(error, ValidationError) and isinstance(error, NetworkRequiredError)
    assert error.rule_ids == ["DS-002"]
    assert "cannot be reached" in str(error) and f"{variable}=1" in str(error)
    assert "local file" in str(error)


def test_unreachable_hub_fails_fast_with_ds002():
    # huggingface_hub fixes its endpoint at import, hence a fresh interpreter pointed at a closed port.
    script = (
        "from ftapp.datasets.hub import HubUnreachableError, inspect_hub_dataset\n"
        "try:\n"
        "    inspect_hub_dataset('tatsu-lab/alpaca')\n"
        "except HubUnreachableError as exc:\n"
        "    print(exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARIABLES}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", PYTHONPATH=str(REPO_ROOT))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 20, "datasets' 25-second retry loop was not avoided"
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("DS-002: the Hugging Face Hub cannot be reached"), result.stdout + result.stderr
    assert "local file" in result.stdout


@pytest.mark.parametrize(
    ("name", "split", "fields"),
    [
        ("", "train", ["huggingface_name"]),
        ("not a valid id!", "train", ["huggingface_name"]),
        ("owner/data", "", ["hf_split"]),
        (" ", " ", ["huggingface_name", "hf_split"]),
    ],
)
def test_malformed_requests_are_ds002_without_touching_the_network(online_env, name, split, fields):
    online_env.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # any request would fail differently
    with pytest.raises(ValidationError) as caught:
        inspect_hub_dataset(name, split=split)
    assert not isinstance(caught.value, HubUnreachableError)
    assert caught.value.rule_ids == ["DS-002"] * len(fields)
    assert [problem.field for problem in caught.value.problems] == fields


def test_negative_page_is_a_caller_error():
    with pytest.raises(ValueError):
        read_hub_rows("tatsu-lab/alpaca", None, "train", offset=-1)


def test_feature_vocabulary_for_hub_features():
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "n": datasets.Value("int64"),
            "x": datasets.Value("float32"),
            "ok": datasets.Value("bool"),
            "when": datasets.Value("timestamp[s]"),
            "label": datasets.ClassLabel(names=["neg", "pos"]),
            "turns": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
            "meta": {"source": datasets.Value("string")},
            "image": datasets.Image(),
        }
    )
    assert {column: _feature_kind(feature) for column, feature in features.items()} == {
        "text": "string",
        "n": "int",
        "x": "float",
        "ok": "bool",
        "when": "object",
        "label": "int",
        "turns": "list",
        "meta": "object",
        "image": "object",
    }


def test_importing_the_modules_leaves_heavy_libraries_unloaded():
    script = (
        "import sys, ftapp.datasets.hub, ftapp.datasets.files, ftapp.datasets.formats\n"
        "print(sorted(m for m in ('datasets', 'huggingface_hub', 'pyarrow', 'pandas') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
