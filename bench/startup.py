"""Target 4: what a fresh process costs, up to an import, a first SOAP call, ``fibo-sms --help``.

Each command runs as a new process on the client's core, the commands interleaved in shuffled
rounds after one untimed warm-up round (so that .pyc files and the page cache are warm for all).
The children write and read their .pyc files under a private PYTHONPYCACHEPREFIX, even where the
environment says PYTHONDONTWRITEBYTECODE: without a cache every fibo_soap command would compile
the package from source in every round (20 ms for cli.py alone), while requests and lxml load
their installed .pyc files, as an installed fibo-soap would load its own.
Reported: the median wall time of each, and the median over rounds of its ratio to the baseline
``python -c "import requests, lxml"`` of the same round; the children's CPU time beside it.
"""

from __future__ import annotations

import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import CLIENT_NO, MESSAGE, PASSWORD, PHONE, ROOT, median_ratio, table, verdict
from bench.wire import PATH

#: Target 4, in multiples of the baseline.
LIMITS = {"import": 0.6, "first_soap": 1.4, "help": 1.0}


def commands(base: str) -> dict[str, tuple[str, list[str], str]]:
    """key: (label, argv, target)."""
    py = sys.executable
    first_call = (
        "from fibo_soap import FiboClient\n"
        f"c = FiboClient({CLIENT_NO!r}, {PASSWORD!r}, endpoint={base + PATH!r}, "
        "protocols=('soap11',), service_type=1)\n"
        f"r = c.send_sms({PHONE!r}, {MESSAGE!r})\n"
        "assert r.code == 200, r\n"
    )
    script = Path(py).parent / "fibo-sms"
    return {
        "baseline": (
            'python -c "import requests, lxml" (baseline)',
            [py, "-c", "import requests, lxml"],
            "",
        ),
        "baseline_etree": (
            'python -c "import requests, lxml.etree"',
            [py, "-c", "import requests, lxml.etree"],
            "(info)",
        ),
        "python": ('python -c "pass"', [py, "-c", "pass"], "(info)"),
        "import": (
            'python -c "import fibo_soap"',
            [py, "-c", "import fibo_soap"],
            f"≤ {LIMITS['import']}×",
        ),
        "first_soap": (
            "fresh process → FiboClient → first send_sms over SOAP 1.1",
            [py, "-c", first_call],
            f"≤ {LIMITS['first_soap']}×",
        ),
        "help": ("fibo-sms --help", [str(script), "--help"], f"≤ {LIMITS['help']}×"),
        "zeep": ('python -c "import zeep"', [py, "-c", "import zeep"], "(info)"),
    }


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float, str | None]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return float("nan"), float("nan"), "timed out"
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    error = None
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"]
        error = f"exit {done.returncode}: {lines[-1][:160]}"
    return wall, cpu, error


def run(base: str, *, rounds: int, budget: float, seed: int) -> dict[str, Any]:
    """Target 4, measured."""
    with tempfile.TemporaryDirectory(prefix="fibo-bench-pyc-") as pycache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"COLUMNS": "100", "PYTHONPYCACHEPREFIX": pycache}
        return _measure(base, rounds=rounds, budget=budget, seed=seed, env=env)


def _measure(
    base: str, *, rounds: int, budget: float, seed: int, env: dict[str, str]
) -> dict[str, Any]:
    cmds = commands(base)
    walls: dict[str, list[float]] = {k: [] for k in cmds}
    cpus: dict[str, list[float]] = {k: [] for k in cmds}
    errors: dict[str, str] = {}
    for key, (_, argv, _) in cmds.items():  # warm-up round, untimed
        _, _, error = _run(argv, env)
        if error:
            errors[key] = error
    order = [k for k in cmds if k not in errors]
    shuffle = random.Random(seed).shuffle
    started = time.perf_counter()
    done = 0
    while done < rounds and (done < 3 or time.perf_counter() - started < budget):
        shuffle(order)
        for key in order:
            wall, cpu, error = _run(cmds[key][1], env)
            if error:
                errors[key] = error
                continue
            walls[key].append(wall)
            cpus[key].append(cpu)
        done += 1
    rows: list[dict[str, Any]] = []
    base_walls, base_cpus = walls["baseline"], cpus["baseline"]
    targets: dict[str, bool | None] = {}
    for key, (label, _, target) in cmds.items():
        if key in errors or not walls[key] or len(walls[key]) != len(base_walls):
            rows.append(
                {
                    "key": key,
                    "label": label,
                    "target": target,
                    "error": errors.get(key, "incomplete"),
                }
            )
            if key in LIMITS:
                targets[key] = False
            continue
        wall_x = median_ratio(walls[key], base_walls)
        cpu_x = median_ratio(cpus[key], base_cpus)
        ok = wall_x <= LIMITS[key] if key in LIMITS else None
        if key in LIMITS:
            targets[key] = ok
        rows.append(
            {
                "key": key,
                "label": label,
                "wall_ms": statistics.median(walls[key]) * 1e3,
                "wall_x_baseline": wall_x,
                "cpu_ms": statistics.median(cpus[key]) * 1e3,
                "cpu_x_baseline": cpu_x,
                "target": target,
                "ok": ok,
                "wall_rounds_ms": [w * 1e3 for w in walls[key]],
            }
        )
    return {"rounds": done, "rows": rows, "targets": targets}


def render(result: dict[str, Any]) -> str:
    """The start-up table."""
    rows = []
    for r in result["rows"]:
        if "error" in r:
            rows.append((r["label"], "—", "—", "—", "—", r["target"], "ERROR: " + r["error"]))
            continue
        rows.append(
            (
                r["label"],
                r["wall_ms"],
                r["wall_x_baseline"],
                r["cpu_ms"],
                r["cpu_x_baseline"],
                r["target"],
                verdict(r["ok"]) if r["ok"] is not None else "",
            )
        )
    return "\n".join(
        [
            f"Target 4 — process start-up, medians of {result['rounds']} interleaved rounds "
            "(ratios per round against the baseline)",
            table(
                ("command", "wall ms", "× base", "CPU ms", "× base", "target", "verdict"),
                rows,
                "lrrrrll",
            ),
        ]
    )
