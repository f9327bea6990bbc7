"""A minimal ASMX-shaped server for the benchmarks: just enough HTTP/1.1 to be what a client meets.

Not the emulator: no store, no validation, no framework. It answers, over one keep-alive asyncio
protocol per connection,

- ``SendSMS`` over HTTP GET (``/Service.asmx/SendSMS?…``), HTTP POST (form body), SOAP 1.1
  (``SOAPAction``) and SOAP 1.2 (``application/soap+xml; action=…``): ``<SMS><Code>200</Code>…``
  as escaped text in ``<string>`` or ``<SendSMSResult>``. The message echoes the request's
  ``smsGUID``, so that a client can check that every answer it got was the answer to its request
  (threads sharing a client must never swap answers);
- ``GetSMSSentList`` over the same four protocols, with as many rows as ``minutes`` says (the
  bodies are generated once per size and kept; ``/_prepare?rows=N`` builds them ahead of timing);
- ``/hello``: ``ok``, for readiness.

Large answers are written in slices under asyncio's flow control (no copy of a 330 MB body). The
server exits when its parent does. Run it as ``python -m bench.wire --port N [--namespace NS]``;
:func:`serve` starts one in its own process (pinned to core 0 when taskset is there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

PREFIX = b"/Service.asmx"
PATH = "/Service.asmx"
DEFAULT_NAMESPACE = "http://tempuri.org/"
SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"

#: Bodies kept for list answers, in bytes, before the least recently used are dropped.
CACHE_BYTES = 1_500_000_000
#: The most rows a list answer may have.
MAX_ROWS = 2_000_000
_SLICE = 256 * 1024
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024

_XML_DECL = b'<?xml version="1.0" encoding="utf-8"?>'
_TEXT_XML = b"text/xml; charset=utf-8"
_SOAP12_TYPE = b"application/soap+xml; charset=utf-8"
_GUID_FIELD = re.compile(rb"(?:^|&)smsGUID=([^&]*)")
_GUID_ELEMENT = re.compile(rb"<(?:[\w.-]+:)?smsGUID>([^<]*)</")
_MINUTES_FIELD = re.compile(rb"(?:^|&)minutes=(\d+)")
_MINUTES_ELEMENT = re.compile(rb"<(?:[\w.-]+:)?minutes>\s*(\d+)\s*</")
_ACTION_PARAM = re.compile(rb'action="?([^";]+)')
_SAFE_GUID = re.compile(rb"[^A-Za-z0-9._:-]")


def escape(text: str) -> str:
    """Text as ASMX writes it inside an element."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sent_list_document(rows: int) -> str:
    """A GetSMSSentList result document of ``rows`` rows (about 390 bytes each once escaped)."""
    parts = ["<DocumentElement>"]
    append = parts.append
    for i in range(rows):
        n = i % 1_000_000
        second = i % 60
        append(
            f"<SMSLIST><SMSID>{10_000_000 + i}</SMSID>"
            f"<MSGUID>5f0c2a7e-{i % 10_000:04d}-4c1d-9e2b-{i:012d}</MSGUID>"
            f"<PhoneNumber>0909{n:06d}</PhoneNumber>"
            f"<Message>Ma OTP cua ban la {n:06d}</Message>"
            f"<CreatedDate>2024-05-09T07:35:{second:02d}+07:00</CreatedDate>"
            f"<SentDate>2024-05-09T07:36:{second:02d}+07:00</SentDate>"
            f"<SMSStatus>{2 + i % 2}</SMSStatus></SMSLIST>"
        )
    append("</DocumentElement>")
    return "".join(parts)


