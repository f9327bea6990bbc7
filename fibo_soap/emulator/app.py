"""The emulator's ASGI app: FIBO's Service.asmx over SOAP 1.1, SOAP 1.2, HTTP GET and HTTP POST,
answering at the edges the way ASP.NET ASMX does, plus an admin API under ``/_emulator/``.

Routes per protocol live here; what the methods do lives in service.py, state in store.py, the XML
in the project's codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import math
import re
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from fibo_soap import codec, wsdl
from fibo_soap.emulator.faults import AFTER_METHOD, Fault, FaultKind, Faults
from fibo_soap.emulator.service import FiboService
from fibo_soap.errors import FiboError
from fibo_soap.models import IncomingStatus
from fibo_soap.operations import OPERATIONS, Operation

#: ASP.NET's default maxRequestLength (4 MB).
MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_QUERY_BYTES = 32 * 1024

XML = "text/xml; charset=utf-8"
SOAP12 = "application/soap+xml; charset=utf-8"
TEXT = "text/plain; charset=utf-8"

# .NET 4 request validation (CrossSiteScriptingValidation.IsDangerousString): "<" followed by a
# letter, "!", "/" or "?", or "&#". A "<" before a digit or a space ("1 < 2") passes.
_DANGEROUS = re.compile(r"<[A-Za-z!/?]|&#")
_CYCLE_KEY = "fibo.cycle"
# What XML 1.0 cannot carry (outside its Char production): a form or query value may hold it.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class Recorded:
    """A request as the emulator received it, for tests that assert on the wire."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    protocol: str
    operation: str | None
    params: Mapping[str, str | None] = field(default_factory=dict)


