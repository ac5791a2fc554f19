"""``python -m trainer serve SPEC_JSON``: an OpenAI-compatible endpoint on 127.0.0.1, run by an existing server.

No HTTP server of our own: this process prepares the model, starts ``transformers serve`` (or ``vllm
serve``) as a child in the run's process group, waits until it answers ``/health``, reports the URL in
``started`` and then only watches. A stop (the supervisor's SIGTERM to the group) reaches the server
directly; this process waits for it to exit, so the GPU is free when the run ends with ``done``.

``transformers serve`` loads neither a PEFT adapter (it reads the directory's config.json) nor an
API key (it has no authentication at all): an adapter is merged into ``<run_dir>/merged`` first
(removed when the server stops), and the endpoint is reported with ``auth: "none"`` (it listens on
127.0.0.1 only). ``vllm serve`` loads the adapter itself (``--lora-modules``) and requires the bearer
token from ``api_key_file``, handed over in ``VLLM_API_KEY`` so that it appears on no command line.
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
from typing import Any, NoReturn

from trainer import run_process
from trainer.cancellation import Cancellation
from trainer.protocol import DONE, SERVE_ENGINES, STARTED, ServeSpec

LOOPBACK = ("127.0.0.1", "localhost", "::1")
SERVED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # a bare file name: no '/', no '@revision'
POLL_S = 0.5
STOP_GRACE_S = 10.0
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def main(spec_path: str) -> NoReturn:
    run_process.main("serve", spec_path, run_process.spec_reader(ServeSpec), check_spec, _serve)



def check_spec(spec: ServeSpec) -> None:
    if spec.engine not in SERVE_ENGINES:
        raise ValueError(f"spec.engine must be one of {', '.join(SERVE_ENGINES)}, got {spec.engine!r}")
    if spec.engine == "vllm" and find_spec("vllm") is None:
        raise ModuleNotFoundError("spec.engine is vllm but vllm is not installed in this environment")
    if spec.engine == "vllm" and not (spec.api_key_file and Path(spec.api_key_file).is_file()):
        raise FileNotFoundError(f"vllm needs its API key file, not found: {spec.api_key_file}")
    if spec.device not in ("cpu", "cuda"):
        raise ValueError(f"spec.device must be 'cpu' or 'cuda', got {spec.device!r}")
    if spec.host not in LOOPBACK:
        raise ValueError(f"spec.host must be a loopback address ({', '.join(LOOPBACK)}), got {spec.host!r}")
    if not SERVED_NAME.match(spec.served_name):
        raise ValueError(f"spec.served_name must be 1-63 letters, digits, '.', '_' or '-', got {spec.served_name!r}")
    source = spec.model.source
    if source.startswith(("/", ".", "~")) and not Path(source).expanduser().is_dir():
        raise FileNotFoundError(f"model not found: {source}")
    if spec.adapter_path and not (Path(spec.adapter_path) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"adapter not found (no adapter_config.json): {spec.adapter_path}")


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def transformers_command(spec: ServeSpec, port: int) -> list[str]:
    # The model is the relative path ``served_name`` inside the server's working directory.
    return [sys.executable, "-m", "transformers.cli.transformers", "serve", spec.served_name, "--host", spec.host,
            "--port", str(port), "--device", "cuda" if spec.device == "cuda" else "cpu", "--dtype", "auto",
            "--log-level", "info"]


def vllm_command(spec: ServeSpec, port: int) -> list[str]:
    command = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", spec.model.source, "--host", spec.host,
               "--port", str(port)]
    if spec.model.revision:
        command += ["--revision", spec.model.revision]
    if not spec.adapter_path:
        return command + ["--served-model-name", spec.served_name]
    rank = int(json.loads((Path(spec.adapter_path) / "adapter_config.json").read_text(encoding="utf-8")).get("r") or 8)
    max_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), rank)
    # The base answers as "<name>-base"; the adapter under the name clients are told to use.
    return command + ["--served-model-name", f"{spec.served_name}-base", "--enable-lora", "--max-loras", "1",
                      "--max-lora-rank", str(max_rank), "--lora-modules", f"{spec.served_name}={spec.adapter_path}"]


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
        from trainer.export_merge import merge_only  # torch and PEFT: only when there is an adapter

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


def _serve(spec: ServeSpec, events: Any, cancellation: Cancellation) -> bool:
    port = spec.port or free_port(spec.host)
    if spec.engine == "vllm":
        command, cwd, merged = vllm_command(spec, port), Path(spec.run_dir), False
    else:
        cwd, merged = prepare_transformers_model(spec)
        command = transformers_command(spec, port)
    url = f"http://{'[::1]' if spec.host == '::1' else spec.host}:{port}"
    cancellation.training_started()  # from now on SIGTERM asks for a clean stop instead of exiting at once
    print(f"starting: {' '.join(command[1:])}", flush=True)
    server = subprocess.Popen(command, cwd=cwd, env=server_environment(spec), stdin=subprocess.DEVNULL)
    try:
        if not wait_until_ready(url, server, cancellation, spec.startup_timeout_s):
            return False
        events.emit(STARTED, run_id=spec.run_id, url=url, base_url=f"{url}/v1", served_model=spec.served_name,
                    engine=spec.engine, auth="bearer" if spec.engine == "vllm" else "none", server_pid=server.pid,
                    merged_adapter=merged, device=spec.device, port=port)
        while not cancellation.requested and server.poll() is None:
            time.sleep(POLL_S)
        if not cancellation.requested:
            raise RuntimeError(f"the server exited by itself with status {server.returncode}; see the log above")
    finally:
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
