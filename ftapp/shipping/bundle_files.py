"""The files of a cluster bundle that are not data: launch script, Slurm job, accelerate config, requirements.

The launch script runs the same entry point as the app's supervisor (``python -m trainer <verb>
spec.json``), through ``accelerate launch`` across the nodes of a Slurm job, and leaves the same
``run/events.jsonl`` behind; ``ftapp runs import-bundle`` reads it back. No scheduler of our own:
Slurm places the nodes, accelerate (torchrun underneath) wires the processes together.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from pathlib import Path

MAIN_PROCESS_PORT = 29500
# Used by the launch, or picked up by the trainer when present; not imported by name in trainer/.
EXTRA_DISTRIBUTIONS = ("accelerate", "bitsandbytes", "liger-kernel", "safetensors")

LAUNCH_SH = r"""#!/usr/bin/env bash
# Run this bundle's training: `bash launch.sh` on every node of a Slurm job (see slurm.sbatch), or
# `bash launch.sh --local` for one process on this machine. `--dry-run` prints the command instead.
# It writes run/events.jsonl, run/trainer.log and run/output/; bring the folder back and run
#   ftapp runs import-bundle <this folder>
set -euo pipefail
BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$BUNDLE"
# The bundle's own trainer package comes first: it is the code this run was planned with.
export PYTHONPATH="$BUNDLE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
VERB="@VERB@"
GPUS_PER_NODE="${GPUS_PER_NODE:-@GPUS_PER_NODE@}"
MODE=""
RUN=()
for arg in "$@"; do
  case "$arg" in
    --local) MODE=local ;;
    --dry-run) RUN=(echo) ;;
    *) echo "launch.sh: unknown argument $arg (use --local or --dry-run)" >&2; exit 2 ;;
  esac
done
if [ -z "$MODE" ]; then
  if [ -n "${SLURM_JOB_ID:-}" ]; then MODE=slurm; else MODE=local; fi
fi
mkdir -p run
if [ "$MODE" = local ]; then
  ${RUN[@]+"${RUN[@]}"} "$PYTHON" -m trainer "$VERB" spec.json 2>&1 | tee -a run/trainer.log
  exit "${PIPESTATUS[0]}"
fi
NNODES="${SLURM_NNODES:-1}"
NODE_RANK="${SLURM_NODEID:-0}"
# The first node of the job hosts the rendezvous (MAIN_PROCESS_IP overrides it).
HEAD="${MAIN_PROCESS_IP:-$(scontrol show hostnames "${SLURM_JOB_NODELIST:-$(hostname)}" | head -n 1)}"
PORT="${MAIN_PROCESS_PORT:-@PORT@}"
${RUN[@]+"${RUN[@]}"} "$PYTHON" -m accelerate.commands.launch --config_file accelerate_config.yaml \
  --num_machines "$NNODES" --machine_rank "$NODE_RANK" --num_processes "$((NNODES * GPUS_PER_NODE))" \
  --main_process_ip "$HEAD" --main_process_port "$PORT" \
  -m trainer "$VERB" spec.json 2>&1 | tee -a "run/trainer.node$NODE_RANK.log"
exit "${PIPESTATUS[0]}"
"""

SLURM_SBATCH = """#!/usr/bin/env bash
# Submit from this folder: `sbatch slurm.sbatch`. One task per node; each starts accelerate, which
# starts one process per GPU. Edit the partition, account and time limit for your cluster.
#SBATCH --job-name=ftapp-@NAME@
#SBATCH --nodes=@NODES@
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=@GPUS_PER_NODE@
#SBATCH --output=run/slurm-%j-%N.out
set -euo pipefail
export GPUS_PER_NODE=@GPUS_PER_NODE@
srun bash "${SLURM_SUBMIT_DIR:-.}/launch.sh"
"""

ACCELERATE_CONFIG = """# accelerate's multi-node config; launch.sh passes the per-node values (machine_rank from
# SLURM_NODEID, the head node and port, the process count) on the command line, which override these.
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: @NODES@
num_processes: @PROCESSES@
machine_rank: 0
main_process_port: @PORT@
rdzv_backend: static
same_network: true
gpu_ids: all
mixed_precision: 'no'
dynamo_config: {}
use_cpu: false
"""


def _fill(template: str, **values: object) -> str:
    return re.sub(r"@([A-Z_]+)@", lambda m: str(values[m.group(1).lower()]), template)


def launch_script(verb: str, gpus_per_node: int) -> str:
    return _fill(LAUNCH_SH, verb=verb, gpus_per_node=gpus_per_node, port=MAIN_PROCESS_PORT)


def slurm_job(name: str, nodes: int, gpus_per_node: int) -> str:
    return _fill(SLURM_SBATCH, name=name, nodes=nodes, gpus_per_node=gpus_per_node)


def accelerate_config(nodes: int, gpus_per_node: int) -> str:
    return _fill(ACCELERATE_CONFIG, nodes=nodes, processes=nodes * gpus_per_node, port=MAIN_PROCESS_PORT)


def _imported_roots(package: Path) -> set[str]:
    roots: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
    return {r for r in roots if r not in sys.stdlib_module_names and r != package.name}


def _distribution(root: str, candidates: list[str]) -> str:
    normal = root.replace("_", "-").lower()
    return next((c for c in candidates if c.replace("_", "-").lower() == normal), candidates[0])


def pinned_requirements(package: Path) -> str:
    """What ``package`` (the trainer) imports, pinned to the versions installed here; torch first."""
    owners = metadata.packages_distributions()
    names = {_distribution(root, owners[root]) for root in _imported_roots(package) if root in owners}
    lines = []
    for name in sorted(names | set(EXTRA_DISTRIBUTIONS), key=lambda n: (n != "torch", n.lower())):
        try:
            # Without the local label (+cpu, +cu128): the cluster picks its build by the index it installs from.
            lines.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            continue  # an optional extra this machine does not have
    header = (
        "# The versions this bundle was exported with. Install torch first, from the index that matches the\n"
        "# cluster's CUDA (https://download.pytorch.org/whl/...), then the rest: pip install -r requirements.txt\n"
    )
    return header + "\n".join(lines) + "\n"