class Bodies:
    """The answers' bodies for one namespace: fixed parts made once, list bodies cached by size."""

    def __init__(self, namespace: str) -> None:
        ns = namespace.encode()
        self.namespace = namespace
        self._string = (_XML_DECL + b'\r\n<string xmlns="' + ns + b'">', b"</string>")
        self._soap: dict[str, tuple[bytes, bytes]] = {}
        for version, env_ns in (("1.1", SOAP11_NS), ("1.2", SOAP12_NS)):
            head = (
                _XML_DECL + b'<soap:Envelope xmlns:soap="' + env_ns.encode() + b'" '
                b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                b'xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body>'
            )
            self._soap[version] = (head, b"</soap:Body></soap:Envelope>")
        self._lists: OrderedDict[tuple[int, str], bytes] = OrderedDict()

    def wrap(self, kind: str, method: str, escaped: bytes) -> bytes:
        """``escaped`` (already escaped result text) in a ``<string>`` or a SOAP envelope."""
        if kind == "http":
            head, tail = self._string
            return head + escaped + tail
        head, tail = self._soap[kind]
        name = method.encode()
        return b"".join(
            (
                head,
                b"<" + name + b'Response xmlns="' + self.namespace.encode() + b'">',
                b"<" + name + b"Result>",
                escaped,
                b"</" + name + b"Result></" + name + b"Response>",
                tail,
            )
        )

    def send_sms(self, kind: str, guid: bytes) -> bytes:
        """SendSMS's answer: code 200, the message echoing the request's GUID."""
        inner = (
            b"&lt;SMS&gt;&lt;Code&gt;200&lt;/Code&gt;&lt;Message&gt;Sending:"
            + guid
            + b"&lt;/Message&gt;&lt;Time&gt;2024-05-09 07:35:25&lt;/Time&gt;&lt;/SMS&gt;"
        )
        return self.wrap(kind, "SendSMS", inner)

    def sent_list(self, kind: str, rows: int) -> bytes:
        """GetSMSSentList's answer with ``rows`` rows (made once, then kept)."""
        key = (rows, kind)
        body = self._lists.get(key)
        if body is not None:
            self._lists.move_to_end(key)
            return body
        escaped = escape(sent_list_document(rows)).encode("ascii")
        body = self.wrap(kind, "GetSMSSentList", escaped)
        del escaped
        self._lists[key] = body
        while sum(len(b) for b in self._lists.values()) > CACHE_BYTES and len(self._lists) > 1:
            self._lists.popitem(last=False)
        return body


