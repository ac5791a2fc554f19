"""``python -m trainer serve SPEC_JSON``: an OpenAI-compatible endpoint on 127.0.0.1, run by an existing server.

This process prepares the model, starts ``transformers serve`` (or ``vllm serve``) as a child in the
run's process group on an internal port, waits until it answers ``/health``, then opens the request
guard (``trainer.inference.serve_guard``: size, token, time and concurrency limits the servers lack) on the port
clients use, reports that URL in ``started`` and then only watches. A stop (the supervisor's SIGTERM to
the group) reaches the server directly; this process closes the guard and waits for the server to
exit, so the GPU is free when the run ends with ``done``.

``transformers serve`` loads neither a PEFT adapter (it reads the directory's config.json) nor an
API key (it has no authentication at all): an adapter is merged into ``<run_dir>/merged`` first
(removed when the server stops), and the endpoint is reported with ``auth: "none"`` (it listens on
127.0.0.1 only). ``vllm serve`` loads the adapter itself (``--lora-modules``) and requires the bearer
token from ``api_key_file``, handed over in ``VLLM_API_KEY`` so that it appears on no command line;
the guard checks the same token before it reads a body.
Clients name the model ``served_name``: transformers serve pins the model it was started with, so it
runs in ``<run_dir>/serve`` where ``served_name`` is a link to the model directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from trainer import run_process
from trainer.cancellation import Cancellation
from trainer.protocol import DONE, PROMPT_FORMATS, SERVE_ENGINES, STARTED, ServeSpec, check_device

if TYPE_CHECKING:
    from trainer.inference.serve_requests import Limits  # fastapi's stack: imported when a server starts, not to check a spec

LOOPBACK = ("127.0.0.1", "localhost", "::1")
SERVED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # a bare file name: no '/', no '@revision'
POLL_S = 0.5
STOP_GRACE_S = 10.0
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
DEFAULT_CONCURRENCY = {"transformers": 1, "vllm": 16}  # transformers serve generates one request at a time


def main(spec_path: str) -> NoReturn:
    run_process.main("serve", spec_path, run_process.spec_reader(ServeSpec), check_spec, _serve)


def check_spec(spec: ServeSpec) -> None:
    if spec.engine not in SERVE_ENGINES:
        raise ValueError(f"spec.engine must be one of {', '.join(SERVE_ENGINES)}, got {spec.engine!r}")
    if spec.engine == "vllm" and find_spec("vllm") is None:
        raise ModuleNotFoundError("spec.engine is vllm but vllm is not installed in this environment")
    if spec.engine == "vllm" and not (spec.api_key_file and Path(spec.api_key_file).is_file()):
        raise FileNotFoundError(f"vllm needs its API key file, not found: {spec.api_key_file}")
    check_device(spec.device)
    if spec.prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"spec.prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {spec.prompt_format!r}")
    if spec.host not in LOOPBACK:
        raise ValueError(f"spec.host must be a loopback address ({', '.join(LOOPBACK)}), got {spec.host!r}")
    if not SERVED_NAME.match(spec.served_name):
        raise ValueError(f"spec.served_name must be 1-63 letters, digits, '.', '_' or '-', got {spec.served_name!r}")
    source = spec.model.source
    if source.startswith(("/", ".", "~")) and not Path(source).expanduser().is_dir():
        raise FileNotFoundError(f"model not found: {source}")
    if spec.adapter_path and not (Path(spec.adapter_path) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"adapter not found (no adapter_config.json): {spec.adapter_path}")
    for name, low, high in (
        ("max_request_bytes", 1024, 64 << 20),
        ("max_tokens", 1, 1 << 20),
        ("request_timeout_s", 1, 86_400),
        ("max_concurrent", 0, 1024),
        ("max_queue", 0, 100_000),
    ):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"spec.{name} must be a number from {low} to {high}, got {value!r}")


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def transformers_command(spec: ServeSpec, port: int) -> list[str]:
    # The model is the relative path ``served_name`` inside the server's working directory.
    return [
        sys.executable,
        "-m",
        "transformers.cli.transformers",
        "serve",
        spec.served_name,
        "--host",
        spec.host,
        "--port",
        str(port),
        "--device",
        "cuda" if spec.device == "cuda" else "cpu",
        "--dtype",
        "auto",
        "--log-level",
        "info",
    ]


def vllm_command(spec: ServeSpec, port: int) -> list[str]:
    command = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", spec.model.source, "--host", spec.host, "--port", str(port)]
    if spec.model.revision:
        command += ["--revision", spec.model.revision]
    if not spec.adapter_path:
        return command + ["--served-model-name", spec.served_name]
    rank = int(json.loads((Path(spec.adapter_path) / "adapter_config.json").read_text(encoding="utf-8")).get("r") or 8)
    max_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), rank)
    # The base answers as "<name>-base"; the adapter under the name clients are told to use.
    return command + [
        "--served-model-name",
        f"{spec.served_name}-base",
        "--enable-lora",
        "--max-loras",
        "1",
        "--max-lora-rank",
        str(max_rank),
        "--lora-modules",
        f"{spec.served_name}={spec.adapter_path}",
    ]


def server_environment(spec: ServeSpec) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_DISABLE_TELEMETRY="1")
    if spec.cpu_threads:
        env["OMP_NUM_THREADS"] = str(spec.cpu_threads)
    if spec.engine == "vllm" and spec.api_key_file:
        env["VLLM_API_KEY"] = Path(spec.api_key_file).read_text(encoding="utf-8").strip()
    return env


def local_model_dir(spec: ServeSpec) -> Path:
    """A directory to serve: the model's own, or its snapshot in the Hub cache (downloaded unless offline)."""
    source = Path(spec.model.source).expanduser()
    if source.is_dir():
        return source
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(spec.model.source, revision=spec.model.revision))


