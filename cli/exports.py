"""``ftapp export merge|archive|register|push|gguf|show`` and ``ftapp serve``: ship adapters and models, run endpoints."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli.output import table, to_json
from ftapp.run_vocabulary import RunStatus
from ftapp.runs import RunRecord
from ftapp.services import Services
from ftapp.shipping import ENGINE_CHOICES, GGUF_TYPES, Endpoint, EndpointState, ExportRequest, ExportResult, ServeRequest


def _what(parser: argparse.ArgumentParser, model_only: bool) -> None:
    parser.add_argument("--adapter", help="adapter id")
    parser.add_argument("--run", help="a succeeded training run: export the adapter it produced")
    parser.add_argument(
        "--model",
        help="the adapter's base model id (default: the adapter's)"
        + ("; alone: export this model (a merged or fully fine-tuned one)" if model_only else ""),
    )
    parser.add_argument("--wait", action="store_true", help="follow the run and print what it produced")


def add_export_parsers(groups, common: argparse.ArgumentParser) -> None:
    export = groups.add_parser("export", help="merge, archive, register (MLflow) or push (Hub) an adapter or model").add_subparsers(
        dest="action"
    )
    merge = export.add_parser("merge", parents=[common], help="merge a LoRA adapter into its base, save and verify it")
    _what(merge, model_only=False)
    merge.add_argument("--name", default="", help="name of the merged model (default: ADAPTER-merged)")
    merge.add_argument("--gpus", default="auto", help="'auto', 'cpu' or a GPU id")
    archive = export.add_parser("archive", parents=[common], help="a .tar.gz of the adapter or model with its model card")
    _what(archive, model_only=True)
    archive.add_argument("--name", default="", help="archive name (default: the adapter's or model's name)")
    register = export.add_parser("register", parents=[common], help="register a version in the local MLflow model registry")
    _what(register, model_only=True)
    register.add_argument("--name", required=True, help="registered model name")
    push = export.add_parser("push", parents=[common], help="create a Hub repo (private) and upload with the model card")
    _what(push, model_only=True)
    push.add_argument("--repo", required=True, help="Hub repo id: NAME or OWNER/NAME")
    push.add_argument("--public", action="store_true", help="create the repo public (default: private)")
    push.add_argument("--name", default="", help="name used in the model card (default: the adapter's or model's)")
    gguf = export.add_parser("gguf", parents=[common], help="GGUF files for llama.cpp / Ollama (merged, verified) with a Modelfile")
    _what(gguf, model_only=True)
    # Checked by the service, so an unknown type or a missing llama-quantize exits with EX-012/EX-013, not argparse's usage.
    gguf.add_argument(
        "--type",
        dest="gguf_types",
        nargs="+",
        action="extend",
        metavar="TYPE",
        help=f"one or more of {', '.join(GGUF_TYPES)} (k-quants need llama.cpp's llama-quantize on PATH; default f16)",
    )
    gguf.add_argument("--name", default="", help="file and Ollama model name (default: the adapter's or model's name)")
    gguf.add_argument("--gpus", default="auto", help="'auto', 'cpu' or a GPU id")
    export.add_parser("show", parents=[common], help="what an export run produced").add_argument("id")

    serve = groups.add_parser(
        "serve", parents=[common], help="start an OpenAI-compatible endpoint on 127.0.0.1 (stop: ftapp runs cancel ID)"
    )
    serve.add_argument("--model", required=True, help="model id (a base, merged or fine-tuned model)")
    serve.add_argument("--adapter", default="", help="adapter id to serve on top of the model")
    serve.add_argument("--gpus", default="auto", help="'auto', 'cpu' or a GPU id")
    serve.add_argument("--engine", default="auto", choices=ENGINE_CHOICES, help="auto: vllm when installed, else transformers serve")
    serve.add_argument("--timeout", type=float, default=900, help="seconds to wait for the endpoint to answer")
    serve.add_argument(
        "--max-tokens", type=int, default=ServeRequest.max_tokens, help="the most completion tokens one request gets (EX-011)"
    )
    serve.add_argument(
        "--request-timeout", type=float, default=ServeRequest.request_timeout_s, help="seconds of generation per request (EX-011)"
    )
    serve.add_argument(
        "--max-queue", type=int, default=ServeRequest.max_queue, help="requests waiting for their turn; more get 429 (EX-011)"
    )


def run_export(services: Services, args: argparse.Namespace) -> int:
    if args.action == "show":
        _print_result(args, services.exports.result(args.id))
        return 0
    request = ExportRequest(
        base_model_id=args.model or "",
        adapter_id=args.adapter or "",
        model_name=args.name or "",
        action=args.action,
        run_id=args.run or "",
        repo_id=getattr(args, "repo", "") or "",
        private=not getattr(args, "public", False),
        gpus=getattr(args, "gpus", "auto"),
        gguf_types=tuple(getattr(args, "gguf_types", None) or ("f16",)),
    )
    run = services.exports.submit(request)
    services.supervisor.tick()
    if not args.wait:
        print(
            to_json(services.runs.get(run.id))
            if args.json
            else f"export {run.id} ({run.name}) started; follow it with `ftapp runs watch {run.id}`"
        )
        return 0
    final = services.runs.wait(run.id, on_tick=_status_printer(args))
    _print_result(args, services.exports.result(run.id))
    if final.error_text:
        print(final.error_text, file=sys.stderr)
    return 0 if final.status == RunStatus.SUCCEEDED else 1


def _status_printer(args: argparse.Namespace):
    last = {"line": ""}

    def show(run: RunRecord) -> None:
        line = f"[{run.status}] {run.name}"
        if not args.json and line != last["line"]:
            print(line, flush=True)
            last["line"] = line

    return show


def result_lines(result: ExportResult) -> list[str]:
    lines = [f"export {result.run.id}: {result.action} {result.name} [{result.run.status}]"]
    if result.gguf:
        lines += gguf_lines(result)
    elif result.verified is not None:
        verdict = "VERIFIED" if result.verified else "NOT VERIFIED"
        lines.append(
            f"{verdict}: {result.prompts_matched}/{result.prompts} fixed prompts answered identically by the "
            f"reloaded export and base + adapter; max logit difference {result.max_logit_diff:.3g} ({result.dtype})"
        )
        if result.qlora:
            lines.append("QLoRA adapter: merged into the de-quantised base (see the model card)")
        lines.append(table(result.checks, ["prompt", "tokens_match", "reference", "exported"]))
        lines += [f"  {c['prompt']}: {c['diagnosis']}" for c in result.checks if c.get("diagnosis")]
    if result.merged_dir:
        lines.append(f"merged model: {result.merged_dir} (registered as model '{result.name}')")
    if result.archive:
        lines.append(f"archive: {result.archive}")
    if result.registered:
        r = result.registered
        lines += [f"registered: {r.model_uri} ({r.kind})", f"registry link: {r.link}", f"  (start the MLflow UI: {r.ui_command})"]
    if result.pushed:
        p = result.pushed
        lines.append(f"pushed to {p.repo_url} ({'private' if p.private else 'public'}), commit {p.commit_url}")
    return lines


def gguf_lines(result: ExportResult) -> list[str]:
    rows = [
        {
            "type": f.type,
            "verified": f.verified,
            "size_mb": round(f.size_bytes / 1e6, 1),
            "tokens_agree": f"{f.tokens_agreed}/{f.tokens}",
            "answers_identical": f"{f.prompts_matched}/{f.prompts}",
            "max_logit_diff": f"{f.max_logit_diff:.3g}",
            "convert_s": f.convert_seconds,
            "verify_s": f.verify_seconds,
        }
        for f in result.gguf
    ]
    lines = [
        f"GGUF files reloaded with transformers ({result.dtype}) and compared with base + adapter on the fixed prompts: "
        "tokens_agree is teacher-forced (same context on both sides), answers_identical free-running greedy",
        table(rows, list(rows[0])),
    ]
    lines += [f"  {c['prompt']}: {c['diagnosis']}" for c in result.checks if c.get("diagnosis")]
    for f in result.gguf:
        lines += [f"{f.type}: {f.path}", f"  Modelfile: {f.modelfile}", f"  Ollama: {f.ollama_command} ({f.ollama_note})"]
    return lines


def _print_result(args: argparse.Namespace, result: ExportResult) -> None:
    print(to_json(result) if args.json else "\n".join(result_lines(result)))


def endpoint_view(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "run_id": endpoint.run.id,
        "state": endpoint.state,
        "engine": endpoint.engine,
        "url": endpoint.url,
        "base_url": endpoint.base_url,
        "model": endpoint.served_model,
        "api_key_file": endpoint.api_key_file,
        "route": endpoint.route,
        "prompt_format": endpoint.prompt_format,
        "input_template": endpoint.input_template,
        "format_note": endpoint.format_note,
        "auth": endpoint.auth_note,
        "merge": endpoint.merge_note,
        "curl": endpoint.curl,
        "limits": endpoint.limits,
        "limits_note": endpoint.limits_note,
    }


def run_serve(services: Services, args: argparse.Namespace) -> int:
    run = services.serving.submit(
        ServeRequest(
            model_id=args.model,
            adapter_id=args.adapter,
            gpus=args.gpus,
            engine=args.engine,
            max_tokens=args.max_tokens,
            request_timeout_s=args.request_timeout,
            max_queue=args.max_queue,
        )
    )
    if not args.json:
        print(f"serve run {run.id} queued; waiting for the endpoint (stop it with `ftapp runs cancel {run.id}`)", flush=True)
    endpoint = services.serving.wait_ready(run.id, timeout_s=args.timeout)
    if args.json:
        print(to_json(endpoint_view(endpoint)))
    elif endpoint.state == EndpointState.SERVING:
        print(f"serving {endpoint.served_model} at {endpoint.base_url} ({endpoint.engine})\n{endpoint.format_note}\n{endpoint.auth_note}")
        if endpoint.limits_note:
            print(endpoint.limits_note)
        if endpoint.merge_note:
            print(endpoint.merge_note)
        print(f"try it:\n{endpoint.curl}\nstop it: ftapp runs cancel {run.id}")
    else:
        print(f"the endpoint did not start ({endpoint.run.status}):\n{endpoint.run.error_text or ''}", file=sys.stderr)
    return 0 if endpoint.state == EndpointState.SERVING else 1
