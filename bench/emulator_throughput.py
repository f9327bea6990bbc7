"""Emulator throughput: SendSMS over HTTP GET and SOAP 1.1 against a "hello" baseline.

Every request goes to a different phone number (so no cache flatters the figure) with a random
GUID, as FiboClient makes one (uuid4): each send then adds its GUID to the store's index at a
random place, which costs more than GUIDs that count up (``--guids counter``, the figures this
benchmark gave before). Starts the emulator in its own process pinned to one core, drives it
with wrk (keep-alive) pinned to the other, 127.0.0.1 only, each run bounded in time. Reports
requests/s (median of several runs) and the ratio to the baseline, then checks that no request
was lost: every completed SendSMS is stored exactly once and the balance went down by exactly
that many.

Next to requests/s it reports the server's CPU time per request (from /proc, user + system): on a
machine shared with other work the rate moves with the neighbours, the CPU cost much less.

    python -m bench.emulator_throughput [--runs 5] [--seconds 5] [--connections 16]
                                        [--guids random|counter]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import CLIENT_NO, PASSWORD, ROOT

BALANCE = 1_000_000_000

SOAP_LUA = """
local kind = "soap"
local counter = 0
local thread_id = 0
function setup(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end
GUID_FUNCTION
request = function()
  counter = counter + 1
  local guid = NEW_GUID
  local body = '<?xml version="1.0" encoding="utf-8"?>'
    .. '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
    .. '<soap:Body><SendSMS xmlns="NAMESPACE">'
    .. '<clientNo>CL0001</clientNo><clientPass>PASSWORD</clientPass>'
    .. '<phoneNumber>' .. string.format("090%06d9", counter % 1000000) .. '</phoneNumber>'
    .. '<smsMessage>Ma OTP 123456</smsMessage>'
    .. '<smsGUID>' .. guid .. '</smsGUID><serviceType>1</serviceType>'
    .. '</SendSMS></soap:Body></soap:Envelope>'
  return wrk.format("POST", "/Service.asmx", {
    ["Content-Type"] = "text/xml; charset=utf-8",
    ["SOAPAction"] = '"NAMESPACESendSMS"'}, body)
end
"""

GET_LUA = """
local kind = "get"
local counter = 0
local thread_id = 0
function setup(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end
GUID_FUNCTION
request = function()
  counter = counter + 1
  return wrk.format("GET", "/Service.asmx/SendSMS?clientNo=CL0001&clientPass=PASSWORD"
    .. "&phoneNumber=" .. string.format("090%06d9", counter % 1000000)
    .. "&smsMessage=Ma+OTP+123456&smsGUID=" .. NEW_GUID .. "&serviceType=1")
end
"""


# A version 4 UUID's shape from LuaJIT's generator (100 random bits), seeded from the script
# and its run: each wrk process starts the generator afresh.
RANDOM_GUID_LUA = """
math.randomseed(SEED)
local function random_guid()
  return string.format("%08x-%04x-4%03x-%04x-%06x%06x", math.random(0, 4294967295),
    math.random(0, 65535), math.random(0, 4095), math.random(32768, 49151),
    math.random(0, 16777215), math.random(0, 16777215))
end
"""
GUIDS = ("random", "counter")


def lua_script(lua: str, namespace: str, run: str, guids: str = "random") -> str:
    """One of the wrk scripts above for the service's namespace; ``run`` keeps its GUIDs apart
    from other runs'. ``guids``: random (as FiboClient makes them), or counting up."""
    if guids == "random":
        seed = zlib.crc32(f"{run}\n{lua}".encode())
        lua = lua.replace("GUID_FUNCTION", RANDOM_GUID_LUA.replace("SEED", str(seed)))
        lua = lua.replace("NEW_GUID", "random_guid()")
    else:
        lua = lua.replace("GUID_FUNCTION", "")
        lua = lua.replace("NEW_GUID", 'kind .. "-RUN-" .. thread_id .. "-" .. counter')
    return lua.replace("NAMESPACE", namespace).replace("PASSWORD", PASSWORD).replace("RUN", run)


def serve_for_bench(port: int, db: str) -> None:
    """The emulator as the benchmarks run it: the bench account's password, no delivery delay,
    nothing announced."""
    from fibo_soap.emulator import serve

    serve(port=port, db=db, client_pass=PASSWORD, delivery_delay=0, announce=lambda *a: None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the emulator did not come up at {url}")


def set_balance(base: str, balance: int) -> None:
    """Give the seeded account ``balance`` messages of service type 1 (the admin API)."""
    request = urllib.request.Request(
        f"{base}/_emulator/balance",
        data=json.dumps({"client_no": CLIENT_NO, "service_type": 1, "balance": balance}).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux), None where /proc cannot say."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat(5), the 12th and 13th after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, script: Path | None, seconds: int, connections: int) -> tuple[float, int, int]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "1", *command]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    failed = int(bad.group(1)) if bad else 0
    if errors:
        failed += sum(int(n) for n in re.findall(r"\d+", errors.group(1)))
    return rate, total, failed


#: What each run measures, interleaved, so that drift in the machine's state affects all alike.
ENDPOINTS = ("hello", "get", "soap11")


def write_scripts(directory: Path, runs: int, guids: str, tag: str = "") -> list[dict[str, Path]]:
    """The wrk scripts of each run (``get`` and ``soap11``), written into ``directory``.

    Each run is a new wrk whose counters and random generator start again: the run number (and
    ``tag``) keeps GUIDs apart.
    """
    from fibo_soap.wsdl import wsdl_namespace

    namespace = wsdl_namespace()
    scripts = []
    for run in range(runs):
        paths = {}
        for key, lua in (("soap11", SOAP_LUA), ("get", GET_LUA)):
            path = directory / f"{tag}{key}-{run}.lua"
            path.write_text(lua_script(lua, namespace, f"{tag}{run}", guids))
            paths[key] = path
        scripts.append(paths)
    return scripts


@contextlib.contextmanager
def bench_server(code: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A server process running the Python ``code`` (which serves on ``port``), pinned to the
    server's core, up and with the bench balance before the block runs; stopped after it."""
    command = [sys.executable, "-c", code]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    server = subprocess.Popen(command, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(f"{base}/_emulator/hello")
        set_balance(base, BALANCE)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=10)


@dataclass
class Measured:
    """What the runs against one server gave, per endpoint: requests/s and server CPU µs per
    request, one figure per run; and the SendSMS completed and the requests failed, all runs."""

    rates: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in ENDPOINTS})
    cpu_us: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in ENDPOINTS})
    sent: int = 0
    failures: int = 0

    def medians(self) -> dict[str, float]:
        return {key: statistics.median(values) for key, values in self.rates.items()}

    def cpu_medians(self) -> dict[str, float]:
        return {key: statistics.median(values) for key, values in self.cpu_us.items() if values}

    def ratios_per_run(self) -> dict[str, list[float]]:
        """Each SendSMS rate over hello's in the same run: the three are seconds apart."""
        return {
            key: [r / h for r, h in zip(self.rates[key], self.rates["hello"], strict=True)]
            for key in ENDPOINTS[1:]
        }


