"""Targets 1 and 2: the cost of one SendSMS call, ours against the floor and the usual clients.

Every contender makes the same SendSMS against the bench server (bench.wire, its own process on
core 0; this process on core 1). In each round every contender runs one block of K calls, in a
shuffled order, with the garbage collector paused; its wall time per call is the median of the
block's calls and its CPU time per call the block's process CPU time over K. A ratio (× floor,
× zeep, × ``retry=None``) is taken inside each round, and the median of a ratio over the rounds is
what is reported, so that drift in a busy machine weighs on both sides of it alike.
"""

from __future__ import annotations

import http.client
import itertools
import logging
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from bench.common import (
    CLIENT_NO,
    MESSAGE,
    PASSWORD,
    PHONE,
    SERVICE_TYPE,
    median_ratio,
    spread,
    table,
    time_block,
    verdict,
)
from bench.wire import PATH

#: Target 1: ours over SOAP 1.1 (wall, CPU) and over GET/POST, in multiples of the floor.
SOAP_WALL, SOAP_CPU, HTTP_LIMIT = 2.5, 3.0, 1.8
#: Target 1 also says more than twice as fast as zeep's default path.
VS_ZEEP = 0.5
#: Target 2: what retries, logs (and validation) may add to a successful call.
LAYER_LIMIT = 0.05


@dataclass
class Contender:
    """One way of making the call, and what it is compared with."""

    key: str
    label: str
    call: Callable[[], object]
    target: str = ""
    logs: bool = False
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)


def _guids() -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"bench-{next(counter)}"


def _query(guid: str) -> str:
    return urlencode(
        {
            "clientNo": CLIENT_NO,
            "clientPass": PASSWORD,
            "phoneNumber": PHONE,
            "smsMessage": MESSAGE,
            "smsGUID": guid,
            "serviceType": str(SERVICE_TYPE),
        }
    )


def _anchors(base: str) -> list[Contender]:
    """The floor and the usual clients: http.client, urllib3, requests, plain zeep."""
    import requests
    import urllib3
    from lxml import etree

    host = urlsplit(base)
    url = f"{base}{PATH}/SendSMS"
    target = f"{PATH}/SendSMS"
    guid = _guids()

    def both_parses(body: bytes) -> None:
        outer = etree.fromstring(body)
        inner = etree.fromstring((outer.text or "").encode("utf-8"))
        if inner.findtext("Code") != "200":
            raise RuntimeError("the answer is not code 200")

    floor_conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=30)
    parse_conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=30)

    def floor() -> None:
        floor_conn.request("GET", f"{target}?{_query(guid())}")
        response = floor_conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")

    def http_client() -> None:
        parse_conn.request("GET", f"{target}?{_query(guid())}")
        response = parse_conn.getresponse()
        both_parses(response.read())

    pool = urllib3.PoolManager(maxsize=1, retries=False)

    def with_urllib3() -> None:
        both_parses(pool.request("GET", f"{url}?{_query(guid())}").data)

    session = requests.Session()

    def with_requests() -> None:
        response = session.get(f"{url}?{_query(guid())}", timeout=30)
        response.raise_for_status()
        both_parses(response.content)

    service = plain_zeep(f"{base}{PATH}")

    def with_zeep() -> None:
        result = service.SendSMS(
            clientNo=CLIENT_NO,
            clientPass=PASSWORD,
            phoneNumber=PHONE,
            smsMessage=MESSAGE,
            smsGUID=guid(),
            serviceType=str(SERVICE_TYPE),
        )
        if etree.fromstring(result.encode("utf-8")).findtext("Code") != "200":
            raise RuntimeError("the answer is not code 200")

    return [
        Contender("floor", "floor: http.client keep-alive GET, no parsing", floor),
        Contender("http_client", "http.client GET + both lxml parses", http_client),
        Contender("urllib3", "urllib3 pool GET + both lxml parses", with_urllib3),
        Contender("requests", "requests Session GET + both lxml parses", with_requests),
        Contender("zeep", "plain zeep SOAP 1.1 (requests transport) + inner parse", with_zeep),
    ]


def plain_zeep(endpoint: str, *, huge_tree: bool = True) -> Any:
    """zeep's service proxy for the bundled WSDL's SOAP 1.1 binding, zeep's defaults otherwise
    (its requests-based Transport); ``huge_tree`` sets ``xml_huge_tree``."""
    import zeep
    from zeep.wsdl.bindings.soap import Soap11Binding

    from fibo_soap.wsdl import bundled_wsdl_path

    client = zeep.Client(str(bundled_wsdl_path()), settings=zeep.Settings(xml_huge_tree=huge_tree))
    binding = next(
        name for name, each in client.wsdl.bindings.items() if isinstance(each, Soap11Binding)
    )
    return client.create_service(binding, endpoint)


