"""Bytes over HTTP for AsyncFiboClient: the mirror of ``transport.HttpTransport`` on asyncio.

Each connection is an asyncio protocol whose answers are read by httptools (llhttp, the C parser
uvicorn uses), over a small keep-alive pool per origin, as HttpTransport keeps one over
http.client: a request goes out in one write, and one deadline bounds the whole answer, head
included. The same timeouts, the same response bound, the same reading of proxies (once, from
the environment, as urllib does) and the same translation of failures into the exception tree,
through the helpers ``transport.py`` shares. Importing this module imports httptools (an
AsyncFiboClient does when it is made; FiboClient never does).

Nothing here writes a log record: there is no request line or trace in which a GET's password
could show.
"""

from __future__ import annotations

import asyncio
import builtins
import re
import ssl
import time
import urllib.request
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar, cast, overload

try:
    import httptools
except ImportError as missing:  # pragma: no cover - httptools is in the dev set and the async extra
    raise ImportError(
        "AsyncFiboClient needs httptools: pip install 'fibo-soap[async]' (or httptools)"
    ) from missing

from fibo_soap.errors import ConnectError, FiboError, ProtocolError, TimeoutError
from fibo_soap.protocols.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    BoundedBody,
    Response,
    Route,
    broken_error,
    connect_error,
    failure_reason,
    inflater,
    route_for,
    take_encoded,
    time_left,
    timeout_error,
)

#: What http.client allows an answer's head: 64 KB (its longest line) and 100 header lines.
_MAX_HEAD = 65536
_MAX_HEADERS = 100

#: A request-target or header value that would split or end the request head (http.client
#: refuses the same: control characters and spaces in the target, line breaks in a value).
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]").search
_BAD_VALUE = re.compile(r"[\x00\r\n]").search
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch

_T = TypeVar("_T")


