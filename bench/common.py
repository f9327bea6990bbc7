"""What the sections of ``python -m bench`` share: account, timing, ratios, tables, machine."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLIENT_NO = "CL0001"
PASSWORD = "bench-secret"
PHONE = "0909128628"
MESSAGE = "Ma OTP cua ban la 123456"
SERVICE_TYPE = 1
CLIENT_CORE = 1


def pin_client() -> bool:
    """Pin this process (and the children it starts) to the client's core; False if it cannot."""
    try:
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(0, {CLIENT_CORE})
            return True
    except (AttributeError, OSError):
        pass
    return False


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """The garbage collector collected, then paused for the block."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def waiting_ns() -> int | None:
    """Nanoseconds this thread has spent runnable but not running (Linux schedstat): time that
    other work on the machine took from it. None where the kernel does not say."""
    try:
        with open("/proc/thread-self/schedstat") as handle:
            return int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class Block:
    """One timed block of calls: the median wall time of a call and the CPU time per call;
    ``waited``: the share of the block spent waiting for the core (None: not known)."""

    wall: float
    cpu: float
    calls: int
    waited: float | None = None


def time_block(call: Callable[[], object], calls: int, budget: float) -> Block:
    """``calls`` calls of ``call`` (fewer if ``budget`` seconds pass first), GC paused.

    Wall: the median of the calls' own times (perf_counter). CPU: the process's CPU time over the
    block divided by the calls (time.process_time; the server is another process).
    """
    walls: list[float] = []
    counter = time.perf_counter
    with quiet_gc():
        stop = counter() + budget
        waited = waiting_ns()
        began = counter()
        cpu_start = time.process_time()
        for _ in range(calls):
            started = counter()
            call()
            ended = counter()
            walls.append(ended - started)
            if ended > stop:
                break
        cpu = (time.process_time() - cpu_start) / len(walls)
        after = waiting_ns()
        share = None
        if waited is not None and after is not None:
            share = (after - waited) / 1e9 / (counter() - began)
    return Block(statistics.median(walls), cpu, len(walls), share)


def median_ratio(values: Sequence[float], bases: Sequence[float]) -> float:
    """The median over rounds of value / base, each pair from the same round."""
    ratios = [v / b for v, b in zip(values, bases, strict=True) if b > 0]
    return statistics.median(ratios) if ratios else float("nan")


def spread(values: Sequence[float]) -> float:
    """The interquartile range over the median (0 for fewer than 4 values): how noisy a cell is."""
    if len(values) < 4:
        return 0.0
    q = statistics.quantiles(values, n=4)
    mid = statistics.median(values)
    return (q[2] - q[0]) / mid if mid else 0.0


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], aligns: str = "") -> str:
    """A Markdown table (pipes), columns padded so it reads in a terminal too."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    aligns = aligns or "l" + "r" * (len(headers) - 1)

    def line(row: Sequence[str]) -> str:
        padded = [
            (c.ljust(w) if a == "l" else c.rjust(w))
            for c, w, a in zip(row, widths, aligns, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if a == "r" else "-" * (w + 2)
            for w, a in zip(widths, aligns, strict=True)
        )
        + "|"
    )
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != value:  # NaN
            return "—"
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def verdict(ok: bool | None) -> str:
    """The word a table shows for a target met, missed, or not measurable."""
    if ok is None:
        return "n/a"
    return "met" if ok else "MISSED"


def load() -> tuple[float, float, float]:
    """The load averages (1, 5, 15 minutes), to say how busy the machine was."""
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, memory, Python, the packages, the commit."""
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        memory = int(first.split()[1]) * 1024
    versions = {}
    for name in ("fibo-soap", "zeep", "requests", "urllib3", "lxml", "structlog", "tenacity"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    commit = dirty = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "fibo_soap"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        )
    try:
        cores = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = list(range(os.cpu_count() or 1))
    return {
        "cpu": model,
        "cores": len(cores),
        "memory_bytes": memory,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "packages": versions,
        "commit": commit,
        "fibo_soap_modified": dirty,
    }