def fibo_client(base: str, protocol: str, *, retry: bool = True, **options: Any) -> Any:
    """Our FiboClient on one protocol against the bench server (default RetryPolicy or None)."""
    from fibo_soap import FiboClient

    if not retry:
        options["retry"] = None
    return FiboClient(
        CLIENT_NO,
        PASSWORD,
        endpoint=f"{base}{PATH}",
        protocols=(protocol,),
        service_type=SERVICE_TYPE,
        **options,
    )


def _ours(base: str, clients: list[Any]) -> list[Contender]:
    found: list[Contender] = []
    for protocol, name, target in (
        ("soap11", "SOAP 1.1", f"≤ {SOAP_WALL}× wall, ≤ {SOAP_CPU}× CPU, ≤ ½ zeep"),
        ("get", "GET", f"≤ {HTTP_LIMIT}×"),
        ("post", "POST", f"≤ {HTTP_LIMIT}×"),
        ("soap12", "SOAP 1.2", ""),
    ):
        variants = [("", True, False, target, "")]
        if protocol != "soap12":
            variants += [
                ("none", False, False, "", ", retry=None"),
                (
                    "logs",
                    True,
                    True,
                    f"≤ +{LAYER_LIMIT:.0%} vs retry=None",
                    ", logs to a null sink",
                ),
            ]
        for suffix, retry, logs, goal, note in variants:
            client = fibo_client(base, protocol, retry=retry)
            clients.append(client)
            key = f"fibo_{protocol}" + (f"_{suffix}" if suffix else "")
            label = f"FiboClient.send_sms over {name}" + (note or (" (default)" if goal else ""))
            found.append(Contender(key, label, _send(client), target=goal, logs=logs))
    return found


def _send(client: Any) -> Callable[[], object]:
    def call() -> object:
        receipt = client.send_sms(PHONE, MESSAGE)
        if receipt.code != 200 or receipt.guid not in receipt.message:
            raise RuntimeError(f"unexpected receipt {receipt!r}")
        return receipt

    return call


def logging_null(on: bool) -> None:
    """structlog at INFO to a sink that drops everything (on), or structlog unconfigured (off,
    where the library emits nothing)."""
    import structlog

    if not on:
        structlog.reset_defaults()
        return
    structlog.configure(
        processors=[],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )


def _validation_cost(loops: int, budget: float) -> float:
    """Seconds per call of what send_sms does before the wire: the phone and the text checked,
    and the GUID made (a GUID the caller gives is checked instead)."""
    from fibo_soap import models, phone, text

    def validate() -> None:
        phone.normalize(PHONE, region="VN", wire=phone.WireFormat.NATIONAL)
        text.prepare(MESSAGE, accents=text.Accents.KEEP, max_parts=5)
        models.new_guid()

    blocks = [time_block(validate, loops, budget) for _ in range(5)]
    return statistics.median(b.wall for b in blocks)


def run(base: str, *, rounds: int, calls: int, budget: float, seed: int) -> dict[str, Any]:
    """Targets 1 and 2, measured; the table rows and verdicts in a dict for the JSON."""
    clients: list[Any] = []
    contenders = _anchors(base) + _ours(base, clients)
    by_key = {c.key: c for c in contenders}
    shuffle = random.Random(seed).shuffle
    started = time.perf_counter()
    try:
        for contender in contenders:  # warm-up: WSDL, pools, caches, first connections
            logging_null(contender.logs)
            time_block(contender.call, 30, 5.0)
        logging_null(False)
        order = list(contenders)
        done = 0
        block_budget = max(0.5, budget / (rounds * len(contenders)) * 3)
        while done < rounds and (done < 3 or time.perf_counter() - started < budget):
            shuffle(order)
            for contender in order:
                logging_null(contender.logs)
                block = time_block(contender.call, calls, block_budget)
                contender.walls.append(block.wall)
                contender.cpus.append(block.cpu)
                if block.waited is not None:
                    contender.waits.append(block.waited)
            logging_null(False)
            done += 1
        validation = _validation_cost(2000, 2.0)
    finally:
        logging_null(False)
        for client in clients:
            client.close()
    return _report(by_key, contenders, done, calls, validation)


