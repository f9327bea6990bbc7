"""Shared pieces of the hostile-input tests (issue 9): loopback servers that answer with whatever
a test wants, a listener that records any connection, a FIFO tripwire for file reads, a hang
detector, and the corpus of hostile XML both sides of the wire are fed.

Not a test module: imported by tests/test_hostile_*.py, by the transport tests (their servers
are ThreadedServers), by test_codec (the tripwire) and by the fuzz targets' seed builder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

TEMPURI = "http://tempuri.org/"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"

#: The password every hostile test uses: it has a character that each of the wire's escapings
#: (XML, URL, form) changes, so an echo in any of those spellings is caught by the sweep.
PASSWORD = "Pw&<Secret>+/ 9=%;K"
CLIENT_NO = "CL0042"

PROTOCOLS = ("soap11", "soap12", "get", "post")


# --- loopback servers ----------------------------------------------------------------------


#: What a canned server does on a connection: bytes to write, or seconds to pause.
Step = bytes | float


@dataclasses.dataclass
class Received:
    """A request as a canned server read it."""

    head: bytes
    body: bytes


def http_response(
    status: int,
    body: bytes = b"",
    *,
    content_type: str | None = "text/xml; charset=utf-8",
    headers: Iterable[tuple[str, str]] = (),
    length: int | None = None,
    reason: str = "X",
) -> bytes:
    """The bytes of an HTTP/1.1 answer (Content-Length is the body's unless ``length`` says)."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body) if length is None else length}")
    lines.append("Connection: close")
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class CannedServer:
    """A loopback HTTP server that answers every request with ``steps(request)``, then closes.

    Raw sockets rather than http.server: the tests need answers no well-behaved server writes
    (truncated, dripping, garbage status lines).
    """

    def __init__(self, steps: Callable[[Received], Iterable[Step]]) -> None:
        self.steps = steps
        self.requests: list[Received] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/Service.asmx"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._workers.append(worker)
            worker.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            request = _read_request(conn)
            self.requests.append(request)
            for step in self.steps(request):
                if self._stop.is_set():
                    return
                if isinstance(step, float):
                    self._stop.wait(step)  # a pause that close() cuts short
                else:
                    conn.sendall(step)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        """Stop serving: the listener closes, and every connection at its next step."""
        self._stop.set()
        _wake_and_close(self._sock)
        self._thread.join(timeout=5)
        for worker in self._workers:
            worker.join(timeout=5)


def _wake_and_close(sock: socket.socket) -> None:
    # close() alone does not wake a thread blocked in accept() on Linux; shutdown() does.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _read_request(conn: socket.socket) -> Received:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return Received(data, b"")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return Received(head, body)


class ThreadedServer:
    """A listening socket on 127.0.0.1 whose connections are each served by ``serve`` in a thread
    of their own, until ``close``; ``connections`` counts them. A subclass sets what ``serve``
    needs before calling this ``__init__``, which starts accepting."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept_each, daemon=True)
        self._thread.start()

    def _accept_each(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        """Answer one connection (and close it)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop accepting: the accepting thread wakes and ends."""
        _wake_and_close(self.sock)
        self._thread.join(timeout=5)


class Listener(ThreadedServer):
    """A loopback port that counts the connections made to it: a hostile document points its
    external references here, and the test asserts nobody came."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/x.dtd"

    def serve(self, conn: socket.socket) -> None:
        conn.close()


@dataclasses.dataclass
class Tripwire:
    """A FIFO that records whether anything opened it for reading; opening it also releases a
    reader blocked in open(), so a parser that tries does not hang."""

    path: Path
    opened: threading.Event


def start_tripwire(directory: Path) -> tuple[Tripwire, Callable[[], None]]:
    """A running tripwire in ``directory`` and the function that stops it."""
    path = directory / "tripwire"
    os.mkfifo(path)
    opened, stop = threading.Event(), threading.Event()

    def watch() -> None:
        # Opening a FIFO's write end without blocking succeeds only once a reader has it open
        # (ENXIO before that). Opening then closing it also frees a reader blocked in open().
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                stop.wait(0.001)
                continue
            opened.set()
            os.close(fd)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    def halt() -> None:
        stop.set()
        watcher.join(timeout=5)

    return Tripwire(path, opened), halt


def finishes(
    function: Callable[[], Any],
    timeout: float = 20.0,
    on_hang: Callable[[], None] | None = None,
) -> tuple[Any, BaseException | None]:
    """Run ``function`` in a thread; its result or exception. A hang fails the test (a hang
    detector, not a timing assertion: ``timeout`` is far beyond any honest run); ``on_hang`` is
    called first, to release the thread (close the server it waits on) so that it ends within
    the test rather than in the next one."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if on_hang is not None:
            on_hang()
            thread.join(5)
        raise AssertionError(f"still running after {timeout} s: a hang")
    return outcome.get("value"), outcome.get("error")


# --- hostile XML ---------------------------------------------------------------------------


def laughs(depth: int = 9, root: str = "r") -> str:
    """A billion-laughs DOCTYPE (10**depth expansions of 'lol')."""
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, depth + 1)
    )
    return f"<!DOCTYPE {root} [{entities}]>"


@dataclasses.dataclass(frozen=True)
class Prolog:
    """A hostile DOCTYPE and the markup that would use it inside the document; both are built
    from the tripwire's path and the listener's URL, so that any file read or connection the
    parser attempts is seen."""

    name: str
    doctype: Callable[[Path, str], str]
    use: Callable[[Path, str], str] = lambda path, url: ""


HOSTILE_PROLOGS = (
    Prolog("billion-laughs", lambda p, u: laughs(), lambda p, u: "&lol9;"),
    Prolog(
        "quadratic-blowup",
        lambda p, u: f'<!DOCTYPE r [<!ENTITY a "{"A" * 20_000}">]>',
        lambda p, u: "&a;" * 20_000,
    ),
    Prolog(
        "xxe-file",
        lambda p, u: f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{p}">]>',
        lambda p, u: "&x;",
    ),
    Prolog("xxe-path", lambda p, u: f'<!DOCTYPE r [<!ENTITY x SYSTEM "{p}">]>', lambda p, u: "&x;"),
    Prolog(
        "xxe-network", lambda p, u: f'<!DOCTYPE r [<!ENTITY x SYSTEM "{u}">]>', lambda p, u: "&x;"
    ),
    Prolog("external-subset-file", lambda p, u: f'<!DOCTYPE r SYSTEM "file://{p}">'),
    Prolog("external-subset-network", lambda p, u: f'<!DOCTYPE r SYSTEM "{u}">'),
    Prolog("public-id-network", lambda p, u: f'<!DOCTYPE r PUBLIC "-//X//EN" "{u}">'),
    Prolog(
        "parameter-entity-file",
        lambda p, u: f'<!DOCTYPE r [<!ENTITY % p SYSTEM "file://{p}"> %p;]>',
    ),
    Prolog(
        "parameter-entity-network", lambda p, u: f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{u}"> %p;]>'
    ),
    Prolog("bare-doctype", lambda p, u: "<!DOCTYPE r>"),
)

#: Markup that names a file or a URL without a DOCTYPE: well-formed, so it is not refused, but a
#: parser must not act on it (no XInclude processing, no schema fetch).
INERT_REFERENCES = (
    Prolog(
        "xinclude",
        lambda p, u: "",
        lambda p, u: f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file://{p}"/>',
    ),
    Prolog(
        "xinclude-network",
        lambda p, u: "",
        lambda p, u: (
            f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{u}" parse="text"/>'
        ),
    ),
    Prolog(
        "xsi-schema-location",
        lambda p, u: "",
        lambda p, u: (
            '<x xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:schemaLocation="urn:x {u}" xsi:noNamespaceSchemaLocation="file://{p}"/>'
        ),
    ),
    Prolog("xml-stylesheet", lambda p, u: f'<?xml-stylesheet type="text/xsl" href="{u}"?>'),
)


def soap_envelope(version: str, method: str, result: str, *, prolog: str = "") -> bytes:
    """A SOAP response envelope for ``method`` whose result element holds ``result`` (raw XML)."""
    env = SOAP11 if version == "1.1" else SOAP12
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{prolog}<soap:Envelope xmlns:soap="{env}">'
        f'<soap:Body><{method}Response xmlns="{TEMPURI}"><{method}Result>{result}'
        f"</{method}Result></{method}Response></soap:Body></soap:Envelope>"
    ).encode()


def string_body(result: str, *, prolog: str = "") -> bytes:
    """An ASMX GET/POST answer whose ``<string>`` holds ``result`` (raw XML)."""
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{prolog}<string xmlns="{TEMPURI}">{result}</string>'
    ).encode()


def outer_body(protocol: str, method: str, result: str, *, prolog: str = "") -> bytes:
    """The answer body of ``method`` over ``protocol`` with ``result`` as its raw XML content."""
    if protocol == "soap11":
        return soap_envelope("1.1", method, result, prolog=prolog)
    if protocol == "soap12":
        return soap_envelope("1.2", method, result, prolog=prolog)
    return string_body(result, prolog=prolog)


def media_type(protocol: str) -> str:
    """The Content-Type a FIBO success answer has over ``protocol``."""
    if protocol == "soap12":
        return "application/soap+xml; charset=utf-8"
    return "text/xml; charset=utf-8"


def status_doc(code: int, message: str) -> str:
    """A FIBO status document (unescaped)."""
    return f"<SMS><Code>{code}</Code><Message>{message}</Message><Time></Time></SMS>"


def inner(document: str) -> str:
    """A result document as ASMX puts it inside ``<string>``/``<XResult>``: escaped text."""
    return escape(document)


def password_echoes(secret: str = PASSWORD) -> list[str]:
    """The spellings of the password an answer may echo, ready to put in an XML text node."""
    from urllib.parse import quote, quote_plus

    return [escape(secret), escape(quote(secret, safe="")), escape(quote_plus(secret))]


def iter_exception_texts(exc: BaseException) -> Iterator[str]:
    """Every text an exception shows: str, repr, args, notes, excerpt/detail, and its chain."""
    import traceback

    seen: set[int] = set()
    current: BaseException | None = exc
    yield "".join(traceback.format_exception(exc))
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield from (str(arg) for arg in current.args)
        yield from getattr(current, "__notes__", ())
        for name in ("detail", "excerpt", "value"):
            value = getattr(current, name, None)
            if value is not None:
                yield repr(value)
        current = current.__cause__ or current.__context__