class AsyncHttpTransport:
    """Pooled keep-alive HTTP (asyncio and llhttp) with connect and read timeouts on every request.

    Proxies are read from the environment once, here, not on every call, and a host the
    environment exempts (``no_proxy``) is reached directly, as ``HttpTransport`` does.
    ``pool_size`` is the number of idle connections kept per origin: as many as tasks that share
    the client (more may be open at once; the extra ones are closed after use).

    Connections belong to the event loop that opened them; ``aclose`` closes the idle ones, and a
    request after that opens new ones, as ``HttpTransport`` reconnects after ``close``.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_response_bytes: int,
        pool_size: int = 10,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self.max_response_bytes = max_response_bytes
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        #: The longest one request can take: connect and read timeouts together.
        self.longest = connect_timeout + read_timeout
        found = urllib.request.getproxies() if proxies is None else proxies
        self._proxies = {k: v for k, v in found.items() if k in ("http", "https") and v}
        self._pool_size = pool_size
        self._origins: dict[Route, _Origin] = {}
        self._idle: dict[tuple[object, ...], list[_Connection]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Bumped by aclose: a connection of an earlier generation is not taken back.
        self._generation = 0
        self._tls: ssl.SSLContext | None = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """The answer to one request; raises ConnectError, TimeoutError or TransportError."""
        left = time_left(self.longest)
        # Always bounded as a whole: the read timeout bounds each wait for bytes, so a server
        # that drips its status line and headers a byte at a time would otherwise hold the call.
        seconds = self.longest if left is None else left
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        base, mark, query = url.partition("?")
        route = route_for(base, self._proxies.get(base.partition(":")[0].lower()))
        origin = self._origins.get(route) or self._origin(route)
        data = _request_bytes(origin, route, method, route.target + mark + query, body, headers)
        stop = loop.time() + seconds
        connection = self._idle_connection(origin.idle)
        reused = connection is not None
        if connection is None:
            connection = await self._connect(loop, route, stop)
        waiter = connection.exchange(
            data,
            limit=self.max_response_bytes,
            stop=stop,
            read_timeout=self._read_timeout,
            seconds=seconds,
            deadline=left is not None,
            reused=reused,
        )
        try:
            await waiter
        except asyncio.CancelledError:
            connection.abort()
            raise
        error = connection.error
        if error is not None:
            connection.abort()
            raise error
        response = connection.response()
        if connection.reusable() and connection.generation == self._generation:
            if len(origin.idle) < self._pool_size:
                origin.idle.append(connection)
            else:
                connection.close()
        else:
            connection.close()
        return response

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` from now on: connections of another loop cannot be awaited in it."""
        if self._loop is not None and not self._loop.is_closed():
            self._close_idle()
        self._idle.clear()
        self._origins.clear()
        self._loop = loop

    def _origin(self, route: Route) -> _Origin:
        key = route.origin
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = []
        if len(self._origins) > 256:  # route_for makes a new route once its cache forgets one
            self._origins.clear()
        origin = self._origins[route] = _Origin(route, idle)
        return origin

    @staticmethod
    def _idle_connection(idle: list[_Connection]) -> _Connection | None:
        """A kept-alive connection the server has not closed (the loop has told its protocol),
        or None."""
        while idle:
            connection = idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, route: Route, stop: float
    ) -> _Connection:
        seconds = min(self._connect_timeout, max(stop - loop.time(), 0.001))
        connection = _Connection(loop, self._generation)
        # Raised after the except blocks: raised inside one, the error would keep the socket's
        # exception as its __context__.
        error: ConnectError
        try:
            async with asyncio.timeout(seconds):
                await self._open(loop, route, connection)
        except asyncio.CancelledError:
            connection.abort()
            raise
        except builtins.TimeoutError:
            error = connect_error(f"no connection within {seconds:g} s")
        except ConnectError as exc:
            error = exc
        except OSError as exc:  # refused, unreachable, unknown host, TLS handshake (ssl.SSLError)
            error = connect_error(failure_reason(exc))
        else:
            return connection
        connection.abort()
        raise error

    async def _open(
        self, loop: asyncio.AbstractEventLoop, route: Route, connection: _Connection
    ) -> None:
        host, port = route.connect_to
        if route.tunnel is None:
            tls = self._tls_context() if route.tls else None
            await loop.create_connection(
                lambda: connection, host, port, ssl=tls, server_hostname=route.host if tls else None
            )
            return
        # CONNECT through the proxy, then TLS to the origin inside the tunnel.
        await loop.create_connection(lambda: connection, host, port)
        authority = f"{_bracketed(route.host)}:{route.port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        lines += [f"{name}: {value}" for name, value in route.tunnel.items()]
        await connection.tunnel(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        transport = await loop.start_tls(
            connection.wire(), connection, self._tls_context(), server_hostname=route.host
        )
        if transport is None:  # pragma: no cover - only when the loop cannot do TLS at all
            raise connect_error("the event loop cannot start TLS")
        connection.connection_made(transport)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def _close_idle(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()

    async def aclose(self) -> None:
        """Close every pooled connection (one in use is closed when its request ends)."""
        self._generation += 1
        if self._loop is not None and not self._loop.is_closed():
            self._close_idle()


class _Origin:
    """What every request of one route shares: the Host header, and the idle connections of its
    origin (the same list for every route to it)."""

    __slots__ = ("host", "idle")

    def __init__(self, route: Route, idle: list[_Connection]) -> None:
        host = route.host if route.host.isascii() else route.host.encode("idna").decode("ascii")
        default = 443 if route.tls else 80
        self.host = _bracketed(host) + ("" if route.port == default else f":{route.port}")
        self.idle = idle


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _request_bytes(
    origin: _Origin,
    route: Route,
    method: str,
    target: str,
    body: bytes | None,
    headers: Mapping[str, str] | None,
) -> bytes:
    """The request's head and body, as http.client writes them (Host, Accept-Encoding: identity
    and Content-Length unless given; the route's headers, then the caller's).

    ProtocolError, before anything is sent, for what cannot go in a request head.
    """
    fields = {**route.headers, **headers} if headers else route.headers
    names = {name.lower() for name in fields}
    if not _TOKEN(method) or not target.isascii() or _BAD_TARGET(target):
        raise ProtocolError(f"cannot send this request: {method} to a malformed URL")
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {origin.host}")
    if "accept-encoding" not in names:
        lines.append("Accept-Encoding: identity")
    if "content-length" not in names and (body is not None or method in ("POST", "PUT", "PATCH")):
        lines.append(f"Content-Length: {len(body) if body is not None else 0}")
    for name, value in fields.items():
        if not _TOKEN(name) or _BAD_VALUE(value):
            raise ProtocolError(f"cannot send this request: invalid header {name[:40]!r}")
        lines.append(f"{name}: {value}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        head = b""
    if not head:
        raise ProtocolError("cannot send this request: a header value is not Latin-1")
    return head + body if body else head


class _Headers(Mapping[str, str]):
    """An answer's header fields by name in any case; a field sent more than once has its values
    joined by ', '."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, /, default: str | _T) -> str | _T: ...
    def get(self, name: str, /, default: Any = None) -> Any:
        return self._fields.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


class _Stop(Exception):
    """Raised inside a parser callback to stop reading: bytes after the answer."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: an asyncio protocol whose answers llhttp reads, one request at
    a time.

    ``exchange`` writes a request and gives a future that is done when the answer is whole or
    has failed (``error``). A timer bounds each wait for bytes by the read timeout and the whole
    answer by its stop time. Every failure closes the connection.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, generation: int) -> None:
        self.loop = loop
        self.generation = generation
        self.error: FiboError | None = None
        self._transport: asyncio.Transport | None = None
        self._lost = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: The answer to CONNECT as it arrives, while a tunnel is being opened.
        self._tunnel: bytearray | None = None
        # The exchange in progress.
        self._limit = 0
        self._stop = 0.0
        self._stop_clock = 0.0
        self._read_timeout = DEFAULT_READ_TIMEOUT
        self._seconds = 0.0
        self._deadline = False
        self._reused = False
        self._last = 0.0
        self._got = False
        #: The head's bytes: as the header lines came, and as received before its end.
        self._head_size = 0
        self._head_received = 0
        self._count = 0
        self._fields: dict[str, str] = {}
        self._status = 0
        self._headers_done = False
        self._until_eof = False
        self._chunks: list[bytes] = []
        self._body: BoundedBody | None = None
        self._inflate: Any = None
        self._complete = False
        self._keep = False

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for: this connection cannot carry another request.
            self.close()
            return
        self._last = self.loop.time()
        self._got = True
        if self._tunnel is not None:
            self._tunnel_answer(data)
            return
        failure: FiboError | None = None
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self._complete:  # bytes after the answer: a second one, or after Connection: close
                self._keep = False
            else:
                failure = broken_error(failure_reason(exc), reading=self._headers_done)
        if failure is not None:
            self._fail(failure)
            return
        self._advance(len(data))

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost decides what the end means

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._tunnel is not None:
            self._fail(connect_error("the proxy closed the connection during CONNECT"))
        elif self._headers_done and self._until_eof and exc is None and self._body is not None:
            # An answer without a length ends where the connection does.
            self._keep = False
            self._complete = True
            self._advance(0)
        elif exc is not None:
            self._fail(broken_error(failure_reason(exc), reading=self._got))
        elif not self._got:
            self._fail(
                broken_error(
                    "the server closed a kept-alive connection without answering"
                    if self._reused
                    else "the server closed the connection without answering"
                )
            )
        else:
            self._fail(broken_error("the connection ended before the answer did", reading=True))

    # --- llhttp's callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            raise _Stop  # a second answer to one request

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count += 1
        self._head_size += len(name) + len(value) + 4
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        known = self._fields.get(key)
        self._fields[key] = text if known is None else f"{known}, {text}"

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._status = self._parser.get_status_code()
        fields = self._fields
        self._until_eof = "content-length" not in fields and not fields.get(
            "transfer-encoding", ""
        ).lower().endswith("chunked")

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._status < 200:  # 100 Continue and the like: the answer is still to come
            self._fields = {}
            self._count = self._head_size = self._head_received = 0
            self._headers_done = False
            return
        self._complete = True
        self._keep = self._parser.should_keep_alive()

    # --- the exchange ----------------------------------------------------------------------------

    def exchange(
        self,
        data: bytes,
        *,
        limit: int,
        stop: float,
        read_timeout: float,
        seconds: float,
        deadline: bool,
        reused: bool,
    ) -> asyncio.Future[None]:
        """Nothing: the request is written; the future is done when its answer is whole or has
        failed. ``stop`` is a ``loop.time()``, ``seconds`` after the request began; ``deadline``:
        whether it is the call's deadline rather than connect and read timeouts together."""
        assert self._transport is not None
        loop = self.loop
        now = loop.time()
        self._limit = limit
        self._stop = stop
        self._stop_clock = time.perf_counter() + (stop - now)
        self._read_timeout = read_timeout
        self._seconds = seconds
        self._deadline = deadline
        self._reused = reused
        self._last = now
        self._got = self._headers_done = self._complete = self._keep = False
        self._head_size = self._head_received = self._count = 0
        self._fields = {}
        self._chunks = []
        self._body = self._inflate = None
        waiter = self._waiter = loop.create_future()
        if self._lost or self._transport.is_closing():
            # Closed by the server between its connect and this request: nothing is sent.
            self.error = connect_error("the server closed the connection before the request")
            waiter.set_result(None)
            return waiter
        self._transport.write(data)
        self._timer = loop.call_at(min(now + read_timeout, stop), self._check_time)
        return waiter

    def response(self) -> Response:
        """The answer the finished exchange read."""
        assert self._body is not None
        return Response(self._status, _Headers(self._fields), self._body.content())

    def _advance(self, received: int) -> None:
        """Take what the parser has read: the head's size, the body within the bound."""
        if not self._headers_done:
            self._head_received += received
            if self._head_received > _MAX_HEAD:
                self._fail(broken_error(f"the answer's head exceeds {_MAX_HEAD} bytes"))
            return
        failure: FiboError | None = None
        try:
            if self._body is None:
                if self._head_size > _MAX_HEAD:
                    raise broken_error(f"the answer's head exceeds {_MAX_HEAD} bytes")
                if self._count > _MAX_HEADERS:
                    raise broken_error(f"the answer has more than {_MAX_HEADERS} header lines")
                headers = _Headers(self._fields)
                self._body = BoundedBody(self._status, headers, self._limit, self._stop_clock)
                self._inflate = inflater(self._fields.get("content-encoding", ""), self._status)
            if self._chunks:
                chunks, self._chunks = self._chunks, []
                for chunk in chunks:
                    take_encoded(self._body, self._inflate, chunk)
            if self._complete and self._inflate is not None:
                self._body.add(self._inflate.flush())
        except FiboError as exc:
            failure = exc
        except zlib.error as exc:
            failure = broken_error(f"undecodable {self._fields.get('content-encoding')}: {exc}")
        if failure is not None:
            self._fail(failure)
        elif self._complete:
            self._finish()

    def _check_time(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        now = self.loop.time()
        if now >= self._stop:
            self._fail(
                TimeoutError(
                    "the call's deadline passed during the request"
                    if self._deadline
                    else f"no whole answer within {self._seconds:g} s "
                    "(connect and read timeouts together)"
                )
            )
        elif now >= self._last + self._read_timeout:
            self._fail(timeout_error(reading=self._got))
        else:
            self._timer = self.loop.call_at(
                min(self._last + self._read_timeout, self._stop), self._check_time
            )

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: FiboError) -> None:
        self.error = error
        self._finish()
        self.abort()

    # --- CONNECT ---------------------------------------------------------------------------------

    async def tunnel(self, request: bytes) -> None:
        """Nothing, once the proxy has answered CONNECT with a success; ConnectError otherwise.
        (Bounded by the caller's timeout.)"""
        assert self._transport is not None
        self._tunnel = bytearray()
        waiter = self._waiter = self.loop.create_future()
        self._transport.write(request)
        try:
            await waiter
        except asyncio.CancelledError:
            self.abort()
            raise
        self._tunnel = None
        if self.error is not None:
            raise self.error

    def _tunnel_answer(self, data: bytes) -> None:
        assert self._tunnel is not None
        self._tunnel += data
        head, found, rest = bytes(self._tunnel).partition(b"\r\n\r\n")
        if not found:
            if len(self._tunnel) > _MAX_HEAD:
                self._fail(connect_error("the proxy's answer to CONNECT is too long"))
            return
        parts = head.split(b"\r\n", 1)[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            self._fail(connect_error("the proxy's answer to CONNECT is not HTTP"))
        elif not 200 <= int(parts[1]) < 300:
            # The code only: the reason phrase is the proxy's to write.
            self._fail(connect_error(f"the proxy refused the tunnel (HTTP {int(parts[1])})"))
        elif rest:
            self._fail(connect_error("the proxy sent bytes before the tunnel's TLS handshake"))
        else:
            self._finish()

    def wire(self) -> asyncio.Transport:
        """The transport the connection runs over (for ``loop.start_tls``)."""
        assert self._transport is not None
        return self._transport

    # --- the connection's state ------------------------------------------------------------------

    def usable(self) -> bool:
        """Whether an idle connection may carry a request: the server has not closed it."""
        transport = self._transport
        return not self._lost and transport is not None and not transport.is_closing()

    def reusable(self) -> bool:
        """Whether the connection may carry another request after the answer just read."""
        return self._keep and self.usable()

    def close(self) -> None:
        """Close the connection (what is buffered is still written)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
        self._lost = True

    def abort(self) -> None:
        """Close the connection at once."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.abort()
        self._lost = True
