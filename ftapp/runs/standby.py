"""One warm trainer process kept ready for the next run (``python -m trainer standby``).

A training process spends 13-16 s importing torch, transformers, TRL and PEFT before it reads its
first row: more than half of the time from "Start training" to the first loss point of an 8B model
on an H200. While the app is open and idle, the supervisor keeps one process that has done those
imports, started with the ``CUDA_VISIBLE_DEVICES`` the next run will most likely get (CUDA reads
it once), and hands it the next single-process run on exactly those devices. Anything else starts
the usual way. It costs host memory (~1.5 GB) and no GPU memory; ``FTAPP_WARM_TRAINER=0`` turns it
off, ``=1`` on; by default it is on when the machine has a GPU.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from ftapp.runs.process_identity import signal_group

log = logging.getLogger("ftapp.standby")


def standby_wanted(has_gpu: bool) -> bool:
    setting = os.environ.get("FTAPP_WARM_TRAINER", "").strip().lower()
    if setting in {"0", "false", "no", "off"}:
        return False
    return has_gpu or setting in {"1", "true", "yes", "on"}


class TrainerStandby:
    def __init__(self, home: Path):
        self.log_path = home / "standby.log"
        self._process: subprocess.Popen | None = None
        self._devices: str | None = None  # its CUDA_VISIBLE_DEVICES; "" for the CPU
        self.starts = 0  # processes started so far (each logs one "standby: ready" line when warm)

    @property
    def devices(self) -> str | None:
        return self._devices if self._alive() else None

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def keep_ready(self, devices: str) -> None:
        """A standby for ``devices`` from now on (the one there is, when it was started for them)."""
        if self._alive() and self._devices == devices:
            return
        self.stop()
        env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES=devices)
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "trainer", "standby"],
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=self.log_path.parent,
            )
        self._devices = devices
        self.starts += 1

    def take(self, verb: str, spec_path: Path, env: dict[str, str], log_path: Path, cwd: Path) -> subprocess.Popen | None:
        """The standby, now running this run, when it was started for ``env``'s devices; else None."""
        process = self._process
        if process is None or process.poll() is not None or env.get("CUDA_VISIBLE_DEVICES", "") != self._devices:
            return None
        self._process, self._devices = None, None
        assert process.stdin is not None  # keep_ready started it with stdin=PIPE
        handover = {"verb": verb, "spec": str(spec_path), "env": env, "log": str(log_path), "cwd": str(cwd)}
        try:
            # The pipe carries the run's environment, secrets included: nothing of it lands on disk.
            process.stdin.write(json.dumps(handover).encode() + b"\n")
            process.stdin.close()
        except OSError:
            log.warning("the warm trainer process did not take the run; starting it the usual way")
            signal_group(process.pid, signal.SIGKILL)
            return None
        return process

    def stop(self) -> None:
        process, self._process, self._devices = self._process, None, None
        if process is None or process.poll() is not None:
            return
        try:
            process.stdin.close()  # type: ignore[union-attr]  # EOF: it exits by itself
            process.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
