"""What each fuzz target checks, as plain functions of one input (no atheris here).

The atheris entry points (``fuzz_*.py``) run these under coverage guidance; the regression test
(tests/test_fuzz_regressions.py) replays every input kept under tests/fuzz_regressions/ through
the same functions, so a crash found once stays fixed without atheris installed.

A target may raise only what the library documents: a ``FiboError``. Anything else (a
``TypeError`` from deep inside zeep, a ``ValueError`` from lxml, a broken invariant asserted
here) is a crash.

Input layout, the same for every target: the first byte picks the operation or document shape,
the second the status and content type (response targets) or the SOAP version, the rest is the
body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from lxml import etree

from fibo_soap import codec
from fibo_soap.errors import FiboError
from fibo_soap.operations import (
    BULK_DOCUMENT,
    MULTI_MESSAGE_DOCUMENT,
    OPERATIONS,
    PHONE_LIST_DOCUMENT,
    STATUS_QUERY_DOCUMENT,
    Operation,
)
from fibo_soap.protocols.http import read_http_answer
from fibo_soap.protocols.transport import Response

#: The response bound the targets decode under (the client's default is 50 MB; small here so a
#: fuzzer's larger inputs reach the bound's branches).
BOUND = 64 * 1024

OPS: tuple[Operation, ...] = tuple(OPERATIONS.values())
SHAPES = (BULK_DOCUMENT, PHONE_LIST_DOCUMENT, MULTI_MESSAGE_DOCUMENT, STATUS_QUERY_DOCUMENT)
ANSWERS = (
    (200, "text/xml; charset=utf-8"),
    (200, "application/soap+xml; charset=utf-8"),
    (500, "text/xml; charset=utf-8"),
    (500, "application/soap+xml; charset=utf-8"),
    (500, "text/plain"),
    (200, "text/html"),
    (302, "text/html"),
    (200, ""),
)

# What the emulator refuses in a form value (fibo_soap.emulator.app), restated: a value that
# passes must be writable in every XML answer.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _split(data: bytes) -> tuple[int, int, bytes]:
    first = data[0] if data else 0
    second = data[1] if len(data) > 1 else 0
    return first, second, data[2:]


def _tolerated(function: Callable[[], Any]) -> Any:
    """The function's value, or None when it raised a FiboError (the documented failure)."""
    try:
        return function()
    except FiboError:
        return None


# --- the client's side: answers ------------------------------------------------------------


def response(data: bytes) -> None:
    """An ASMX GET/POST answer and the result text inside it, decoded as the client does; and
    the same body as a SOAP answer screened for zeep."""
    first, second, body = _split(data)
    op = OPS[first % len(OPS)]
    status, media = ANSWERS[second % len(ANSWERS)]
    headers = {"Content-Type": media} if media else {}
    text = _tolerated(lambda: read_http_answer(Response(status, headers, body), BOUND))
    if text is not None:
        assert isinstance(text, str)
        _tolerated(lambda: codec.decode_result(op, text, max_bytes=BOUND))
    # The result text as it could arrive from any parser (one that kept odd characters).
    _tolerated(lambda: codec.decode_result(op, body.decode("utf-8", "replace"), max_bytes=BOUND))
    clean = _tolerated(lambda: codec.sanitize_soap_answer(body, max_bytes=BOUND))
    if clean is not None:
        # What zeep is given is well-formed, without DOCTYPE, comments or instructions.
        root = etree.fromstring(clean, etree.XMLParser(resolve_entities=False, no_network=True))
        docinfo: Any = root.getroottree().docinfo
        assert not docinfo.doctype
        assert not any(True for _ in root.iter(etree.Comment, etree.ProcessingInstruction))


class _CannedTransport:
    """An HttpTransport that answers every request with the answer of the current input."""

    max_response_bytes = BOUND

    def __init__(self) -> None:
        self.answer = Response(200, {}, b"")

    def request(self, method: str, url: str, **_: Any) -> Response:
        return self.answer


_canned = _CannedTransport()
_protocols: dict[str, Any] = {}


def _soap_protocol(version: str, engine: str) -> Any:
    from fibo_soap.protocols.soap import SoapProtocol

    protocol = _protocols.get(version + engine)
    if protocol is None:
        protocol = SoapProtocol(
            _canned,  # type: ignore[arg-type]
            "http://127.0.0.1:1/Service.asmx",
            version,  # type: ignore[arg-type]
            engine=engine,  # type: ignore[arg-type]
        )
        _protocols[version + engine] = protocol
    return protocol


def soap_answer(data: bytes) -> None:
    """A SOAP answer taken through the whole SOAP protocol by both engines: screening, the
    hardened parser, then the fast reader or zeep and the mapping of zeep's failures, then the
    result's decoding. Where both decode a result, it is the same one. (Their texts may differ
    where the decoder refuses both: zeep reads a non-number in an int result as nothing.)"""
    first, second, body = _split(data)
    op = OPS[first % len(OPS)]
    version = "soap12" if second & 1 else "soap11"
    status, media = ANSWERS[(second >> 1) % len(ANSWERS)]
    _canned.answer = Response(status, {"Content-Type": media} if media else {}, body)
    params = {name: "x" for name in op.params}
    decoded = []
    for engine in ("fast", "zeep"):
        protocol = _soap_protocol(version, engine)
        text = _tolerated(lambda protocol=protocol: protocol.call(op, params))
        if text is not None:
            assert isinstance(text, str)
            text = _tolerated(lambda text=text: codec.decode_result(op, text, max_bytes=BOUND))
        decoded.append(text)
    if None not in decoded:
        assert decoded[0] == decoded[1], decoded


