"""Load on a serving endpoint: a burst of concurrent chat requests, a share of them malformed, on loopback.

Reports the status counts, p50/p99 latency of the valid requests, the slowest /health answer during the
burst, and how long a normal request takes right after it. Prints one JSON summary line.

    # against a running endpoint
    python bench/serve_load.py --url http://127.0.0.1:8000 --model tiny
    # start the endpoint itself on the demo model (built into --work when absent), guarded or not
    python bench/serve_load.py --start guarded --work /tmp/serve-load
    python bench/serve_load.py --start unguarded --work /tmp/serve-load

``guarded`` runs ``python -m trainer serve`` (transformers serve behind ftapp's request guard), as the
supervisor would; ``unguarded`` runs bare ``transformers serve``, as ftapp did before the guard. Every
third request is malformed, in turn: a body that is not JSON, a body of the wrong shape, and a prompt
far past the model's context (``--oversize-chars``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def post(url: str, body: bytes, timeout_s: float) -> tuple[int | str, float]:
    started = time.monotonic()
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            status: int | str = response.status
    except urllib.error.HTTPError as error:
        error.read()
        status = error.code
    except (OSError, TimeoutError) as error:  # URLError and socket timeouts: no answer within timeout_s
        status = type(error).__name__
    return status, time.monotonic() - started


def bodies(model: str, count: int, malformed_every: int, oversize_chars: int, max_tokens: int | None) -> list[tuple[str, bytes]]:
    out = []
    for index in range(count):
        if malformed_every and index % malformed_every == malformed_every - 1:
            kind = ("not-json", "wrong-shape", "oversized")[(index // malformed_every) % 3]
            body = {
                "not-json": b'{"model": "' + model.encode() + b'", "messages": [',
                "wrong-shape": json.dumps({"model": model, "messages": "hello"}).encode(),
                "oversized": json.dumps({"model": model, "messages": [{"role": "user", "content": "x" * oversize_chars}]}).encode(),
            }[kind]
        else:
            kind = "valid"
            request = {"model": model, "messages": [{"role": "user", "content": f"Where is my order number {index}?"}]}
            if max_tokens:
                request["max_tokens"] = max_tokens
            body = json.dumps(request).encode()
        out.append((kind, body))
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 3)


def burst(url: str, model: str, args: argparse.Namespace) -> dict:
    work = bodies(model, args.requests, args.malformed_every, args.oversize_chars, args.max_tokens)
    health: list[float] = []
    stop = threading.Event()

    def watch_health() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=args.client_timeout) as response:
                    response.read()
            except OSError:
                pass
            health.append(time.monotonic() - started)
            stop.wait(0.25)

    watcher = threading.Thread(target=watch_health, daemon=True)
    watcher.start()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(lambda item: (item[0], *post(url, item[1], args.client_timeout)), work))
    wall = time.monotonic() - started
    stop.set()
    watcher.join()
    after_status, after_s = post(
        url,
        json.dumps({"model": model, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8}).encode(),
        args.client_timeout,
    )
    valid_ok = [seconds for kind, status, seconds in results if kind == "valid" and status == 200]
    statuses: dict[str, dict[str, int]] = {}
    for kind, status, _ in results:
        statuses.setdefault(kind, {}).setdefault(str(status), 0)
        statuses[kind][str(status)] += 1
    return {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "malformed_every": args.malformed_every,
        "oversize_chars": args.oversize_chars,
        "max_tokens": args.max_tokens,
        "statuses": statuses,
        "valid_answered": len(valid_ok),
        "valid_p50_s": percentile(valid_ok, 0.50),
        "valid_p99_s": percentile(valid_ok, 0.99),
        "valid_mean_s": round(statistics.fmean(valid_ok), 3) if valid_ok else None,
        "all_p99_s": percentile([seconds for _, _, seconds in results], 0.99),
        "burst_wall_s": round(wall, 2),
        "health_max_s": round(max(health), 3) if health else None,
        "after_burst": {"status": after_status, "seconds": round(after_s, 3)},
    }


def wait_for(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer /health within {timeout_s:.0f} s")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(kind: str, work: Path, threads: int) -> tuple[subprocess.Popen, str, str]:
    from trainer.demo.model import build_demo_kit

    kit = work / "kit"
    if not (kit / "demo_kit.json").is_file():
        build_demo_kit(kit)
    model_dir = kit / "model"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    port = free_port()
    log = open(work / f"{kind}.log", "w")  # noqa: SIM115 - the server's log, open while it runs
    if kind == "unguarded":
        serve_dir = work / "serve"
        serve_dir.mkdir(parents=True, exist_ok=True)
        link = serve_dir / "tiny"
        if not link.exists():
            link.symlink_to(model_dir.resolve(), target_is_directory=True)
        command = [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            "tiny",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
            "--dtype",
            "auto",
        ]
        process = subprocess.Popen(command, cwd=serve_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    else:
        from trainer.protocol import ModelSource, ServeSpec, write_spec

        run_dir = work / f"run-{int(time.time())}"
        run_dir.mkdir(parents=True)
        spec = ServeSpec(
            run_id=run_dir.name, run_dir=str(run_dir), model=ModelSource(str(model_dir)), served_name="tiny", port=port, cpu_threads=threads
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "trainer", "serve", str(write_spec(spec))],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, f"http://127.0.0.1:{port}", "tiny"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an endpoint that is running (without --start)")
    parser.add_argument("--model", default="tiny", help="the model name clients send")
    parser.add_argument("--start", choices=("guarded", "unguarded"), help="start the demo model's endpoint first, stop it after")
    parser.add_argument("--work", type=Path, default=Path("/tmp/serve-load"), help="with --start: demo kit, logs, run folder")
    parser.add_argument("--threads", type=int, default=1, help="with --start: the server's CPU threads")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=60)
    parser.add_argument("--malformed-every", type=int, default=3, help="every Nth request is malformed (0: none)")
    parser.add_argument("--oversize-chars", type=int, default=200_000, help="characters of the oversized prompts")
    parser.add_argument("--max-tokens", type=int, default=None, help="max_tokens of the valid requests (default: not sent)")
    parser.add_argument("--client-timeout", type=float, default=120.0, help="seconds a client waits for one answer")
    args = parser.parse_args()
    if args.requests < 1 or args.requests > 2000 or args.concurrency < 1 or args.concurrency > 500:
        parser.error("--requests must be 1..2000 and --concurrency 1..500")
    process = None
    url, model = args.url, args.model
    if args.start:
        args.work.mkdir(parents=True, exist_ok=True)
        process, url, model = start(args.start, args.work, args.threads)
    elif not url:
        parser.error("give --url or --start")
    try:
        if process is not None:
            wait_for(url, 300)
        summary = {"target": args.start or url, **burst(url, model, args)}
    finally:
        if process is not None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
