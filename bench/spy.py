"""Where the time goes in the targets still missed: py-spy samples, sorted into layers.

py-spy samples a process from outside, so unlike cProfile (``python -m bench``'s profile
section) it charges no cost per Python call, and code made of many small calls does not look
heavier than it is. Each case runs twice, each time in a process of its own: once plain, for
the CPU time per call or request, and once under ``py-spy record --nonblocking`` for the samples.
A sample goes to the layer of its innermost frame that some rule matches. A layer's share is its
part of the samples, and its µs are that share of the plain run's CPU time per call.

Cases, each busy on its core the whole time:

- ``rows``: FiboClient.get_sent_list of 1,000 rows over GET against the bench server (target 3
  at 1k rows);
- ``hello`` and ``soap``: the emulator under wrk (16 keep-alive connections), the hello route and
  SendSMS over SOAP 1.1 with random GUIDs, as ``bench.emulator_throughput`` sends them (the
  emulator's target of 0.5× hello).

What one send_sms spends on logs and validation (target 2) is not here. A call lasts about 100 µs
and waits on its socket for half of it, and py-spy could not split that: blocking sampling put
the samples where the process was in a system call, and non-blocking sampling counted the waits
in recv as work. ``python -m bench`` measures those layers directly instead: the same call with
each layer on and off, interleaved.

    python -m bench.spy [--cases rows,hello,soap] [--seconds 8] [--rate 997] [--raw DIR]

Needs py-spy (``pip install py-spy``) and, for the emulator cases, wrk. Prints one table per case
and writes bench/results-spy.json; ``--raw`` keeps py-spy's raw files (for flame graphs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import CLIENT_CORE, ROOT, table

#: The rows of the ``rows`` case (where target 3 is missed).
ROWS = 1_000
#: Frames of a process's start-up (imports, the client made, the server seeded): samples with one
#: of these in their stack are left out. (Not "only samples under the measured loop": a stack
#: read while the process runs can come without its outer frames.)
_START_UP = (
    "_find_and_load (",
    "fibo_client (bench/percall.py",
    "prepare (bench/wire.py",
    "seed_account (",
    "build (fibo_soap/emulator/server.py",
)

#: Each case's layers: (label, substrings of a frame "function (path:line)"). A sample goes to
#: the layer of its innermost frame that matches a rule (rules in order where one frame matches
#: several), so that a caller's layer does not take what its callees' layers name.
Rules = Sequence[tuple[str, Sequence[str]]]
ROWS_RULES: Rules = (
    ("typed rows: walk, conversions, dataclass __init__", ("_typed_rows (",)),
    ("first parse: the <string> body, its text made", ("http_body_result (",)),
    ("second parse: the result document (libxml2)", ("decode_result (",)),
    ("HTTP exchange: request bytes, socket, llhttp", ("fibo_soap/protocols/transport.py",)),
    ("request written, answer read (protocol)", ("fibo_soap/protocols/",)),
    ("retries and flow (resilience, tenacity)", ("fibo_soap/resilience.py", "tenacity/")),
    ("facade, models (client)", ("fibo_soap/client.py", "fibo_soap/models.py")),
)
EMULATOR_RULES: Rules = (
    ("SOAP envelope: hardened parse and walk (codec)", ("fibo_soap/codec.py",)),
    (
        "the send: service and SQLite store, group commit",
        (
            "fibo_soap/emulator/service.py",
            "fibo_soap/emulator/store.py",
            "fibo_soap/phone.py",
            "_run_group (",
        ),
    ),
    ("answer written (uvicorn, socket send)", ("RequestResponseCycle.send (",)),
    ("HTTP protocol (uvicorn, httptools): request read, keep-alive", ("HttpTools",)),
    ("Starlette: router, middleware, Request, Response", ("starlette/",)),
    ("ASMX checks and dispatch (app)", ("fibo_soap/emulator/",)),
    ("uvicorn: the ASGI cycle", ("uvicorn/",)),
)
#: Where a sample matches no rule.
REST = "event loop, asyncio, interpreter"

CASES: dict[str, tuple[str, Rules]] = {
    "rows": (f"get_sent_list of {ROWS:,} rows over GET (per call)", ROWS_RULES),
    "hello": ("emulator: the hello route under wrk (per request)", EMULATOR_RULES),
    "soap": ("emulator: SendSMS over SOAP 1.1 under wrk (per request)", EMULATOR_RULES),
}


def layers(raw: Path, rules: Rules, keep: Callable[[str], bool]) -> tuple[Counter[str], int]:
    """Samples per layer from a py-spy raw file (``stack count`` lines), the kept ones only."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit() or not keep(stack):
            continue
        samples = int(number)
        total += samples
        counts[_layer(stack.split(";"), rules)] += samples
    return counts, total