def _response(status: bytes, content_type: bytes, body: bytes, *, close: bool = False) -> bytes:
    head = (
        b"HTTP/1.1 " + status + b"\r\nCache-Control: private, max-age=0\r\n"
        b"Content-Type: " + content_type + b"\r\nContent-Length: " + str(len(body)).encode()
    )
    return head + (b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n")


class AsmxProtocol(asyncio.Protocol):
    """One keep-alive connection: requests parsed in order, each answered before the next."""

    def __init__(self, bodies: Bodies) -> None:
        self._bodies = bodies
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._view: memoryview | None = None  # a large body being written in slices
        self._offset = 0
        self._paused = False
        self._close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._view = None
        self._transport = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        # Not inline: asyncio calls this from inside its own write path, where a write or a close
        # of ours would run that path twice.
        self._paused = False
        asyncio.get_running_loop().call_soon(self._pump)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._serve()

    def _serve(self) -> None:
        buffer = self._buffer
        while self._view is None and self._transport is not None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    self._transport.close()
                return
            head = bytes(buffer[:end])
            lines = head.split(b"\r\n")
            try:
                method, target, _version = lines[0].split(b" ", 2)
            except ValueError:
                self._transport.close()
                return
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0") or b"0")
            if length > _MAX_BODY:
                self._transport.close()
                return
            if len(buffer) < end + 4 + length:
                return
            body = bytes(buffer[end + 4 : end + 4 + length])
            del buffer[: end + 4 + length]
            self._close_after = headers.get(b"connection", b"").lower() == b"close"
            self._answer(method, target, headers, body)

    def _answer(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> None:
        path, _, query = target.partition(b"?")
        kind = ""
        name = b""
        fields = b""
        if path.startswith(PREFIX + b"/") and method in (b"GET", b"POST"):
            kind = "http"
            name = path[len(PREFIX) + 1 :]
            fields = query if method == b"GET" else body
        elif path == PREFIX and method == b"POST":
            content_type = headers.get(b"content-type", b"").lower()
            if content_type.startswith(b"application/soap+xml"):
                kind = "1.2"
                found = _ACTION_PARAM.search(headers.get(b"content-type", b""))
                action = found.group(1) if found else b""
            else:
                kind = "1.1"
                action = headers.get(b"soapaction", b"").strip(b'"')
            name = action.rpartition(b"/")[2]
        elif path == b"/hello":
            self._send(b"200 OK", b"text/plain", b"ok")
            return
        elif path == b"/_prepare":
            rows = _bounded(re.search(rb"rows=(\d+)", query))
            for each in ("http", "1.1", "1.2"):
                self._bodies.sent_list(each, rows)
            self._send(b"200 OK", b"text/plain", b"ok")
            return
        soap = kind in ("1.1", "1.2")
        content_type = _SOAP12_TYPE if kind == "1.2" else _TEXT_XML
        if name == b"SendSMS":
            found = (_GUID_ELEMENT if soap else _GUID_FIELD).search(body if soap else fields)
            raw = found.group(1) if found else b""
            guid = raw if soap else unquote_plus(raw.decode("latin-1")).encode("latin-1")
            guid = _SAFE_GUID.sub(b"", guid)[:64]
            self._send(b"200 OK", content_type, self._bodies.send_sms(kind, guid))
        elif name == b"GetSMSSentList":
            found = (_MINUTES_ELEMENT if soap else _MINUTES_FIELD).search(body if soap else fields)
            self._send(b"200 OK", content_type, self._bodies.sent_list(kind, _bounded(found)))
        elif kind:
            self._send(
                b"500 Internal Server Error",
                b"text/plain; charset=utf-8",
                b"System.InvalidOperationException: " + name + b" is not a known method.",
            )
        else:
            self._send(b"404 Not Found", b"text/plain", b"not found")

    def _send(self, status: bytes, content_type: bytes, body: bytes) -> None:
        transport = self._transport
        assert transport is not None
        head = _response(status, content_type, body, close=self._close_after)
        if len(body) <= _SLICE:
            transport.write(head + body)
            self._done()
            return
        transport.write(head)
        self._view = memoryview(body)
        self._offset = 0
        self._pump()

    def _pump(self) -> None:
        transport = self._transport
        while self._view is not None and not self._paused and transport is not None:
            piece = self._view[self._offset : self._offset + _SLICE]
            self._offset += len(piece)
            transport.write(piece)
            if self._offset >= len(self._view):
                self._view = None
                self._done()
                self._serve()

    def _done(self) -> None:
        if self._close_after and self._transport is not None:
            asyncio.get_running_loop().call_soon(self._transport.close)


def _bounded(found: re.Match[bytes] | None) -> int:
    return min(int(found.group(1)), MAX_ROWS) if found else 0


async def _main(port: int, namespace: str, parent: int) -> None:
    loop = asyncio.get_running_loop()
    bodies = Bodies(namespace)
    server = await loop.create_server(
        lambda: AsmxProtocol(bodies), "127.0.0.1", port, backlog=128, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        while not stop.is_set():
            # An orphan (the bench died without terminating us) exits on its own.
            if os.getppid() != parent:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="minimal ASMX-shaped server for the benchmarks")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--parent", type=int, default=os.getppid())
    args = parser.parse_args(argv)
    # uvloop where it is installed (the emulator extra): the server must not be what limits the
    # concurrency section, whose calibration row shows the ceiling it sets.
    try:
        import uvloop
    except ImportError:
        asyncio.run(_main(args.port, args.namespace, args.parent))
    else:
        uvloop.run(_main(args.port, args.namespace, args.parent))
    return 0


# --- the bench's side ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def can_pin() -> bool:
    """True when there are two cores to split between server and client."""
    try:
        return len(os.sched_getaffinity(0)) > 1
    except (AttributeError, OSError):
        return False


@contextlib.contextmanager
def serve(namespace: str = DEFAULT_NAMESPACE, *, pin: bool = True) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT``) of a server running in its own process.

    Pinned to core 0 with taskset when ``pin`` and there are two cores. Terminated (then killed)
    on exit, whatever happened inside.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bench.wire",
        "--port",
        str(port),
        "--namespace",
        namespace,
        "--parent",
        str(os.getpid()),
    ]
    if pin and can_pin() and shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    root = Path(__file__).resolve().parent.parent
    server = subprocess.Popen(command, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{base}/hello", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the bench server did not come up") from None
                time.sleep(0.05)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def prepare(base: str, rows: int, timeout: float = 120) -> None:
    """Make the server build its list bodies of ``rows`` rows now, not during a timed call."""
    urllib.request.urlopen(f"{base}/_prepare?rows={rows}", timeout=timeout).close()


if __name__ == "__main__":
    raise SystemExit(main())