# --- the emulator's side: requests ---------------------------------------------------------


def _document_round_trip(shape: Any, text: str) -> None:
    rows = _tolerated(lambda: codec.decode_document(shape, text, max_bytes=BOUND))
    if rows is None:
        return
    # What was read is written back and read again to the same rows.
    if shape.fields:
        filled = [tuple(value or "" for value in row) for row in rows]
        again = codec.decode_document(shape, codec.encode_document(shape, filled))
        assert again == filled, (rows, again)
    else:
        values = [row[0] or "" for row in rows]
        again = codec.decode_document(shape, codec.encode_document(shape, values))
        assert again == [(value,) for value in values], (rows, again)


def request_document(data: bytes) -> None:
    """A request document (all four shapes) as the emulator reads it; a SOAP request envelope,
    every parameter of it, and the fault that would answer it; a form body as GET/POST carry it."""
    first, _second, body = _split(data)
    shape = SHAPES[first % len(SHAPES)]
    _document_round_trip(shape, body.decode("utf-8", "replace"))

    try:
        call = codec.decode_soap_request(body, max_bytes=BOUND)
    except FiboError as exc:
        # The emulator answers with this fault: writing it must never fail.
        codec.encode_soap_fault("1.1", "Client", f"Server was unable to read request. ---> {exc}")
    else:
        codec.encode_soap_fault("1.2", "Client", f"Unknown element {call.method!r}.")
        for value in call.params.values():
            if value:
                for each in SHAPES:
                    _document_round_trip(each, value)
    _form(body)


def _form(body: bytes) -> None:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return  # the emulator answers ASMX's "Invalid character" refusal
    fields: Mapping[str, str] = dict(pairs)
    for value in fields.values():
        if _NOT_XML.search(value):
            return  # refused before anything is stored
    for value in fields.values():
        # Stored values come back in status and list documents: writing them must not fail.
        codec.encode_status(202, value)
        codec.encode_wrong_phones([value])


def warm_up() -> None:
    """Import what the targets use lazily (zeep, the SOAP protocol) and parse the WSDL, so that
    the atheris entry points instrument it and no input pays for it."""
    from fibo_soap import wsdl

    for version, kind in (("soap11", wsdl.BindingKind.SOAP11), ("soap12", wsdl.BindingKind.SOAP12)):
        _soap_protocol(version, "zeep").service  # noqa: B018
        wsdl.soap_binding(None, kind)


# --- the emulator as a whole: any request into its ASGI app -------------------------------

#: The seeded account's password in the fuzzed emulator (the seeds carry it, to reach past
#: authentication).
FUZZ_PASSWORD = "fuzz-password"  # noqa: S105 - a throwaway, in-memory account
_emulator: dict[str, Any] = {}
_ROUTES = (
    ("POST", "/Service.asmx", "text/xml; charset=utf-8"),
    ("POST", "/Service.asmx", "application/soap+xml; charset=utf-8"),
    ("GET", "/Service.asmx/{op}", ""),
    ("POST", "/Service.asmx/{op}", "application/x-www-form-urlencoded"),
    ("POST", "/Service.asmx", "multipart/form-data; boundary=x"),
    ("GET", "/Service.asmx", ""),
)


def _app() -> tuple[Any, Any, str]:
    if not _emulator:
        import asyncio

        from fibo_soap.emulator.server import build

        app, password = build(client_pass=FUZZ_PASSWORD, delivery_delay=0, record=0)
        _emulator.update(app=app, loop=asyncio.new_event_loop(), password=password)
    return _emulator["app"], _emulator["loop"], _emulator["password"]


def emulator_request(data: bytes) -> None:
    """Any request to the emulator's ASGI app: it must answer (ASMX-shaped or an HTTP refusal),
    never let an exception out, and never answer Starlette's own 'Internal Server Error'."""
    app, loop, _password = _app()
    first, second, body = _split(data)
    method, path, media = _ROUTES[first % len(_ROUTES)]
    op = OPS[second % len(OPS)]
    query = b""
    if method == "GET":
        query, body = body.split(b"\n", 1)[0], b""
    headers = [(b"host", b"fuzz")]
    if media:
        headers.append((b"content-type", media.encode()))
        headers.append((b"soapaction", f'"http://tempuri.org/{op.name}"'.encode()))
    headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path.format(op=op.name),
        "raw_path": path.format(op=op.name).encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    loop.run_until_complete(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    status = start["status"]
    assert status in (200, 400, 404, 405, 413, 414, 415, 500), status
    assert answer != b"Internal Server Error", "an exception escaped the emulator's handlers"
