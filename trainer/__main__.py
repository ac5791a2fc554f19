"""``python -m trainer <verb> <arg>``: the process boundary between ftapp and the ML stack.

Result verbs (``demo``, ``import-gguf``) print progress however they like but end with ONE line of JSON on stdout,
which the caller parses; failures go to stderr with exit status 1 (2 for a malformed command line).
Run verbs (``sft``, ``dpo``, ``grpo``, ``axolotl``, ``evaluate``, ``infer``, ``export``, ``serve`` SPEC_JSON) follow the run contract instead: events in
``<run_dir>/events.jsonl`` and the exit statuses documented in ``trainer.run_process``.
``python -m trainer standby`` imports everything first and then becomes the run the supervisor hands
it (``trainer.standby``).
Verbs import their module inside the function so that a verb only pays for, and can only be
broken by, the libraries it actually uses.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from trainer.library_noise import quiet_library_noise


def _demo(out_dir: str) -> str:
    from trainer.demo.model import build_demo_kit

    return build_demo_kit(Path(out_dir)).to_json()


def _import_gguf(request_path: str) -> str:
    from trainer.models.gguf_import import import_request

    return import_request(request_path).to_json()


def _sft(spec_path: str) -> NoReturn:
    from trainer.recipes.sft_process import main as run_sft_process

    run_sft_process(spec_path)


def _dpo(spec_path: str) -> NoReturn:
    from trainer.recipes.dpo_process import main as run_dpo_process

    run_dpo_process(spec_path)


def _grpo(spec_path: str) -> NoReturn:
    from trainer.recipes.grpo_process import main as run_grpo_process

    run_grpo_process(spec_path)


def _axolotl(spec_path: str) -> NoReturn:
    from trainer.recipes.axolotl_process import main as run_axolotl_process

    run_axolotl_process(spec_path)


def _evaluate(spec_path: str) -> NoReturn:
    from trainer.evaluation.process import main as run_evaluation_process

    run_evaluation_process(spec_path)


def _infer(spec_path: str) -> NoReturn:
    from trainer.inference.worker import main as run_inference_worker

    run_inference_worker(spec_path)


def _export(spec_path: str) -> NoReturn:
    from trainer.export.process import main as run_export_process

    run_export_process(spec_path)


def _serve(spec_path: str) -> NoReturn:
    from trainer.inference.serve import main as run_serve_process

    run_serve_process(spec_path)


VERBS: dict[str, Callable[[str], str]] = {
    "demo": _demo,
    "import-gguf": _import_gguf,
}
RUN_VERBS: dict[str, Callable[[str], NoReturn]] = {
    "sft": _sft,
    "dpo": _dpo,
    "grpo": _grpo,
    "axolotl": _axolotl,
    "evaluate": _evaluate,
    "infer": _infer,
    "export": _export,
    "serve": _serve,
}


def main(argv: list[str] | None = None) -> int:
    quiet_library_noise()  # before any verb imports the libraries that print it
    args = sys.argv[1:] if argv is None else argv
    if args == ["standby"]:
        from trainer.standby import main as wait_for_a_run

        wait_for_a_run()
    if len(args) != 2 or args[0] not in (*VERBS, *RUN_VERBS):
        print(f"usage: python -m trainer {{{','.join((*VERBS, *RUN_VERBS))}}} ARG", file=sys.stderr)
        return 2
    verb, arg = args
    if verb in RUN_VERBS:
        RUN_VERBS[verb](arg)  # exits the process itself, with the run contract's status
    try:
        result = VERBS[verb](arg)
    except Exception as exc:  # the caller only sees stderr and the exit status, so report everything
        print(f"{verb} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
