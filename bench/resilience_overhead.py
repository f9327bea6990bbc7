"""Overhead of the retry and logging layer on a successful call, against the emulator.

Each call is timed in several set-ups, interleaved in rounds so that drift in the machine affects
them alike:

- ``bare``: the same facade method (validation, phone and text preparation, result model) whose
  call path is only the protocol's call and the decode: the layer taken out, nothing else;
- ``retry=None``: the client's call path with retries off, logs off;
- ``retry``: the default RetryPolicy (retries, fallback, deadline), logs off;
- ``retry+logs``: the same with structlog configured at INFO to a null sink (no processors, a
  logger that drops what it gets): the library building and emitting its events, the call event
  kept and the per-attempt event filtered out by level;
- ``retry+1 event``: ``retry+logs`` whose successful call emits one structlog event with no field
  instead of the library's: the least any event per call costs through structlog, the floor
  under ``retry+logs``;
- ``retry+debug``: the same at DEBUG (both events kept);
- ``retry+json``: for information, an application's pipeline, ``fibo_soap.logs.configure(json=
  True)`` (context variables, level, ISO timestamp, JSON) writing to a null stream: what that
  pipeline costs is the application's choice of renderer, not the layer's.

Reported per set-up: the median wall time of a call, and the client's CPU time per call
(``time.process_time``; the emulator runs in its own process, pinned to another core, unless
``--in-process``). Overheads are paired: in each round every set-up runs once (in shuffled
order, garbage collector paused), its median is divided by the bare median of the same round, and
the median of those ratios over the rounds is reported. The target, under 5 % of the call's time,
is checked on the wall time of ``retry`` and ``retry+logs``; the CPU figures are printed beside
it (the client's CPU per call is the smaller number, so the same microseconds weigh more).

    python -m bench.resilience_overhead [--calls 100] [--rounds 25] [--in-process]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from fibo_soap import codec, logs
from fibo_soap.client import FiboClient
from fibo_soap.operations import CLIENT_NO as NO_FIELD
from fibo_soap.operations import CLIENT_PASS as PASS_FIELD
from fibo_soap.operations import Operation
from fibo_soap.protocols.base import Protocol
from fibo_soap.resilience import Attempt, Caller, Plan

PASSWORD = "bench-secret"
CLIENT_NO = "CL0001"
PHONE = "0909128628"
TARGET = 0.05


class _Null:
    """A file that drops what is written (the sink of the logging set-ups)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(core: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(0, {core})


@contextlib.contextmanager
def _emulator(in_process: bool) -> Iterator[str]:
    """The endpoint of a running emulator whose account has a balance to spare."""
    if in_process:
        from fibo_soap.emulator import run_emulator

        with run_emulator(client_pass=PASSWORD, delivery_delay=0, record=0) as emu:
            emu.set_balance(1_000_000_000)
            yield emu.endpoint
        return
    port = _free_port()
    code = (
        "from fibo_soap.emulator import serve;"
        f"serve(port={port}, client_pass={PASSWORD!r}, delivery_delay=0, announce=lambda *a: None)"
    )
    command = [sys.executable, "-c", code]
    if shutil.which("taskset") and len(os.sched_getaffinity(0)) > 1:
        command = ["taskset", "-c", "0", *command]
    server = subprocess.Popen(command)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/_emulator/hello", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the emulator did not come up") from None
                time.sleep(0.1)
        request = urllib.request.Request(
            f"{base}/_emulator/balance",
            data=json.dumps(
                {"client_no": CLIENT_NO, "service_type": 1, "balance": 1_000_000_000}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).close()
        yield f"{base}/Service.asmx"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _logging(level: str | None) -> None:
    if level is None:
        structlog.reset_defaults()
    elif level == "JSON":
        logs.configure(json=True, level="INFO", stream=_Null())  # type: ignore[arg-type]
    else:
        structlog.configure(
            processors=[],
            wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
            logger_factory=structlog.ReturnLoggerFactory(),
            cache_logger_on_first_use=False,
        )


class _BareCaller(Caller):
    """The call path with the layer taken out: credentials, the protocol's call, the decode."""

    def __init__(self, proto: Protocol, max_bytes: int) -> None:
        super().__init__(
            [proto], client_no=CLIENT_NO, client_pass=PASSWORD, policy=None, max_bytes=max_bytes
        )
        self._proto = proto
        self._wire_account = {NO_FIELD: CLIENT_NO, PASS_FIELD: PASSWORD}

    def flow(self, op: Operation, params: Any, **_: Any) -> Plan[codec.Decoded]:
        wire = {**params, **self._wire_account} if op.authenticated else params
        text = yield Attempt(self._proto, op, wire, None)
        return codec.decode_result(op, text, max_bytes=self._max_bytes)


class _OneEventCaller(Caller):
    """The default call path, whose successful call emits one bare structlog event."""

    def _log_success(self, *_: Any) -> None:
        self._events.get().info("fibo.call")


def _facade(client: FiboClient, name: str) -> Callable[[], object]:
    if name == "About":
        return client.about
    return lambda: client.send_sms(PHONE, "Ma OTP 123456")


def _measure(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """The median wall time and the mean CPU time of ``calls`` calls."""
    wall: list[float] = []
    gc.collect()
    gc.disable()
    try:
        cpu_start = time.process_time()
        for _ in range(calls):
            started = time.perf_counter()
            call()
            wall.append(time.perf_counter() - started)
        cpu = (time.process_time() - cpu_start) / calls
    finally:
        gc.enable()
    return statistics.median(wall), cpu


SETUPS: tuple[tuple[str, str, str | None], ...] = (
    # name, client, log level
    ("bare", "bare", None),
    ("retry=None", "none", None),
    ("retry", "retry", None),
    ("retry+logs", "retry", "INFO"),
    ("retry+1 event", "one_event", "INFO"),
    ("retry+debug", "retry", "DEBUG"),
    ("retry+json", "retry", "JSON"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="calls per set-up per round")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--in-process", action="store_true", help="emulator in this process")
    parser.add_argument("--json", type=Path, default=Path("bench/results-resilience.json"))
    args = parser.parse_args(argv)

    report: dict[str, Any] = {"calls": args.calls, "rounds": args.rounds, "results": {}}
    shuffle = random.Random(args.seed).shuffle
    with _emulator(args.in_process) as endpoint:
        if not args.in_process:
            _pin(1)
        for protocol in ("get", "soap11"):
            options: dict[str, Any] = {
                "endpoint": endpoint,
                "protocols": (protocol,),
                "service_type": 1,
            }
            clients = {
                "bare": FiboClient(CLIENT_NO, PASSWORD, retry=None, **options),
                "none": FiboClient(CLIENT_NO, PASSWORD, retry=None, **options),
                "retry": FiboClient(CLIENT_NO, PASSWORD, **options),
                "one_event": FiboClient(CLIENT_NO, PASSWORD, **options),
            }
            # The same caller, its success event swapped for the bare one (no state added).
            clients["one_event"]._caller.__class__ = _OneEventCaller
            bare = clients["bare"]
            bare._caller = _BareCaller(bare._protocols[0], bare.max_response_bytes)
            for name in ("About", "SendSMS"):
                calls = {setup: _facade(clients[which], name) for setup, which, _ in SETUPS}
                for setup, _, level in SETUPS:  # warm up: WSDL, pools, caches
                    _logging(level)
                    _measure(calls[setup], 50)
                wall: dict[str, list[float]] = {setup: [] for setup, _, _ in SETUPS}
                cpu: dict[str, list[float]] = {setup: [] for setup, _, _ in SETUPS}
                order = list(SETUPS)
                for _ in range(args.rounds):
                    shuffle(order)
                    for setup, _, level in order:
                        _logging(level)
                        median_wall, per_call = _measure(calls[setup], args.calls)
                        wall[setup].append(median_wall)
                        cpu[setup].append(per_call)
                _logging(None)
                rows = {}
                for setup, _, _ in SETUPS:
                    wall_ratio = [w / b for w, b in zip(wall[setup], wall["bare"], strict=True)]
                    cpu_ratio = [c / b for c, b in zip(cpu[setup], cpu["bare"], strict=True)]
                    rows[setup] = {
                        "wall_us": round(statistics.median(wall[setup]) * 1e6, 1),
                        "wall_overhead": round(statistics.median(wall_ratio) - 1, 4),
                        "cpu_us": round(statistics.median(cpu[setup]) * 1e6, 1),
                        "cpu_overhead": round(statistics.median(cpu_ratio) - 1, 4),
                    }
                report["results"][f"{name} over {protocol}"] = rows
            for client in clients.values():
                client.close()

    worst = 0.0
    worst_cpu = 0.0
    print(f"{'call':<22}{'set-up':<14}{'wall µs':>9}{'Δ wall':>9}{'CPU µs':>9}{'Δ CPU':>9}")
    for label, rows in report["results"].items():
        for setup, row in rows.items():
            print(
                f"{label:<22}{setup:<14}{row['wall_us']:>9.1f}{row['wall_overhead']:>+9.1%}"
                f"{row['cpu_us']:>9.1f}{row['cpu_overhead']:>+9.1%}"
            )
            if setup in ("retry", "retry+logs"):
                worst = max(worst, row["wall_overhead"])
                worst_cpu = max(worst_cpu, row["cpu_overhead"])
        print()
    report["worst_wall_overhead"] = worst
    report["worst_cpu_overhead"] = worst_cpu
    report["target"] = TARGET
    verdict = "within" if worst < TARGET else "OVER"
    print(
        f"worst overhead of the layer (retry, and retry + logs at INFO) over bare: "
        f"{worst:.1%} of the call's time ({verdict} the 5 % target); CPU {worst_cpu:.1%}"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    return 0 if worst < TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