def measure(
    server: subprocess.Popen[bytes],
    port: int,
    scripts: list[dict[str, Path]],
    seconds: int,
    connections: int,
) -> Measured:
    """wrk against the server's hello route and its SendSMS, interleaved, one run per scripts."""
    base = f"http://127.0.0.1:{port}"
    measured = Measured()
    for run_scripts in scripts:
        for key in ENDPOINTS:
            if key == "hello":
                url, script = f"{base}/_emulator/hello", None
            else:
                url, script = base, run_scripts[key]
            before = cpu_seconds(server.pid)
            rate, total, failed = wrk(url, script, seconds, connections)
            after = cpu_seconds(server.pid)
            measured.rates[key].append(rate)
            if before is not None and after is not None and total:
                measured.cpu_us[key].append((after - before) / total * 1e6)
            measured.failures += failed
            if key != "hello":
                measured.sent += total
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--guids", choices=GUIDS, default="random")
    parser.add_argument("--json", type=Path, default=Path("bench/results-emulator.json"))
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    from fibo_soap.emulator.store import Store

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite"
        scripts = write_scripts(Path(tmp), args.runs, args.guids)
        code = (
            "from bench.emulator_throughput import serve_for_bench;"
            f"serve_for_bench({port}, {str(db)!r})"
        )
        with bench_server(code, port) as server:
            measured = measure(server, port, scripts, args.seconds, args.connections)
        with Store(db) as store:
            counts = store.count_by_guid("CL0001")
            balance = store.balance("CL0001", 1)
    rates, sent, failures = measured.rates, measured.sent, measured.failures
    stored = sum(counts.values())
    doubled = sum(1 for n in counts.values() if n > 1)
    medians = measured.medians()
    cpu = measured.cpu_medians()
    report = {
        "runs": args.runs,
        "seconds": args.seconds,
        "connections": args.connections,
        "guids": args.guids,
        "requests_per_second": medians,
        "all_runs": rates,
        "ratio_to_hello": {key: medians[key] / medians["hello"] for key in ("get", "soap11")},
        "ratio_to_hello_per_run": measured.ratios_per_run(),
        "server_cpu_us_per_request": cpu,
        "server_cpu_us_all_runs": measured.cpu_us,
        "sendsms_completed": sent,
        "stored": stored,
        "doubled_guids": doubled,
        "failed_requests": failures,
        "balance_spent": BALANCE - (balance or 0),
    }
    print(f"SendSMS with {args.guids} GUIDs, {args.connections} connections, {args.runs} runs")
    print(f"{'endpoint':<22}{'req/s (median)':>16}{'× hello':>10}{'CPU µs/req':>12}")
    for key, label in (
        ("hello", "hello (baseline)"),
        ("get", "SendSMS over GET"),
        ("soap11", "SendSMS over SOAP 1.1"),
    ):
        shown = f"{cpu[key]:>12.1f}" if key in cpu else f"{'-':>12}"
        print(f"{label:<22}{medians[key]:>16.0f}{medians[key] / medians['hello']:>10.2f}{shown}")
    for key in ("get", "soap11"):
        per_run = ", ".join(f"{r:.2f}" for r in report["ratio_to_hello_per_run"][key])
        print(f"  {key} × hello in each run: {per_run}")
    # wrk stops counting at the deadline: requests still in flight then (at most one per
    # connection per run) are stored but not counted as completed.
    in_flight = stored - sent
    exact = (
        stored == report["balance_spent"]
        and 0 <= in_flight <= args.connections * args.runs * 2
        and doubled == 0
        and failures == 0
    )
    print(
        f"SendSMS completed {sent} (+{in_flight} in flight at the deadlines), stored {stored}, "
        f"balance spent {report['balance_spent']}, failed {failures}, doubled GUIDs {doubled}: "
        f"{'exact' if exact else 'NOT EXACT'}"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
