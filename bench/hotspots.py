"""Where one send_sms spends its time: cProfile over N calls in this process, server elsewhere.

cProfile charges each Python function call, so code made of many small calls looks heavier
than it is; read the shares, not the microseconds. The top entries by cumulative and by
own (tottime) time are printed and kept in the JSON; ``--profile-dump`` keeps the raw pstats.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from pathlib import Path
from typing import Any

from bench.common import MESSAGE, PHONE, quiet_gc, table


def run(base: str, *, protocol: str, calls: int, top: int, dump: Path | None) -> dict[str, Any]:
    """Profile ``calls`` send_sms over ``protocol`` after a warm-up; the top ``top`` entries."""
    from bench.percall import fibo_client

    client = fibo_client(base, protocol)
    try:
        for _ in range(50):
            client.send_sms(PHONE, MESSAGE)
        # Unprofiled first, for the real time per call beside the profile.
        with quiet_gc():
            started = time.perf_counter()
            for _ in range(min(calls, 500)):
                client.send_sms(PHONE, MESSAGE)
            plain = (time.perf_counter() - started) / min(calls, 500)
        profiler = cProfile.Profile()
        with quiet_gc():
            started = time.perf_counter()
            profiler.enable()
            for _ in range(calls):
                client.send_sms(PHONE, MESSAGE)
            profiler.disable()
            profiled = (time.perf_counter() - started) / calls
    finally:
        client.close()
    if dump is not None:
        profiler.dump_stats(str(dump))
    listings = {}
    breakdown = layers(pstats.Stats(profiler), calls, profiled)
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats(key).print_stats(top)
        listings[key] = _trim(out.getvalue())
    return {
        "protocol": protocol,
        "calls": calls,
        "us_per_call_unprofiled": plain * 1e6,
        "us_per_call_profiled": profiled * 1e6,
        "layers": breakdown,
        "listings": listings,
    }


#: (label, path suffix of the file, function names): the layers of a call, read off the profile by
#: cumulative time (the largest entry that matches). Matched loosely, so that a refactor that
#: moves or renames a function shows "—" rather than failing. Nested rows are part of the row
#: above them.
LAYERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("  FiboClient.send_sms (its frame)", "fibo_soap/client.py", ("send_sms",)),
    ("  validation: phone.normalize", "fibo_soap/phone.py", ("normalize",)),
    ("  validation: text.prepare", "fibo_soap/text.py", ("prepare",)),
    ("  GUID: models.new_guid", "fibo_soap/models.py", ("new_guid",)),
    ("  resilience: the attempt loop", "fibo_soap/resilience.py", ("call", "run")),
    ("    SoapProtocol.call (engine + transport)", "fibo_soap/protocols/soap.py", ("call",)),
    ("      fast engine: write the envelope", "fibo_soap/protocols/soap.py", ("request",)),
    ("      HttpTransport.request", "fibo_soap/protocols/transport.py", ("request",)),
    ("        the request's bytes", "fibo_soap/protocols/transport.py", ("request_bytes",)),
    ("        llhttp: read the answer", "fibo_soap/protocols/transport.py", ("feed",)),
    ("        socket sendall", "~", ("<method 'sendall' of '_socket.socket' objects>",)),
    ("        socket recv", "~", ("<method 'recv' of '_socket.socket' objects>",)),
    ("      fast engine: read the answer", "fibo_soap/protocols/soap.py", ("result",)),
    ("    codec.decode_result (inner parse, status)", "fibo_soap/codec.py", ("decode_result",)),
    ("    codec.parse_xml (every call of it)", "fibo_soap/codec.py", ("parse_xml",)),
    ("  logs (structlog events)", "fibo_soap/logs.py", ()),
)


def layers(stats: pstats.Stats, calls: int, total: float) -> list[dict[str, Any]]:
    """Cumulative time per call of each entry of LAYERS, and its share of ``total`` (the
    profiled time per call)."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    found: list[dict[str, Any]] = [
        {"layer": "one send_sms, all of it", "us_per_call": total * 1e6, "share": 1.0}
    ]
    for label, suffix, names in LAYERS:
        cumulative = None
        for (filename, _line, function), (_cc, _nc, _tt, ct, _callers) in table.items():
            if suffix == "~":
                hit = filename == "~" and function in names
            else:
                hit = filename.replace("\\", "/").endswith(suffix) and (
                    not names or function in names
                )
            if hit:
                cumulative = ct if cumulative is None else max(cumulative, ct)
        per_call = None if cumulative is None else cumulative / calls
        found.append(
            {
                "layer": label,
                "us_per_call": None if per_call is None else per_call * 1e6,
                "share": None if per_call is None or not total else per_call / total,
            }
        )
    return found


def _trim(text: str) -> str:
    lines = text.strip().splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("ncalls"):
            return "\n".join(lines[i:])
    return "\n".join(lines)


def render(result: dict[str, Any]) -> str:
    """The two listings with a heading."""
    head = (
        f"Profile — {result['calls']} send_sms over {result['protocol']} in-process "
        f"({result['us_per_call_unprofiled']:.0f} µs/call unprofiled, "
        f"{result['us_per_call_profiled']:.0f} µs/call under cProfile)"
    )
    rows = [
        (
            r["layer"],
            "—" if r["us_per_call"] is None else f"{r['us_per_call']:.1f}",
            "—" if r["share"] is None else f"{r['share']:.0%}",
        )
        for r in result["layers"]
    ]
    parts = [
        head,
        "",
        "by layer (cumulative µs per call under cProfile, and share of the profiled call; an"
        " indented row is part of the less indented one above it):",
        table(("layer", "µs/call", "share"), rows, "lrr"),
    ]
    for key, listing in result["listings"].items():
        parts += ["", f"top by {key}:", listing]
    return "\n".join(parts)
