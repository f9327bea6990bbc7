"""Target 3: decoding large GetSMSSentList answers into typed rows, and the memory it takes.

Throughput is the reply's size on the wire (the ``<string>`` body, or the SOAP envelope) over the
wall time from the call to the last typed row, in MB/s (10⁶ bytes). For each size the contenders
run interleaved in rounds, garbage collector paused, the median kept. Our client gets a
``max_response_bytes`` large enough for the largest reply (the default, 50 MB, stops at about
133,000 rows of ~390 bytes). Peak memory is measured in a fresh process per case: the high-water
RSS (VmHWM, reset just before the call) over the RSS before it, divided by the reply size; unlike
tracemalloc this counts libxml2's memory. The reply size is the GET body for GET paths and the
SOAP 1.1 envelope for SOAP paths. The full run repeats each memory case up to 1M rows three times
and keeps the median; the quick run measures each once.

Besides the client's paths, two streaming cases split the iterator's memory by layer: ``iter_codec``
is the codec alone on a body already read (the outer parse, then the rows as they are iterated),
``iter_text`` only the iteration of the rows of a result text already decoded.

Run as a module for one memory case: ``python -m bench.bulk --memory PATH --rows N --base URL``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from bench.common import CLIENT_NO, PASSWORD, ROOT, quiet_gc, table, verdict
from bench.wire import PATH, Bodies, prepare

#: Target 3: typed rows at this many MB/s of reply or more, at every size.
MIN_MB_S = 50.0
#: Target 3: the iterator's peak memory at most this many times the reply.
MAX_PEAK = 2.0
#: A response bound above every reply measured here (1M rows is about 330 MB).
BIG_BOUND = 1_000_000_000

#: name: (label, needs the body fetched beforehand, counts toward the target)
PATHS: dict[str, tuple[str, bool, bool]] = {
    "client_get": ("FiboClient.get_sent_list over GET", False, True),
    "client_soap11": ("FiboClient.get_sent_list over SOAP 1.1", False, True),
    "iterator": ("FiboClient.iter_sent_list (streaming) over GET", False, True),
    "iterator_soap11": ("FiboClient.iter_sent_list (streaming) over SOAP 1.1", False, True),
    "codec": ("codec alone: decode_http_body + decode_result", True, False),
    "iter_codec": ("codec alone, streaming: decode_http_body + RowStream", True, False),
    "iter_text": ("codec alone, streaming: RowStream over a result text", True, False),
    "lxml": ("anchor: both lxml parses, untyped (huge_tree)", True, False),
    "zeep_huge": ("anchor: plain zeep, xml_huge_tree, + inner parse, untyped", False, False),
    "zeep_default": ("anchor: plain zeep, default settings, + inner parse", False, False),
}
OP = "GetSMSSentList"
#: The iterator's paths, whose peak memory the target bounds.
ITERATORS = ("iterator", "iterator_soap11")
#: Memory cases the run adds to each ``iterator`` case of the plan (same row count).
ITERATOR_COMPANIONS = ("iterator_soap11", "iter_codec", "iter_text")
#: Fresh processes per memory case in the full run (the median is kept); 1M rows gets one.
MEMORY_REPEATS = 3
#: Sizes up to this many rows are decoded this many times more often than the plan's reps.
_SMALL_ROWS, _SMALL_REPS = 10_000, 5


def fetch(base: str, rows: int) -> bytes:
    """The GET answer of GetSMSSentList with ``rows`` rows, read whole."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)
    try:
        query = urlencode({"clientNo": CLIENT_NO, "clientPass": PASSWORD, "minutes": rows})
        conn.request("GET", f"{PATH}/{OP}?{query}")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return body
    finally:
        conn.close()