def _report(
    by_key: dict[str, Contender],
    contenders: list[Contender],
    rounds: int,
    calls: int,
    validation: float,
) -> dict[str, Any]:
    floor = by_key["floor"]
    zeep = by_key["zeep"]
    rows: list[dict[str, Any]] = []
    for c in contenders:
        row: dict[str, Any] = {
            "key": c.key,
            "label": c.label,
            "wall_us": statistics.median(c.walls) * 1e6,
            "cpu_us": statistics.median(c.cpus) * 1e6,
            "wall_x_floor": median_ratio(c.walls, floor.walls),
            "cpu_x_floor": median_ratio(c.cpus, floor.cpus),
            "wall_x_zeep": median_ratio(c.walls, zeep.walls),
            "cpu_x_zeep": median_ratio(c.cpus, zeep.cpus),
            "wall_spread": spread(c.walls),
            "target": c.target,
            "verdict": None,
            "wall_rounds_us": [w * 1e6 for w in c.walls],
            "cpu_rounds_us": [w * 1e6 for w in c.cpus],
        }
        rows.append(row)
    by_row = {row["key"]: row for row in rows}
    soap = by_row["fibo_soap11"]
    soap_ok = {
        "wall": soap["wall_x_floor"] <= SOAP_WALL,
        "cpu": soap["cpu_x_floor"] <= SOAP_CPU,
        "vs_zeep": soap["wall_x_zeep"] <= VS_ZEEP,
    }
    soap["verdict"] = _words(soap_ok)
    targets: dict[str, Any] = {"soap11": soap_ok}
    for protocol in ("get", "post"):
        row = by_row[f"fibo_{protocol}"]
        checks = {
            "wall": row["wall_x_floor"] <= HTTP_LIMIT,
            "cpu": row["cpu_x_floor"] <= HTTP_LIMIT,
        }
        row["verdict"] = _words(checks)
        targets[protocol] = checks

    layer: list[dict[str, Any]] = []
    for protocol in ("soap11", "get", "post"):
        none = by_key[f"fibo_{protocol}_none"]
        for key, what in (
            (f"fibo_{protocol}", "retry on"),
            (f"fibo_{protocol}_logs", "retry + logs"),
        ):
            c = by_key[key]
            wall = median_ratio(c.walls, none.walls) - 1
            cpu = median_ratio(c.cpus, none.cpus) - 1
            ok = wall <= LAYER_LIMIT
            layer.append(
                {
                    "protocol": protocol,
                    "layers": what,
                    "wall_overhead": wall,
                    "cpu_overhead": cpu,
                    "ok": ok,
                }
            )
        # Validation cannot be turned off (bad input is refused before anything is sent): every
        # contender above pays it. With them all off, a call would cost its retry=None time less
        # the validation measured in-process, and all three layers add the rest.
        plain = statistics.median(none.walls)
        logs = median_ratio(by_key[f"fibo_{protocol}_logs"].walls, none.walls) - 1
        every = (logs * plain + validation) / (plain - validation)
        layer.append(
            {
                "protocol": protocol,
                "layers": "retry + logs + validation",
                "wall_overhead": every,
                "cpu_overhead": None,
                "ok": every <= LAYER_LIMIT,
            }
        )
        by_row[f"fibo_{protocol}_logs"]["verdict"] = verdict(every <= LAYER_LIMIT)
    base_wall = statistics.median(by_key["fibo_get_none"].walls)
    layer.append(
        {
            "protocol": "any",
            "layers": "validation (phone, text) and the GUID made, in-process, vs a GET call",
            "seconds": validation,
            "wall_overhead": validation / base_wall,
            "cpu_overhead": None,
            "ok": None,
        }
    )
    waits = [w for c in contenders for w in c.waits]
    return {
        "rounds": rounds,
        "calls_per_block": calls,
        # The share of the timed blocks the client spent waiting for its core (other work on
        # the machine): near 0 on a quiet machine.
        "waited_median": statistics.median(waits) if waits else None,
        "waited_max": max(waits) if waits else None,
        "rows": rows,
        "targets": targets,
        "layer_overhead": layer,
    }


def _words(checks: dict[str, bool]) -> str:
    missed = [name for name, ok in checks.items() if not ok]
    return "met" if not missed else "MISSED (" + ", ".join(missed) + ")"


def render(result: dict[str, Any]) -> str:
    """The per-call table and the layer-overhead table."""
    rows = [
        (
            r["label"],
            r["wall_us"],
            r["wall_x_floor"],
            r["cpu_us"],
            r["cpu_x_floor"],
            r["wall_x_zeep"],
            r["target"] or "",
            r["verdict"] or "",
        )
        for r in result["rows"]
    ]
    out = [
        f"Target 1 — one SendSMS, medians of {result['rounds']} interleaved rounds × "
        f"{result['calls_per_block']} calls (ratios per round, then median)"
        + (
            ""
            if result.get("waited_median") is None
            else f"; the client waited for its core {result['waited_median']:.0%} of the time "
            f"(median block; worst {result['waited_max']:.0%})"
        ),
        table(
            ("contender", "wall µs", "× floor", "CPU µs", "× floor", "× zeep", "target", "verdict"),
            rows,
            "lrrrrrll",
        ),
        "",
        "Target 2 — what the layers add to a successful call (against retry=None, logs off)",
        table(
            ("protocol", "layers", "Δ wall", "Δ CPU", "target", "verdict"),
            [
                (
                    r["protocol"],
                    r["layers"],
                    f"{r['wall_overhead']:+.1%}",
                    "" if r["cpu_overhead"] is None else f"{r['cpu_overhead']:+.1%}",
                    f"≤ +{LAYER_LIMIT:.0%}" if r["ok"] is not None else "(info)",
                    verdict(r["ok"]) if r["ok"] is not None else f"{r['seconds'] * 1e6:.1f} µs",
                )
                for r in result["layer_overhead"]
            ],
            "llrrll",
        ),
    ]
    return "\n".join(out)
