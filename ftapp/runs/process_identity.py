"""Is the process with this pid still the one we started? (pids are reused after a process exits.)"""

from __future__ import annotations

import os
from pathlib import Path


def process_start_time(pid: int) -> float | None:
    """When the process started, in clock ticks since boot (Linux /proc), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its exit status is left to collect
        return None
    return float(fields[19])


def is_alive(pid: int | None, start_time: float | None) -> bool:
    if not pid:
        return False
    current = process_start_time(pid)
    if current is None:
        return False
    return start_time is None or abs(current - start_time) < 1e-6


def signal_group(pid: int, signum: int) -> bool:
    """Signal the process group a run leads (it was started in a new session); False if gone."""
    try:
        os.killpg(pid, signum)
        return True
    except (ProcessLookupError, PermissionError):
        return False