def _running(stack: str) -> bool:
    return not any(mark in stack for mark in _START_UP)


def _layer(frames: Sequence[str], rules: Rules) -> str:
    for frame in reversed(frames):
        for name, marks in rules:
            if any(mark in frame for mark in marks):
                return name
    return REST


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _record(spy: str, raw: Path, rate: int, native: bool, command: list[str]) -> list[str]:
    options = ["--native"] if native else []
    # --nonblocking: py-spy reads the stacks while the process runs (a stack may then come
    # without its outer frames). Stopping the process for each sample, py-spy's default, put the
    # samples only where it was in a system call: a loop of os.urandom(16) and some arithmetic,
    # 72 % os.urandom by timeit, gave os.urandom every sample.
    return [
        spy,
        "record",
        "--nonblocking",
        "-r",
        str(rate),
        "-f",
        "raw",
        "-o",
        str(raw),
        *options,
        "--",
        *command,
    ]


# --- the client cases: a worker process under py-spy, against the bench server --------------


def _measured(call: Callable[[], object], seconds: float) -> tuple[int, float, float]:
    """Calls of ``call`` for ``seconds``: how many, and the wall and CPU seconds they took."""
    calls = 0
    wall = time.perf_counter()
    cpu = time.process_time()
    stop = wall + seconds
    while time.perf_counter() < stop:
        call()
        calls += 1
    return calls, time.perf_counter() - wall, time.process_time() - cpu


def client_worker(case: str, base: str, seconds: float, out: Path) -> None:
    """The loop py-spy watches for a client case; what it measured goes to ``out`` (JSON)."""
    from bench.common import pin_client
    from bench.percall import fibo_client
    from bench.wire import prepare

    pin_client()
    prepare(base, ROWS)
    client = fibo_client(base, "get", max_response_bytes=1 << 30)
    try:

        def call() -> object:
            return client.get_sent_list(ROWS)

        for _ in range(20):
            call()
        calls, wall, cpu = _measured(call, seconds)
    finally:
        client.close()
    out.write_text(json.dumps({"calls": calls, "wall_s": wall, "cpu_s": cpu}))


def _client_case(
    case: str, spy: str, base: str, seconds: float, rate: int, native: bool, tmp: Path, keep: Path
) -> dict[str, Any]:
    raw = keep / f"{case}.raw"

    def worker(out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.spy",
            "--worker",
            case,
            "--base",
            base,
            "--seconds",
            str(seconds),
            "--out",
            str(out),
        ]

    # The time per call comes from a run that py-spy does not watch, the shares from one it does.
    for command in (
        worker(tmp / f"{case}-plain.json"),
        _record(spy, raw, rate, native, worker(tmp / f"{case}.json")),
    ):
        subprocess.run(
            command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    plain = json.loads((tmp / f"{case}-plain.json").read_text())
    counts, total = layers(raw, CASES[case][1], _running)
    return _case(case, counts, total, plain["cpu_s"] / plain["calls"] * 1e6, plain["calls"])


# --- the emulator cases: the server under py-spy, driven by wrk -----------------------------


def server_worker(port: int, db: str, pidfile: Path) -> None:
    """The emulator as bench.emulator_throughput runs it, pinned to the other core."""
    from bench.emulator_throughput import serve_for_bench

    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1 - CLIENT_CORE})
    pidfile.write_text(str(os.getpid()))
    serve_for_bench(port, db)