def reply_length(base: str, rows: int) -> int:
    """The size of the GET answer with ``rows`` rows, read in slices and not kept."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)
    try:
        query = urlencode({"clientNo": CLIENT_NO, "clientPass": PASSWORD, "minutes": rows})
        conn.request("GET", f"{PATH}/{OP}?{query}")
        response = conn.getresponse()
        size = 0
        while chunk := response.read(1 << 20):
            size += len(chunk)
        return size
    finally:
        conn.close()


def _has_iterator() -> bool:
    from fibo_soap import FiboClient

    return callable(getattr(FiboClient, "iter_sent_list", None))


def _soap_reply(http_reply: int) -> int:
    """The size of the SOAP 1.1 envelope carrying the text of a GET body of ``http_reply``."""
    from fibo_soap.wsdl import wsdl_namespace

    bodies = Bodies(wsdl_namespace())
    return http_reply - len(bodies.wrap("http", OP, b"")) + len(bodies.wrap("1.1", OP, b""))


def _is_soap(name: str) -> bool:
    return "soap" in name or "zeep" in name


class Paths:
    """The ways of turning a GetSMSSentList answer into rows, with what each holds open."""

    def __init__(self, base: str, bound: int) -> None:
        from bench.percall import fibo_client

        self.base = base
        self.bound = bound
        self._clients = {
            "client_get": fibo_client(base, "get", max_response_bytes=bound),
            "client_soap11": fibo_client(base, "soap11", max_response_bytes=bound),
        }
        self._zeep: dict[bool, Any] = {}
        self.body = b""

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def _plain_zeep(self, huge: bool) -> Any:
        if huge not in self._zeep:
            from bench.percall import plain_zeep

            self._zeep[huge] = plain_zeep(f"{self.base}{PATH}", huge_tree=huge)
        return self._zeep[huge]

    def call(self, name: str, rows: int) -> Callable[[], int]:
        """A function doing one decode by ``name``, returning the number of rows it got."""
        from lxml import etree

        if name in self._clients:
            client = self._clients[name]
            return lambda: len(client.get_sent_list(rows))
        if name in ITERATORS:
            client = self._clients["client_get" if name == "iterator" else "client_soap11"]
            return lambda: sum(1 for _ in client.iter_sent_list(rows))
        if name in ("codec", "iter_codec", "iter_text"):
            from fibo_soap import codec
            from fibo_soap.operations import operation

            op = operation(OP)
            if name == "codec":
                return lambda: len(
                    codec.decode_result(  # type: ignore[arg-type]
                        op,
                        codec.decode_http_body(self.body, max_bytes=self.bound),
                        max_bytes=self.bound,
                    )
                )
            streamed = codec.streamed(op)

            def count(text: str) -> int:
                decoded = codec.decode_result(streamed, text, max_bytes=self.bound)
                assert isinstance(decoded, codec.RowStream)
                return sum(len(batch) for batch in decoded.batches())

            if name == "iter_codec":
                return lambda: count(codec.decode_http_body(self.body, max_bytes=self.bound))
            # The text is decoded here, before the measured call: only the iteration is timed.
            text = codec.decode_http_body(self.body, max_bytes=self.bound)
            return lambda: count(text)
        if name == "lxml":
            parser = etree.XMLParser(huge_tree=True, resolve_entities=False)

            def both() -> int:
                outer = etree.fromstring(self.body, parser)
                return len(etree.fromstring((outer.text or "").encode("utf-8"), parser))

            return both
        service = self._plain_zeep(name == "zeep_huge")
        parser = etree.XMLParser(huge_tree=True, resolve_entities=False)

        def with_zeep() -> int:
            text = service.GetSMSSentList(clientNo=CLIENT_NO, clientPass=PASSWORD, minutes=rows)
            return len(etree.fromstring(text.encode("utf-8"), parser))

        return with_zeep


def _one(call: Callable[[], int]) -> tuple[float, float, int | str]:
    with quiet_gc():
        cpu = time.process_time()
        started = time.perf_counter()
        try:
            got: int | str = call()
        except Exception as exc:  # noqa: BLE001 - a failure is a result here, reported as such
            got = f"{type(exc).__name__}: {str(exc)[:120]}"
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return wall, cpu, got


def throughput(
    base: str, sizes: list[int], *, reps: int, budget: float, seed: int
) -> dict[str, Any]:
    """MB/s of reply into rows, per size and path, interleaved per size."""
    shuffle = random.Random(seed).shuffle
    iterator = _has_iterator()
    names = [n for n in PATHS if iterator or (n not in ITERATORS and not n.startswith("iter_"))]
    bound = max(BIG_BOUND, int(max(sizes) * 400 * 1.25))
    paths = Paths(base, bound)
    from fibo_soap.wsdl import wsdl_namespace

    bodies = Bodies(wsdl_namespace())
    cells: dict[str, dict[str, Any]] = {}
    try:
        for rows in sizes:
            prepare(base, rows)
            paths.body = fetch(base, rows)
            size = {"http": len(paths.body)}
            string_wrap = len(bodies.wrap("http", OP, b""))
            soap_wrap = len(bodies.wrap("1.1", OP, b""))
            size["soap"] = len(paths.body) - string_wrap + soap_wrap
            calls = {name: paths.call(name, rows) for name in names}
            if rows <= 10_000:  # warm-up: WSDL, pools, first connections
                for name in names:
                    _one(calls[name])
            results: dict[str, list[tuple[float, float, int | str]]] = {n: [] for n in names}
            started = time.perf_counter()
            order = list(names)
            # The big sizes get fewer reps (one 1M-row decode takes seconds), but never fewer
            # than three (one in the quick plan) for a median: the budget cuts only beyond that.
            # The small ones get more: a call of a few milliseconds moves by several percent
            # from one to the next, and their reps cost little.
            if rows >= 1_000_000:
                wanted = max(1, min(reps, 3))
            else:
                wanted = reps * _SMALL_REPS if rows <= _SMALL_ROWS else reps
            least = min(wanted, 3 if reps >= 5 else 1)
            done = 0
            while done < wanted and (done < least or time.perf_counter() - started < budget):
                shuffle(order)
                for name in order:
                    if results[name] and isinstance(results[name][-1][2], str):
                        continue  # it failed at this size: once is enough
                    results[name].append(_one(calls[name]))
                done += 1
            for name in names:
                reply = size["soap" if _is_soap(name) else "http"]
                cells.setdefault(name, {})[str(rows)] = _cell(results[name], reply, rows)
            paths.body = b""
    finally:
        paths.close()
    return {"sizes": sizes, "iterator": iterator, "cells": cells}


def _cell(runs: list[tuple[float, float, int | str]], reply: int, rows: int) -> dict[str, Any]:
    failures = [got for _, _, got in runs if isinstance(got, str)]
    wrong = [got for _, _, got in runs if isinstance(got, int) and got != rows]
    good = [(w, c) for w, c, got in runs if got == rows]
    if not good:
        return {"reply_bytes": reply, "error": (failures or [f"rows {wrong}"])[0]}
    wall = statistics.median(w for w, _ in good)
    cpu = statistics.median(c for _, c in good)
    return {
        "reply_bytes": reply,
        "runs": len(good),
        "wall_s": wall,
        "cpu_s": cpu,
        "mb_s": reply / wall / 1e6,
        "cpu_mb_s": reply / cpu / 1e6 if cpu else None,
        "error": failures[0] if failures else (f"rows {wrong}" if wrong else None),
    }


# --- peak memory, one fresh process per case ----------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    # VmHWM: the high-water mark of this process's own memory map. (ru_maxrss would not do: a
    # child starts with its parent's, and the bench holds hundreds of MB.)
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> None:
    # Linux ≥ 4.0: "5" resets VmHWM to the current RSS. Where it cannot, the growth is measured
    # from the earlier peak instead (never overstated).
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def memory_case(name: str, rows: int, base: str) -> dict[str, Any]:
    """Peak RSS growth of one decode in this (fresh) process."""
    paths = Paths(base, BIG_BOUND)
    try:
        if PATHS[name][1]:
            paths.body = fetch(base, rows)
            reply = len(paths.body)
        else:
            reply = reply_length(base, rows)
            paths.call(name, 1)()  # warm-up: imports, WSDL, connection
        if _is_soap(name):
            reply = _soap_reply(reply)
        call = paths.call(name, rows)
        gc.collect()
        _reset_peak()
        before = max(_rss(), _peak())
        started = time.perf_counter()
        got = call()
        wall = time.perf_counter() - started
        peak = _peak()
    finally:
        paths.close()
    grown = max(0, peak - before)
    return {
        "path": name,
        "rows": rows,
        "got": got,
        "reply_bytes": reply,
        "peak_growth_bytes": grown,
        "peak_x_reply": grown / reply,
        "wall_s": wall,
    }


def memory(
    base: str, cases: list[tuple[str, int]], *, timeout: float, repeats: int = 1
) -> list[dict[str, Any]]:
    """Each memory case in fresh processes (so that one case's peak is not another's): the run
    of median peak out of ``repeats`` (one for 1M rows and more), with every peak seen."""
    found = []
    for name, rows in cases:
        runs = [
            _memory_once(base, name, rows, timeout=timeout)
            for _ in range(repeats if rows < 1_000_000 else 1)
        ]
        good = sorted((r for r in runs if "peak_x_reply" in r), key=lambda r: r["peak_x_reply"])
        if not good:
            found.append(runs[-1])
            continue
        median = dict(good[(len(good) - 1) // 2])
        median["runs"] = len(good)
        median["peaks_x_reply"] = [round(r["peak_x_reply"], 3) for r in good]
        found.append(median)
    return found


def _memory_once(base: str, name: str, rows: int, *, timeout: float) -> dict[str, Any]:
    """One memory case in a fresh process."""
    prepare(base, rows)
    command = [
        sys.executable,
        "-m",
        "bench.bulk",
        "--memory",
        name,
        "--rows",
        str(rows),
        "--base",
        base,
    ]
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"path": name, "rows": rows, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"path": name, "rows": rows, "error": tail[:200]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(
    base: str,
    *,
    sizes: list[int],
    reps: int,
    budget: float,
    memory_cases: list[tuple[str, int]],
    seed: int,
) -> dict[str, Any]:
    """Target 3, measured."""
    result = throughput(base, sizes, reps=reps, budget=budget, seed=seed)
    cases: list[tuple[str, int]] = []
    for name, rows in memory_cases:
        if name == "iterator" and result["iterator"]:
            cases += [(name, rows), *((other, rows) for other in ITERATOR_COMPANIONS)]
        elif name not in ITERATORS:
            cases.append((name, rows))
    cases = list(dict.fromkeys(cases))
    # The quick plan (fewer decode reps) measures each memory case once.
    repeats = MEMORY_REPEATS if reps >= 5 else 1
    result["memory"] = memory(base, cases, timeout=600, repeats=repeats)
    _judge(result)
    return result


def _judge(result: dict[str, Any]) -> None:
    targets: dict[str, Any] = {}
    for name, (_, _, counts) in PATHS.items():
        cells = result["cells"].get(name)
        if not counts:
            continue
        if cells is None:
            targets[name] = {"ok": False, "why": "missing (no iter_sent_list on FiboClient)"}
            continue
        slow = [
            rows for rows, cell in cells.items() if cell.get("error") or cell["mb_s"] < MIN_MB_S
        ]
        targets[name] = {
            "ok": not slow,
            "why": f"below {MIN_MB_S:.0f} MB/s or failed at {slow}" if slow else "",
        }
    peaks = [m for m in result["memory"] if m.get("path") in ITERATORS and "peak_x_reply" in m]
    over = [f"{m['path']} at {m['rows']:,} rows" for m in peaks if m["peak_x_reply"] > MAX_PEAK]
    targets["iterator_memory"] = (
        {"ok": not over, "why": f"above {MAX_PEAK:.0f}× the reply: {over}" if over else ""}
        if peaks
        else {"ok": False, "why": "missing (no iter_sent_list on FiboClient)"}
    )
    result["targets"] = targets


def render(result: dict[str, Any]) -> str:
    """The decode table (MB/s per size) and the memory table."""
    sizes = [str(s) for s in result["sizes"]]
    rows = []
    for name, (label, _, counts) in PATHS.items():
        cells = result["cells"].get(name)
        if cells is None:
            rows.append((label, *(["missing"] * len(sizes)), f"≥ {MIN_MB_S:.0f} MB/s", "MISSING"))
            continue
        shown = []
        for size in sizes:
            cell = cells.get(size, {})
            if cell.get("mb_s") is None:
                shown.append("FAILS¹")
            else:
                shown.append(f"{cell['mb_s']:.1f}")
        target = result["targets"].get(name, {})
        rows.append(
            (
                label,
                *shown,
                f"≥ {MIN_MB_S:.0f} MB/s" if counts else "(anchor)",
                verdict(target["ok"]) if counts else "",
            )
        )
    reply = result["cells"].get("codec") or result["cells"].get("client_get") or {}
    mb = [f"{reply.get(s, {}).get('reply_bytes', 0) / 1e6:.1f} MB" for s in sizes]
    out = [
        "Target 3 — decode throughput, MB/s of reply into rows (median; wall time of the call)",
        table(
            (
                "path",
                *(f"{int(s):,} rows ({m})" for s, m in zip(sizes, mb, strict=True)),
                "target",
                "verdict",
            ),
            rows,
            "l" + "r" * len(sizes) + "ll",
        ),
    ]
    failures = [
        f"¹ {PATHS[name][0]}, {int(size):,} rows: {cell['error']}"
        for name, cells in result["cells"].items()
        for size, cell in cells.items()
        if cell.get("error")
    ]
    out += failures
    if result["memory"]:
        mem_rows = []
        for m in result["memory"]:
            label = PATHS.get(m["path"], (m["path"],))[0]
            if "error" in m:
                mem_rows.append((label, f"{m['rows']:,}", "—", "—", "—", "ERROR: " + m["error"]))
                continue
            target = "(info)"
            if m["path"] in ITERATORS:
                target = f"≤ {MAX_PEAK:.0f}× {verdict(m['peak_x_reply'] <= MAX_PEAK)}"
            peaks = m.get("peaks_x_reply", [])
            spread = f" ({peaks[0]:.2f}–{peaks[-1]:.2f})" if len(peaks) > 1 else ""
            mem_rows.append(
                (
                    label,
                    f"{m['rows']:,}",
                    f"{m['reply_bytes'] / 1e6:.1f}",
                    f"{m['peak_growth_bytes'] / 1e6:.0f}",
                    f"{m['peak_x_reply']:.2f}×{spread}",
                    target,
                )
            )
        if not result["iterator"]:
            mem_rows.append(
                (PATHS["iterator"][0], "—", "—", "—", "missing", f"≤ {MAX_PEAK:.0f}× MISSING")
            )
        out += [
            "",
            "Target 3 — peak memory of one decode (fresh process; peak RSS over RSS before; "
            "median, range of the runs)",
            table(
                ("path", "rows", "reply MB", "peak growth MB", "× reply", "target"),
                mem_rows,
                "lrrrrl",
            ),
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one peak-memory case of target 3")
    parser.add_argument("--memory", choices=sorted(PATHS), required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--base", required=True)
    args = parser.parse_args(argv)
    print(json.dumps(memory_case(args.memory, args.rows, args.base)))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