class EmulatorApp:
    """The ASGI application. ``request_validation`` refuses ``<`` in GET/POST values like .NET 4."""

    def __init__(
        self,
        service: FiboService,
        faults: Faults,
        *,
        request_validation: bool = False,
        record: int = 1000,
    ) -> None:
        self.service = service
        self.faults = faults
        self.request_validation = request_validation
        self.recorded: deque[Recorded] = deque(maxlen=record or None)
        self.record = record > 0
        # The calls waiting for their group commit (see _call).
        self._group: _Group | None = None
        self._namespace = wsdl.wsdl_namespace()
        handlers: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
            ("/Service.asmx", self._asmx, ["GET", "POST"]),
            ("/Service.asmx/{method}", self._http_method, ["GET", "POST"]),
            ("/_emulator/hello", self._hello, ["GET", "POST"]),
            ("/_emulator/faults", self._faults, ["GET", "POST", "DELETE"]),
            ("/_emulator/advance", self._advance, ["POST"]),
            ("/_emulator/incoming", self._incoming, ["POST"]),
            ("/_emulator/messages", self._messages, ["GET"]),
            ("/_emulator/balance", self._balance, ["POST"]),
        ]
        self._app = Starlette(
            routes=[
                Route(path, _Endpoint(handler), methods=methods)
                for path, handler, methods in handlers
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The faults that drop a connection need the request's cycle: uvicorn's ``send`` is a
        # bound method of it, and it holds the socket's transport. A weak reference: the cycle
        # holds the scope, and a scope holding the cycle would leave every request to the
        # garbage collector (3.7 µs more per hello request).
        if scope["type"] == "http":
            cycle = getattr(send, "__self__", None)
            scope.setdefault("extensions", {})[_CYCLE_KEY] = (
                None if cycle is None else weakref.ref(cycle)
            )
        await self._app(scope, receive, send)

    # --- Service.asmx: WSDL, help page, SOAP -----------------------------------------------

    async def _asmx(self, request: Request) -> Response:
        if request.method == "GET":
            # The raw bytes: Starlette's request.url decodes them as UTF-8 and raises on others.
            if _query(request).lower() == b"wsdl":
                address = str(request.url.replace(query="")).rstrip("?")
                return Response(wsdl.wsdl_with_address(address), media_type=XML)
            return Response(_help_page(), media_type="text/html; charset=utf-8")
        length, content_type, soap_action = _post_headers(request.scope)
        body = await _body(request, length)
        if body is None:
            return PlainTextResponse("Maximum request length exceeded.", 413)
        media = content_type.split(";")[0].strip().lower()
        if media not in ("text/xml", "application/soap+xml"):
            return PlainTextResponse(f"Unsupported media type {media!r}.", 415)
        version: codec.SoapVersion = "1.1" if media == "text/xml" else "1.2"
        try:
            call = codec.decode_soap_request(body, max_bytes=MAX_REQUEST_BYTES)
        except FiboError as exc:
            return _fault(
                version, "Client", f"Server was unable to read request. ---> {exc.detail}"
            )
        if call.version != version:
            # ASMX refuses an envelope whose version does not match its content type.
            return PlainTextResponse("Unsupported media type for this SOAP version.", 415)
        action = _soap_action(version, soap_action, content_type)
        op = OPERATIONS.get(call.method)
        if version == "1.1" and action != f"{self._namespace}{call.method}":
            return _fault(
                version,
                "Client",
                f"Server did not recognize the value of HTTP Header SOAPAction: {action}.",
            )
        if op is None or call.namespace != self._namespace:
            return _fault(
                version,
                "Client",
                f"Server did not recognize the request element {call.method!r}.",
            )
        protocol = "soap11" if version == "1.1" else "soap12"
        # Bound as .NET binds them: each of the method's parameters, None for an element left
        # out; an element the method has no parameter for is ignored.
        params = {name: call.params.get(name) for name in op.params}
        if self.record:
            self._record(request, body, protocol, op, params)
        return await self._invoke(request, op, params, protocol)

    # --- Service.asmx/<Method>: HTTP GET and POST ------------------------------------------

    async def _http_method(self, request: Request) -> Response:
        name = request.path_params["method"]
        op = OPERATIONS.get(name)
        if op is None:
            return _asmx_error(
                f"Request format is unrecognized for URL unexpectedly ending in '/{name}'."
            )
        protocol = "get" if request.method == "GET" else "post"
        if protocol == "get":
            raw = _query(request)
            if len(raw) > MAX_QUERY_BYTES:
                return PlainTextResponse("The request URL is too long.", 414)
            body = b""
        else:
            length, content_type, _ = _post_headers(request.scope)
            media = content_type.split(";")[0].strip().lower()
            body_or_none = await _body(request, length)
            if body_or_none is None:
                return PlainTextResponse("Maximum request length exceeded.", 413)
            body = body_or_none
            if media != "application/x-www-form-urlencoded":
                return _asmx_error(
                    f"Request format is unrecognized for URL unexpectedly ending in '/{name}'."
                )
            raw = body
        try:
            fields = form_fields(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _asmx_error("System.ArgumentException: Invalid character in the request.")
        # One search over all the values finds the first bad character of the first bad value.
        bad = _NOT_XML.search("".join(fields.values()))
        if bad is not None:
            # The value would be stored, then break every XML answer that shows it (the sent
            # lists): refused as .NET's XmlWriter refuses such a character.
            return _asmx_error(
                f"System.ArgumentException: hexadecimal value 0x{ord(bad.group()):02X}, "
                "is an invalid character."
            )
        if self.request_validation:
            # .NET validates the whole collection when the method's parameters are first read
            # from it: before any of them is found missing.
            source = "QueryString" if protocol == "get" else "Form"
            for key, value in fields.items():
                if _dangerous(value):
                    return _asmx_error(
                        f"A potentially dangerous Request.{source} value was detected from the "
                        f'client ({key}="{value[:20]}...").'
                    )
        try:
            params: dict[str, str | None] = {name_: fields[name_] for name_ in op.params}
        except KeyError:
            # A NameValueCollection finds a name whatever its case: clientno is clientNo.
            folded = {key.lower(): value for key, value in fields.items()}
            missing = next((n for n in op.params if n.lower() not in folded), None)
            if missing is not None:
                return _asmx_error(
                    f"System.InvalidOperationException: Missing parameter: {missing}.\r\n"
                    "   at System.Web.Services.Protocols.ValueCollectionParameterReader.Read"
                    "(NameValueCollection collection)"
                )
            params = {name_: folded[name_.lower()] for name_ in op.params}
        if self.record:
            self._record(request, body, protocol, op, params)
        return await self._invoke(request, op, params, protocol)

    # --- the call, under faults ------------------------------------------------------------

    async def _invoke(
        self,
        request: Request,
        op: Operation,
        params: Mapping[str, str | None],
        protocol: str,
    ) -> Response:
        fired = self.faults.take(op.name, protocol) if self.faults.active() else []
        if not fired:
            try:
                value = await self._call(op, params, protocol)
            except Exception as exc:  # noqa: BLE001 - ASMX turns any exception into a fault
                return _method_failed(protocol, exc)
            return self._answer(op, value, protocol)
        return await self._invoke_under_faults(request, op, params, protocol, fired)

    async def _invoke_under_faults(
        self,
        request: Request,
        op: Operation,
        params: Mapping[str, str | None],
        protocol: str,
        fired: list[Fault],
    ) -> Response:
        kinds = {rule.kind for rule in fired}
        delay = sum(rule.seconds for rule in fired if rule.kind is FaultKind.LATENCY)
        if delay:
            await asyncio.sleep(delay)
        if FaultKind.CLOSE_BEFORE in kinds:
            return _drop(request)
        if FaultKind.HTTP_500 in kinds:
            return PlainTextResponse("Internal Server Error (injected)", 500)
        if FaultKind.SOAP_FAULT in kinds:
            # The answer of a method that throws: over GET and POST, ASMX has no envelope to put a
            # fault in and answers with its plain-text 500.
            if protocol not in ("soap11", "soap12"):
                return _asmx_error("System.Exception: injected fault")
            return _fault(
                "1.2" if protocol == "soap12" else "1.1",
                "Server",
                "Server was unable to process request. ---> injected fault",
            )
        try:
            value = await self._call(op, params, protocol)
        except Exception as exc:  # noqa: BLE001 - ASMX turns any exception into a fault
            return _method_failed(protocol, exc)
        if kinds & AFTER_METHOD:
            if FaultKind.CLOSE_AFTER in kinds:
                return _drop(request)
            if FaultKind.BAD_INNER_XML in kinds:
                value = "<SMS><Code>200</Code><Message>Sending..."
        response = self._answer(op, value, protocol)
        if FaultKind.TRUNCATE in kinds:
            return _Truncated(response, request)
        return response

    def _call(
        self, op: Operation, params: Mapping[str, str | None], protocol: str
    ) -> asyncio.Future[str | int]:
        """The method's result, once the group of calls it runs in is committed (group commit).

        Calls that reach the loop together (one per connection under load) run in one store
        transaction: the commit is SQLite's costly step, and one serves them all. Each call is
        still atomic on its own, and none is answered before the commit that stores it.
        """
        group = self._group
        # A call joins the open group when it runs on the group's loop. A thread runs one loop at
        # a time, so the group's thread and its loop still running say so: asyncio's
        # get_running_loop() would cost every call a getpid() system call (its check for a fork).
        if (
            group is None
            or group.closed
            or group.thread != threading.get_ident()
            or not group.loop.is_running()
        ):
            loop = asyncio.get_running_loop()
            group = self._group = _Group(loop)
            # The group runs two turns of the loop from now: the requests read in this turn and
            # in the next poll for I/O join it. With one turn, answers going out while others
            # come in split the connections into groups of half the size, and twice the commits.
            loop.call_soon(loop.call_soon, self._run_group, group)
        future: asyncio.Future[str | int] = group.loop.create_future()
        group.calls.append((op, params, protocol, future))
        return future

    def _run_group(self, group: _Group) -> None:
        group.closed = True
        outcomes: list[tuple[asyncio.Future[str | int], str | int | Exception]] = []
        try:
            with self.service.store.batch():
                for op, params, protocol, future in group.calls:
                    try:
                        outcomes.append((future, self.service.call(op, params, protocol)))
                    except Exception as exc:  # noqa: BLE001 - the call's own failure, its fault
                        outcomes.append((future, exc))
        except BaseException as exc:
            # The commit failed or never came: nothing of the group is stored, none succeeds.
            for *_, future in group.calls:
                if not future.done():
                    if isinstance(exc, Exception):
                        future.set_exception(exc)
                    else:
                        future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for future, outcome in outcomes:
            if future.done():  # the request's task was cancelled meanwhile
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _answer(self, op: Operation, value: str | int, protocol: str) -> Response:
        if isinstance(value, str) and len(value) > _KEPT_ANSWER_CHARS:
            return _Answer(_answer_body(op, value, protocol, self._namespace), protocol)
        return _kept_answer(op.name, value, protocol, self._namespace)

    def _record(
        self,
        request: Request,
        body: bytes,
        protocol: str,
        op: Operation,
        params: Mapping[str, str | None],
    ) -> None:
        self.recorded.append(
            Recorded(
                request.method,
                request.url.path,
                request.url.query,
                dict(request.headers),
                body,
                protocol,
                op.name,
                dict(params),
            )
        )

    # --- admin -----------------------------------------------------------------------------

    async def _hello(self, request: Request) -> Response:
        return PlainTextResponse("hello")

    async def _faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.faults.clear()
        elif request.method == "POST":
            try:
                data = await request.json()
                rule = Fault.from_dict(data)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
            return JSONResponse(self.faults.insert(rule).to_dict(), 201)
        return JSONResponse([rule.to_dict() for rule in self.faults.rules()])

    async def _advance(self, request: Request) -> Response:
        data = await _json(request)
        given = data.get("seconds", 0)
        # bool is an int to Python, never a number of seconds; NaN and infinities break the clock,
        # and JSON's integers have no bound (float() refuses one past floats).
        seconds: float | None = None
        if isinstance(given, int | float) and not isinstance(given, bool):
            with contextlib.suppress(OverflowError):
                seconds = float(given)
        if seconds is None or not math.isfinite(seconds) or seconds < 0:
            return JSONResponse({"error": "seconds must be a number ≥ 0"}, 400)
        try:
            changed = self.service.advance(seconds)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse({"now": self.service.clock.now().isoformat(), "changed": changed})

    async def _incoming(self, request: Request) -> Response:
        data = await _json(request)
        # As Emulator.inject_incoming: the subscriber sent it the moment it arrived, so the
        # SentDate column of GetClientCommingSMSNotDividePage is never empty.
        now = self.service.clock.now()
        try:
            new_id = self.service.store.add_incoming(
                str(data["client_no"]),
                phone=str(data["phone"]),
                message=str(data["message"]),
                service_type_id=int(data.get("service_type_id", 1)),
                service_type_name=str(data.get("service_type_name", "8022(FIBO)")),
                status=IncomingStatus(int(data.get("status", 0))),
                created=now,
                sent=now,
            )
        except (KeyError, ValueError, TypeError, OverflowError) as exc:
            return JSONResponse({"error": f"bad incoming SMS: {exc}"}, 400)
        return JSONResponse({"id": new_id}, 201)

    async def _messages(self, request: Request) -> Response:
        guid = request.query_params.get("guid")
        client_no = request.query_params.get("client_no")
        # The state at the emulator's now, as GetSMSStatus would answer it.
        self.service.store.advance(self.service.clock.now())
        rows = self.service.store.outgoing(client_no=client_no, guid=guid)
        return JSONResponse([_jsonable(row) for row in rows])

    async def _balance(self, request: Request) -> Response:
        data = await _json(request)
        try:
            self.service.store.set_balance(
                str(data["client_no"]), int(data["service_type"]), int(data["balance"])
            )
        except (KeyError, ValueError, TypeError, OverflowError) as exc:
            return JSONResponse({"error": f"cannot set balance: {exc}"}, 400)
        return JSONResponse({"ok": True})


class _Group:
    """Calls that share one store transaction: run and committed together by one loop callback."""

    __slots__ = ("calls", "closed", "loop", "thread")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = threading.get_ident()
        self.closed = False
        self.calls: list[
            tuple[Operation, Mapping[str, str | None], str, asyncio.Future[str | int]]
        ] = []


class _Endpoint:
    """A handler as a bare ASGI app under the router: every route's, so that the hello route
    that the throughput benchmark compares with goes through the same dispatch as the ASMX ones.

    Starlette's request_response wrapper exists for exception handlers (HTTPException), which
    these handlers never raise, and it passes every message sent through one more coroutine.
    """

    __slots__ = ("_handler",)

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._handler(Request(scope, receive, send))
        await response(scope, receive, send)


def form_fields(text: str) -> dict[str, str]:
    """The fields of a query string or form body as ASP.NET's NameValueCollection holds them:
    names whatever their case are one name (kept as first spelt), and the values of a name given
    more than once are joined with commas (``to=a&TO=b`` is ``to: "a,b"``).

    The pairs are what ``parse_qsl(text, keep_blank_values=True, errors="strict")`` reads (the
    tests compare the two), without its per-field calls for the plain fields a client sends: a
    field without ``+`` or ``%`` is taken as it is. UnicodeDecodeError for bad UTF-8 after ``%``.
    """
    fields: dict[str, str] = {}
    spelt: dict[str, str] = {}  # each name in lower case → as first spelt
    repeated: dict[str, list[str]] = {}  # the values of a name given more than once
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "+" in name or "%" in name:
            name = unquote(name.replace("+", " "), errors="strict")
        if "+" in value or "%" in value:
            value = unquote(value.replace("+", " "), errors="strict")
        name = spelt.setdefault(name.lower(), name)
        if name in fields:
            # Gathered, and joined once at the end: joining as they come copies the growing
            # text again for each repeat, and a form of 4 MB repeats a name a million times.
            repeated.setdefault(name, [fields[name]]).append(value)
        fields[name] = value
    for name, values in repeated.items():
        fields[name] = ",".join(values)
    return fields


class _Answer(Response):
    """A method's answer (200): the two headers Response writes, without init_headers' checks of
    headers that are not there."""

    def __init__(self, body: bytes, protocol: str) -> None:
        media_type = SOAP12 if protocol == "soap12" else XML
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", media_type.encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A kept answer is sent to every call that has it: each gets its own list of headers,
        # which a middleware may edit in place (Starlette's GZipMiddleware does).
        headers = list(self.raw_headers)
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class _Truncated(Response):
    """An answer that declares its full length, sends half, and drops the connection."""

    def __init__(self, whole: Response, request: Request) -> None:
        super().__init__(whole.body, media_type=whole.media_type)
        self._request = request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send(
            {
                "type": "http.response.body",
                "body": self.body[: len(self.body) // 2],
                "more_body": True,
            }
        )
        await _abort(self._request)


class _Dropped(Response):
    """No answer at all: the connection is closed under the client."""

    def __init__(self, request: Request) -> None:
        super().__init__()
        self._request = request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _abort(self._request)


def _drop(request: Request) -> Response:
    return _Dropped(request)


async def _abort(request: Request) -> None:
    held = request.scope.get("extensions", {}).get(_CYCLE_KEY)
    cycle: Any = None if held is None else held()
    if getattr(cycle, "transport", None) is None:
        raise ConnectionAbortedError("the server cannot drop this connection")
    cycle.transport.abort()
    # Returning with the cycle not marked dropped makes uvicorn take the drop for an app that
    # forgot to answer: it logs an ERROR and writes a 500 of its own to the dead socket. The lost
    # connection marks only uvicorn's newest cycle, another request's when the client pipelined
    # one behind this: this one is marked here, and the loop turns once for the rest.
    cycle.disconnected = True
    await asyncio.sleep(0)


def _query(request: Request) -> bytes:
    """The query string as it came: bytes a server may pass undecoded (h11 passes any byte)."""
    return bytes(request.scope.get("query_string", b""))


def _post_headers(scope: Scope) -> tuple[str, str, str]:
    """Content-Length, Content-Type and SOAPAction, each as ``request.headers.get(name, "")``
    gives it (the first of its name, as Latin-1), found in one pass over the headers.

    Servers hand header names lowercased, as Headers also expects them. Every SOAP call reads
    these three: one pass costs a fifth of making a Headers and looking each name up in it.
    """
    length = media = action = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            if media is None:
                media = value
        elif name == b"soapaction":
            if action is None:
                action = value
        elif name == b"content-length" and length is None:
            length = value
    return (
        "" if length is None else length.decode("latin-1"),
        "" if media is None else media.decode("latin-1"),
        "" if action is None else action.decode("latin-1"),
    )


async def _body(request: Request, declared: str) -> bytes | None:
    """The request body, None past MAX_REQUEST_BYTES (``declared``: its Content-Length)."""
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        return None
    # Read from receive directly: request.stream() is an async generator around the same loop.
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            return None
        if not message.get("more_body", False):
            # The usual request has its whole body in one message: no join.
            return b"".join((*chunks, chunk)) if chunks else chunk
        chunks.append(chunk)


async def _json(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _soap_action(version: Literal["1.1", "1.2"], soap_action: str, content_type: str) -> str:
    if version == "1.1":
        return soap_action.strip().strip('"')
    for part in content_type.split(";"):
        name, _, value = part.strip().partition("=")
        if name.lower() == "action":
            return value.strip('"')
    return ""


def _fault(version: codec.SoapVersion, code: Literal["Client", "Server"], reason: str) -> Response:
    media = XML if version == "1.1" else SOAP12
    return Response(codec.encode_soap_fault(version, code, reason), 500, media_type=media)


def _method_failed(protocol: str, exc: Exception) -> Response:
    """The answer ASMX gives when the method throws: a soap:Server fault, or HTTP 500 text."""
    if protocol in ("soap11", "soap12"):
        return _fault(
            "1.2" if protocol == "soap12" else "1.1",
            "Server",
            f"Server was unable to process request. ---> {type(exc).__name__}",
        )
    return _asmx_error(f"System.Exception: {type(exc).__name__}")


def _answer_body(op: Operation, value: str | int, protocol: str, namespace: str) -> bytes:
    if protocol == "soap11":
        return codec.encode_soap_response(op, value, version="1.1", namespace=namespace)
    if protocol == "soap12":
        return codec.encode_soap_response(op, value, version="1.2", namespace=namespace)
    return codec.encode_http_body(op, value, namespace)


#: Answers up to this many characters are written once and kept (see _kept_answer).
_KEPT_ANSWER_CHARS = 512


@functools.lru_cache(maxsize=256)
def _kept_answer(method: str, value: str | int, protocol: str, namespace: str) -> _Answer:
    # Every send answers with one of a handful of status documents: each is written once, and its
    # response made once, then sent to every call that has that answer (sending a Response reads
    # it, never changes it). Long results (lists) are seldom asked twice.
    return _Answer(_answer_body(OPERATIONS[method], value, protocol, namespace), protocol)


def _dangerous(value: str) -> bool:
    return _DANGEROUS.search(value) is not None


def _asmx_error(text: str) -> Response:
    return PlainTextResponse(text, 500, media_type="text/plain")


def _help_page() -> bytes:
    items = "".join(
        f'<li><a href="Service.asmx?op={name}">{html.escape(name)}</a></li>' for name in OPERATIONS
    )
    page = (
        "<html><head><title>Service Web Service</title></head><body>"
        "<h1>Service</h1><p>The following operations are supported. For a formal definition, "
        'please review the <a href="Service.asmx?WSDL">Service Description</a>.</p>'
        f"<ul>{items}</ul></body></html>"
    )
    return page.encode("utf-8")


def _jsonable(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in row.__dataclass_fields__:
        value = getattr(row, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out
