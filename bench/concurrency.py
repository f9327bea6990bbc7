"""Target 5: one FiboClient shared by 8 threads (and 8 asyncio tasks) against 1 thread (1 task).

Each run makes send_sms calls for a fixed time (and at most a fixed count) and counts completed
calls, errors, and answers that were not the answer to the caller's own request: every call sends
its own GUID, the server echoes it in the message, and a receipt must carry that GUID twice (its
``guid`` and its message). 1 and 8 alternate in rounds; the ratio of call rates is taken per round,
then the median. The client process is on one core, the server on the other.
"""

from __future__ import annotations

import asyncio
import http.client
import inspect
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from bench.common import (
    CLIENT_NO,
    MESSAGE,
    PASSWORD,
    PHONE,
    SERVICE_TYPE,
    table,
    verdict,
    waiting_ns,
)
from bench.wire import PATH

#: Target 5: 8 workers reach at least this many times the single-worker call rate.
MIN_SPEEDUP = 1.6
WORKERS = 8
MAX_CALLS = 200_000
#: Past this share of a run spent waiting for the core, one worker's rate is not to be trusted.
MAX_WAIT = 0.10


class Tally:
    """Calls, errors and crossed answers of one run, from any number of threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.errors: Counter[str] = Counter()
        self.crossed = 0
        #: The client's CPU time over the run's wall time: how much of its core it got.
        self.cpu_share = 0.0
        #: The share of the run the workers spent waiting for a core (None: not known).
        self.waited: float | None = None
        self._waits: list[float] = []

    def add_wait(self, fraction: float | None) -> None:
        if fraction is None:
            return
        with self.lock:
            self._waits.append(fraction)
            self.waited = sum(self._waits) / len(self._waits)

    def add(self, calls: int, errors: Counter[str], crossed: int) -> None:
        with self.lock:
            self.calls += calls
            self.errors.update(errors)
            self.crossed += crossed


def _check(receipt: Any, guid: str) -> bool:
    return bool(receipt.code == 200 and receipt.guid == guid and guid in receipt.message)


Call = Callable[[str], bool]


def client_calls(client: Any) -> Callable[[int], Call]:
    """Every thread calls the one shared ``client``."""

    def call(guid: str) -> bool:
        return _check(client.send_sms(PHONE, MESSAGE, guid=guid), guid)

    return lambda n: call


def floor_calls(base: str) -> Callable[[int], Call]:
    """The calibration: each thread its own http.client connection, GET, no parsing. What 8
    threads gain over 1 here is about the most any client on one core can gain."""
    parts = urlsplit(base)

    def make(n: int) -> Call:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        fixed = {
            "clientNo": CLIENT_NO,
            "clientPass": PASSWORD,
            "phoneNumber": PHONE,
            "smsMessage": MESSAGE,
            "serviceType": str(SERVICE_TYPE),
        }

        def call(guid: str) -> bool:
            conn.request("GET", f"{PATH}/SendSMS?{urlencode({**fixed, 'smsGUID': guid})}")
            response = conn.getresponse()
            body = response.read()
            return response.status == 200 and guid.encode() in body

        return call

    return make


def threads_run(
    make: Callable[[int], Call], workers: int, seconds: float, tag: str
) -> tuple[float, Tally]:
    """Calls per second of ``workers`` threads, thread n calling ``make(n)``, for ``seconds``."""
    tally = Tally()
    start = threading.Barrier(workers + 1)
    stop_at = [0.0]

    def work(n: int) -> None:
        calls = crossed = 0
        errors: Counter[str] = Counter()
        call = make(n)
        start.wait()
        stop = stop_at[0]
        waited, began = waiting_ns(), time.perf_counter()
        while time.perf_counter() < stop and calls < MAX_CALLS:
            guid = f"{tag}-{n}-{calls}"
            try:
                crossed += not call(guid)
            except Exception as exc:  # noqa: BLE001 - every error is counted, by type
                errors[type(exc).__name__] += 1
            calls += 1
        after = waiting_ns()
        if waited is not None and after is not None:
            tally.add_wait((after - waited) / 1e9 / (time.perf_counter() - began))
        tally.add(calls, errors, crossed)

    pool = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(workers)]
    for thread in pool:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    cpu = time.process_time()
    start.wait()
    for thread in pool:
        thread.join(timeout=seconds + 120)
    elapsed = time.perf_counter() - started
    tally.cpu_share = (time.process_time() - cpu) / elapsed
    if any(thread.is_alive() for thread in pool):
        tally.errors["worker hung"] += 1
    return tally.calls / elapsed, tally


async def _tasks_run(client: Any, workers: int, seconds: float, tag: str) -> tuple[float, Tally]:
    tally = Tally()
    stop = time.perf_counter() + seconds

    async def work(n: int) -> None:
        calls = crossed = 0
        errors: Counter[str] = Counter()
        while time.perf_counter() < stop and calls < MAX_CALLS:
            guid = f"{tag}-{n}-{calls}"
            try:
                receipt = await client.send_sms(PHONE, MESSAGE, guid=guid)
            except Exception as exc:  # noqa: BLE001 - every error is counted, by type
                errors[type(exc).__name__] += 1
            else:
                crossed += not _check(receipt, guid)
            calls += 1
        tally.add(calls, errors, crossed)

    started = time.perf_counter()
    cpu = time.process_time()
    waited = waiting_ns()
    await asyncio.wait_for(
        asyncio.gather(*(work(n) for n in range(workers))), timeout=seconds + 120
    )
    elapsed = time.perf_counter() - started
    after = waiting_ns()
    if waited is not None and after is not None:
        tally.add_wait((after - waited) / 1e9 / elapsed)
    tally.cpu_share = (time.process_time() - cpu) / elapsed
    return tally.calls / elapsed, tally


def _async_client(base: str, protocol: str) -> Any:
    import fibo_soap

    cls = getattr(fibo_soap, "AsyncFiboClient", None)
    if cls is None:
        return None
    return cls(
        CLIENT_NO,
        PASSWORD,
        endpoint=f"{base}{PATH}",
        protocols=(protocol,),
        service_type=SERVICE_TYPE,
    )


async def _async_rounds(base: str, protocol: str, rounds: int, seconds: float) -> dict[str, Any]:
    client = _async_client(base, protocol)
    if client is None:
        return {"status": "pending (no fibo_soap.AsyncFiboClient yet)"}
    try:
        await _tasks_run(client, 1, min(0.5, seconds), "warm")
        rates: dict[int, list[float]] = {1: [], WORKERS: []}
        shares: dict[int, list[float]] = {1: [], WORKERS: []}
        waits: list[float] = []
        total = Tally()
        for r in range(rounds):
            for workers in (1, WORKERS) if r % 2 == 0 else (WORKERS, 1):
                rate, tally = await _tasks_run(client, workers, seconds, f"a{r}w{workers}")
                rates[workers].append(rate)
                shares[workers].append(tally.cpu_share)
                if workers == 1 and tally.waited is not None:
                    waits.append(tally.waited)
                total.add(tally.calls, tally.errors, tally.crossed)
        return _summary(rates, shares, total, waits)
    finally:
        closing = getattr(client, "aclose", None) or getattr(client, "close", None)
        if closing is not None:
            result = closing()
            if inspect.isawaitable(result):
                await result


def _summary(
    rates: dict[int, list[float]],
    shares: dict[int, list[float]],
    total: Tally,
    waits: list[float],
) -> dict[str, Any]:
    ratios = [m / s for s, m in zip(rates[1], rates[WORKERS], strict=True) if s > 0]
    speedup = statistics.median(ratios) if ratios else float("nan")
    clean = not total.errors and total.crossed == 0
    return {
        "status": "measured",
        "rate_1": statistics.median(rates[1]),
        "rate_n": statistics.median(rates[WORKERS]),
        "speedup": speedup,
        "calls": total.calls,
        "errors": dict(total.errors),
        "crossed": total.crossed,
        "ok": speedup >= MIN_SPEEDUP and clean,
        # The time one worker spent runnable but waiting for its core: other work on the
        # machine. Much of it, and the ratio flatters 8 workers (they win more of the core).
        "waited_1": statistics.median(waits),
        "reliable": statistics.median(waits) <= MAX_WAIT if waits else None,
        "rates_1": rates[1],
        "rates_n": rates[WORKERS],
        # On a busy machine 8 threads win a larger share of the contested core than 1 does,
        # which inflates the speed-up: these say how much of the core each case got.
        "cpu_share_1": statistics.median(shares[1]),
        "cpu_share_n": statistics.median(shares[WORKERS]),
    }


def _thread_rounds(make: Callable[[int], Call], rounds: int, seconds: float) -> dict[str, Any]:
    threads_run(make, WORKERS, min(0.5, seconds), "warm")  # pools, WSDL, connections
    rates: dict[int, list[float]] = {1: [], WORKERS: []}
    shares: dict[int, list[float]] = {1: [], WORKERS: []}
    waits: list[float] = []
    total = Tally()
    for r in range(rounds):
        for workers in (1, WORKERS) if r % 2 == 0 else (WORKERS, 1):
            rate, tally = threads_run(make, workers, seconds, f"t{r}w{workers}")
            rates[workers].append(rate)
            shares[workers].append(tally.cpu_share)
            if workers == 1 and tally.waited is not None:
                waits.append(tally.waited)
            total.add(tally.calls, tally.errors, tally.crossed)
    return _summary(rates, shares, total, waits)


def run(base: str, *, protocols: list[str], rounds: int, seconds: float) -> dict[str, Any]:
    """Target 5, measured (threads; and asyncio tasks when there is an AsyncFiboClient)."""
    from bench.percall import fibo_client

    found: dict[str, Any] = {
        "threads/floor (calibration)": {
            **_thread_rounds(floor_calls(base), rounds, seconds),
            "ok": None,
            "calibration": True,
        }
    }
    for protocol in protocols:
        client = fibo_client(base, protocol)
        try:
            found[f"threads/{protocol}"] = _thread_rounds(client_calls(client), rounds, seconds)
        finally:
            client.close()
        try:
            found[f"async/{protocol}"] = asyncio.run(_async_rounds(base, protocol, rounds, seconds))
        except Exception as exc:  # noqa: BLE001 - an async client that fails is a result
            found[f"async/{protocol}"] = {"status": f"error: {type(exc).__name__}: {exc}"[:200]}
    return {"workers": WORKERS, "rounds": rounds, "run_seconds": seconds, "cases": found}


def render(result: dict[str, Any]) -> str:
    """The concurrency table."""
    rows = []
    for case, r in result["cases"].items():
        if r.get("status") != "measured":
            rows.append((case, "—", "—", "—", "—", "—", "—", "—", f"≥ {MIN_SPEEDUP}×", r["status"]))
            continue
        errors = sum(r["errors"].values())
        rows.append(
            (
                case,
                f"{r['rate_1']:.0f}",
                f"{r['rate_n']:.0f}",
                r["speedup"],
                f"{r['cpu_share_1']:.0%} / {r['cpu_share_n']:.0%}",
                "—" if r.get("waited_1") is None else f"{r['waited_1']:.0%}",
                f"{errors}" + (f" {r['errors']}" if errors else ""),
                r["crossed"],
                "(ceiling)" if r.get("calibration") else f"≥ {MIN_SPEEDUP}×, 0 errors",
                (
                    ("" if r.get("calibration") else verdict(r["ok"]))
                    + ("" if r.get("reliable") is not False else " (unreliable: busy core)")
                ).strip(),
            )
        )
    return "\n".join(
        [
            f"Target 5 — one shared client, 1 vs {result['workers']} workers, "
            f"{result['rounds']} rounds of {result['run_seconds']:.1f} s each (ratio per round; "
            "client CPU: the share of its core the client process used, 1 / N workers; 1 waited:"
            " the share of a 1-worker run spent waiting for the core, i.e. other work)",
            table(
                (
                    "workers/protocol",
                    "calls/s ×1",
                    f"calls/s ×{result['workers']}",
                    "speed-up",
                    "client CPU",
                    "1 waited",
                    "errors",
                    "crossed answers",
                    "target",
                    "verdict",
                ),
                rows,
                "lrrrrrrrll",
            ),
        ]
    )
