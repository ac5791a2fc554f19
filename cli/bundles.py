"""``ftapp runs bundle`` and ``ftapp runs import-bundle``: a training run on a cluster and back."""

from __future__ import annotations

import argparse

from cli.output import to_json
from ftapp.run_vocabulary import RunStatus
from ftapp.services import Services
from ftapp.shipping import BundleRequest, BundleService

BUNDLE_ACTIONS = ("bundle", "import-bundle")


def run_bundle_action(services: Services, args: argparse.Namespace) -> int:
    bundles = BundleService(services.settings, services.db, services.adapters)
    if args.action == "bundle":
        bundle = bundles.export(
            BundleRequest(run_id=args.id, out_dir=args.out, nodes=args.nodes, gpus_per_node=args.gpus_per_node, device=args.device)
        )
        if args.json:
            print(to_json({"path": str(bundle.path), "copied": bundle.copied, "referenced": bundle.referenced}))
            return 0
        print(f"bundle written to {bundle.path}")
        print(f"copied in: {', '.join(bundle.copied) or 'nothing'}")
        if bundle.referenced:
            print(f"referenced (the cluster must reach these itself): {', '.join(bundle.referenced)}")
        print(
            f"on the cluster: cd {bundle.path} && pip install -r requirements.txt && sbatch slurm.sbatch "
            f"(or: bash launch.sh --local); then: ftapp runs import-bundle {bundle.path}"
        )
        return 0
    imported = bundles.import_run(args.directory, adapter_name=args.name)
    if args.json:
        print(to_json({"run": imported.run, "adapter": imported.adapter}))
    else:
        adapter = f"; adapter {imported.adapter.name} ({imported.adapter.id})" if imported.adapter else ""
        print(f"run {imported.run.id}: {imported.run.status}{adapter}")
    return 0 if imported.run.status == RunStatus.SUCCEEDED else 1


def add_bundle_parsers(runs, common: argparse.ArgumentParser) -> None:
    bundle = runs.add_parser(
        "bundle", parents=[common], help="export a training run as a self-contained folder for a cluster (Slurm + accelerate)"
    )
    bundle.add_argument("id", help="training run id")
    bundle.add_argument("--out", required=True, help="the bundle folder to write (absent or empty)")
    bundle.add_argument("--nodes", type=int, default=1, help="machines of the Slurm job")
    bundle.add_argument("--gpus-per-node", type=int, default=1, help="processes (GPUs) per machine")
    bundle.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: one CPU process (to try the bundle on any machine)")
    imported = runs.add_parser("import-bundle", parents=[common], help="register a bundle's finished run: its events, metrics and adapter")
    imported.add_argument("directory")
    imported.add_argument("--name", help="adapter name (default: the one the run was planned with)")
