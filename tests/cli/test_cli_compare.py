"""``ftapp compare`` from a terminal: a real worker answers base and adapter, then is stopped."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from ftapp.models.adapters import AddAdapterRequest

pytestmark = pytest.mark.slow  # starts real trainer processes


def test_compare_prints_every_answer_and_refuses_bad_input(services, registered, random_adapter, capsys):
    adapter = services.adapters.add(AddAdapterRequest(name="rand", model_id=registered.model_id, location=str(random_adapter(11, 2.0))))
    home = str(services.settings.home)
    try:
        code = main(
            [
                "--home",
                home,
                "compare",
                "--model",
                registered.model_id,
                "--adapter",
                adapter.id,
                "--dataset",
                registered.dataset_id,
                "--prompt",
                registered.prompt_id,
                "--row",
                "3",
                "--set",
                "max_new_tokens=6",
                "--json",
            ]
        )
        out = json.loads(capsys.readouterr().out)
        assert code == 0 and len(out["labels"]) == 2 and out["labels"][1] == "rand"
        assert len(out["texts"]) == 2 and all(0 < n <= 6 for n in out["new_tokens"]) and out["settings"]["max_new_tokens"] == 6
        code = main(["--home", home, "compare", "--model", registered.model_id, "--adapter", "nope", "--text", " "])
        err = capsys.readouterr().err
        assert code == 2 and "CP-" in err
    finally:
        for run in services.comparisons.stop_worker(registered.model_id):
            services.runs.wait(run.id, timeout_s=60)