def prepare_transformers_model(spec: ServeSpec) -> tuple[Path, bool]:
    """(the server's working directory holding the ``served_name`` link, whether an adapter was merged)."""
    model_dir, merged = local_model_dir(spec), False
    if spec.adapter_path:
        from trainer.export.merge import merge_only  # torch and PEFT: only when there is an adapter

        target = Path(spec.run_dir) / "merged"
        print(f"transformers serve cannot load a PEFT adapter: merging {spec.adapter_path} into {target}", flush=True)
        merge_only(spec.model, Path(spec.adapter_path), target, spec.device)
        model_dir, merged = target, True
    serve_dir = Path(spec.run_dir) / "serve"
    serve_dir.mkdir(parents=True, exist_ok=True)
    link = serve_dir / spec.served_name
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(model_dir.resolve(), target_is_directory=True)
    return serve_dir, merged


def _url(host: str, port: int) -> str:
    return f"http://{'[::1]' if host == '::1' else host}:{port}"


def guard_limits(spec: ServeSpec, context_tokens: int) -> Limits:
    from trainer.inference.serve_requests import Limits

    return Limits(
        context_tokens=context_tokens,
        max_tokens=spec.max_tokens,
        max_request_bytes=spec.max_request_bytes,
        request_timeout_s=float(spec.request_timeout_s),
        max_concurrent=spec.max_concurrent or DEFAULT_CONCURRENCY[spec.engine],
        max_queue=spec.max_queue,
    )


def tokenizer_dir(spec: ServeSpec, served_dir: Path | None) -> Path:
    """Where the served model's tokenizer is: the served directory, or (vLLM) the adapter's own or its base's."""
    if served_dir is not None:
        return served_dir
    if spec.adapter_path and (Path(spec.adapter_path) / "tokenizer_config.json").is_file():
        return Path(spec.adapter_path)
    return local_model_dir(spec)


def _serve(spec: ServeSpec, events: Any, cancellation: Cancellation) -> bool:
    from trainer.inference.guard_server import GuardServer
    from trainer.inference.serve_guard import Guard
    from trainer.inference.serve_requests import context_tokens, load_counter

    port = spec.port or free_port(spec.host)
    upstream_port = free_port(spec.host)
    while upstream_port == port:
        upstream_port = free_port(spec.host)
    if spec.engine == "vllm":
        command, cwd, merged, served_dir = vllm_command(spec, upstream_port), Path(spec.run_dir), False, None
    else:
        cwd, merged = prepare_transformers_model(spec)
        command, served_dir = transformers_command(spec, upstream_port), cwd / spec.served_name
    url, upstream_url = _url(spec.host, port), _url(spec.host, upstream_port)
    cancellation.training_started()  # from now on SIGTERM asks for a clean stop instead of exiting at once
    print(f"starting: {' '.join(command[1:])}", flush=True)
    server = subprocess.Popen(command, cwd=cwd, env=server_environment(spec), stdin=subprocess.DEVNULL)
    guard_server: GuardServer | None = None
    try:
        # Read while the server loads the model.
        limits = guard_limits(spec, context_tokens(str(served_dir or local_model_dir(spec))))
        counter = load_counter(str(tokenizer_dir(spec, served_dir)))
        api_key = Path(spec.api_key_file).read_text(encoding="utf-8").strip() if spec.engine == "vllm" and spec.api_key_file else None
        guard = Guard(upstream_url, limits, counter, max_time=spec.engine == "transformers", api_key=api_key)
        if not wait_until_ready(upstream_url, server, cancellation, spec.startup_timeout_s):
            return False
        guard_server = GuardServer(guard.app(), spec.host, port, limits)
        guard_server.start()
        print(f"request guard on {url} in front of {upstream_url}: {json.dumps(limits.to_dict())}", flush=True)
        events.emit(
            STARTED,
            run_id=spec.run_id,
            url=url,
            base_url=f"{url}/v1",
            served_model=spec.served_name,
            engine=spec.engine,
            auth="bearer" if spec.engine == "vllm" else "none",
            server_pid=server.pid,
            merged_adapter=merged,
            device=spec.device,
            port=port,
            upstream_port=upstream_port,
            limits=limits.to_dict(),
        )
        while not cancellation.requested and server.poll() is None and guard_server.alive:
            time.sleep(POLL_S)
        if not cancellation.requested:
            what = "the server" if server.poll() is not None else "the request guard"
            raise RuntimeError(f"{what} exited by itself (server status {server.returncode}); see the log above")
    finally:
        if guard_server is not None:
            guard_server.stop()
        stop(server)
        if merged:  # a serving copy of base + adapter: gigabytes that the next serve run would merge afresh
            shutil.rmtree(Path(spec.run_dir) / "merged", ignore_errors=True)
    events.emit(DONE, stopped=True, server_exit_status=server.returncode)
    return True


def wait_until_ready(url: str, server: subprocess.Popen, cancellation: Cancellation, timeout_s: float) -> bool:
    """True once ``/health`` answers 200; False when a stop came first; raises when the server cannot start."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cancellation.requested:
            return False
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode} before answering; see the log above")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(POLL_S)
    raise TimeoutError(f"the server did not answer {url}/health within {timeout_s:.0f} s")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
    try:
        server.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
