"""How near the emulator's SendSMS could come to 0.5× hello if its store did less: what-if servers.

The load is bench.emulator_throughput's (wrk, 16 keep-alive connections, a new phone number and a
random GUID per request, the server pinned to its own core), run against three servers in turn,
each from an empty store:

- ``emulator``: the emulator as it ships;
- ``no-rows``: the same, except that a send's row is not inserted. Each send is still read,
  checked, charged to its balance and committed with its group; only the message is not kept,
  so nothing could ever find it again. It is not an emulator: it is what the HTTP, ASMX and SOAP
  layers, the service and a commit of the balance cost, with nothing stored;
- ``no-store``: every call is answered "accepted" by a service that does nothing, and the group
  commit commits an empty transaction. What the layers in front of the store cost.

The last two change the server process only (a function of the store, or of the service,
replaced at start-up); the load, the hello route and everything around them are the emulator's.
Nothing is checked for exactness here: ``bench.emulator_throughput`` does that for the emulator.

    python -m bench.emulator_ceiling [--runs 3] [--seconds 5] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import table
from bench.emulator_throughput import (
    ENDPOINTS,
    bench_server,
    free_port,
    measure,
    serve_for_bench,
    write_scripts,
)

SERVERS = ("emulator", "no-rows", "no-store")


def serve_what_if(server: str, port: int, db: str) -> None:
    """Serve as ``serve_for_bench`` does, with ``server``'s change made first."""
    if server == "no-rows":
        from fibo_soap.emulator import store

        def insert_nothing(conn: object, rows: Sequence[tuple[Any, ...]]) -> None:
            return None

        store._insert_with_ids = insert_nothing
    elif server == "no-store":
        from fibo_soap.emulator import service
        from fibo_soap.errors import CODE_ACCEPTED

        accepted = service._status(CODE_ACCEPTED)

        def call(self: object, op: object, params: object, protocol: object) -> str:
            return accepted

        service.FiboService.call = call
    elif server != "emulator":
        raise ValueError(f"no server {server!r}")
    serve_for_bench(port, db)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", type=Path, default=Path("bench/results-ceiling.json"))
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for server in SERVERS:
            port = free_port()
            db = Path(tmp) / f"{server}.sqlite"
            scripts = write_scripts(Path(tmp), args.runs, "random", tag=f"{server}-")
            code = (
                "from bench.emulator_ceiling import serve_what_if;"
                f"serve_what_if({server!r}, {port}, {str(db)!r})"
            )
            with bench_server(code, port) as process:
                measured = measure(process, port, scripts, args.seconds, args.connections)
            if measured.failures:
                print(f"{server}: {measured.failures} requests failed", file=sys.stderr)
                return 1
            medians = measured.medians()
            results[server] = {
                "requests_per_second": medians,
                "ratio_to_hello": {k: medians[k] / medians["hello"] for k in ENDPOINTS[1:]},
                "ratio_to_hello_per_run": measured.ratios_per_run(),
                "server_cpu_us_per_request": measured.cpu_medians(),
            }
            print(f"{server}: done", flush=True)
    rows = []
    for server, result in results.items():
        ratios, cpu = result["ratio_to_hello"], result["server_cpu_us_per_request"]
        rows.append(
            [
                server,
                f"{result['requests_per_second']['hello']:,.0f}",
                f"{ratios['get']:.2f}",
                f"{ratios['soap11']:.2f}",
                " / ".join(f"{cpu[key]:.1f}" for key in ENDPOINTS),
            ]
        )
    print(
        f"{args.runs} runs of {args.seconds} s, {args.connections} connections, random GUIDs\n"
        + table(
            ["server", "hello req/s", "GET × hello", "SOAP × hello", "CPU µs hello / GET / SOAP"],
            rows,
        )
    )
    report = {
        "runs": args.runs,
        "seconds": args.seconds,
        "connections": args.connections,
        "servers": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