def _emulator_case(
    case: str, spy: str, seconds: float, rate: int, native: bool, tmp: Path, keep: Path
) -> dict[str, Any]:
    from bench import emulator_throughput as et
    from fibo_soap.wsdl import wsdl_namespace

    script = None
    if case == "soap":
        script = tmp / "soap.lua"
        script.write_text(et.lua_script(et.SOAP_LUA, wsdl_namespace(), "spy"))

    def run(label: str, recorded: Path | None) -> tuple[float, int]:
        """A fresh server (under py-spy when ``recorded``) under wrk: CPU µs per request."""
        port, pidfile = et.free_port(), tmp / f"{label}.pid"
        base = f"http://127.0.0.1:{port}"
        command = [
            sys.executable,
            "-m",
            "bench.spy",
            "--serve",
            str(port),
            "--db",
            str(tmp / f"{label}.sqlite"),
            "--pidfile",
            str(pidfile),
        ]
        if recorded is not None:
            command = _record(spy, recorded, rate, native, command)
        launched = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            et.wait_up(f"{base}/_emulator/hello")
            pid = int(pidfile.read_text())
            et.set_balance(base, et.BALANCE)
            url = base if script is not None else f"{base}/_emulator/hello"
            et.wrk(url, script, 1, 16)  # warm-up
            before = et.cpu_seconds(pid)
            _, done, failed = et.wrk(url, script, max(1, round(seconds)), 16)
            after = et.cpu_seconds(pid)
            if failed:
                raise RuntimeError(f"{failed} requests failed under wrk")
            os.kill(pid, signal.SIGTERM)
            launched.wait(timeout=60)
        finally:
            if launched.poll() is None:
                launched.kill()
                launched.wait()
        if before is None or after is None or not done:
            return 0.0, done
        return (after - before) / done * 1e6, done

    # As for the client cases: the CPU per request without py-spy, the shares under it.
    per_request, done = run(f"{case}-plain", None)
    raw = keep / f"{case}.raw"
    run(case, raw)
    counts, total = layers(raw, EMULATOR_RULES, _running)
    return _case(case, counts, total, per_request, done)


def _case(
    case: str, counts: Counter[str], total: int, per_call_us: float, calls: int
) -> dict[str, Any]:
    labels = [name for name, _ in CASES[case][1]] + [REST]
    return {
        "case": case,
        "label": CASES[case][0],
        "cpu_us_per_call": per_call_us,
        "calls": calls,
        "samples": total,
        "layers": [
            {
                "layer": name,
                "share": counts[name] / total if total else 0.0,
                "cpu_us": counts[name] / total * per_call_us if total else 0.0,
            }
            for name in labels
            if counts[name]
        ],
    }


def render(result: dict[str, Any]) -> str:
    """One table per case: each layer's share of the samples and its µs of CPU."""
    parts = []
    for case in result["cases"]:
        rows = [
            [layer["layer"], f"{layer['share']:.1%}", f"{layer['cpu_us']:.1f}"]
            for layer in case["layers"]
        ]
        rows.append(["all of it", "100%", f"{case['cpu_us_per_call']:.1f}"])
        parts.append(
            f"{case['label']}: {case['samples']:,} samples, {case['calls']:,} calls\n"
            + table(["layer", "share", "CPU µs"], rows)
        )
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=997, help="samples per second")
    parser.add_argument("--native", action="store_true", help="py-spy --native")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw files here (for flame graphs)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results-spy.json")
    # What the processes under py-spy run.
    parser.add_argument("--worker", choices=("rows",), help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--pidfile", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        client_worker(args.worker, args.base, args.seconds, args.out)
        return 0
    if args.serve:
        server_worker(args.serve, args.db, args.pidfile)
        return 0

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    spy = _py_spy()
    if spy is None:
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    if {"hello", "soap"} & set(cases) and not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    from bench.wire import serve
    from fibo_soap.wsdl import wsdl_namespace

    results = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        keep = tmp if args.raw is None else args.raw
        keep.mkdir(parents=True, exist_ok=True)
        client_cases = [c for c in cases if c == "rows"]
        if client_cases:
            with serve(wsdl_namespace()) as base:
                for case in client_cases:
                    results.append(
                        _client_case(
                            case, spy, base, args.seconds, args.rate, args.native, tmp, keep
                        )
                    )
        for case in (c for c in cases if c in ("hello", "soap")):
            results.append(
                _emulator_case(case, spy, args.seconds, args.rate, args.native, tmp, keep)
            )
    result = {"seconds": args.seconds, "rate": args.rate, "native": args.native, "cases": results}
    print(render(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
