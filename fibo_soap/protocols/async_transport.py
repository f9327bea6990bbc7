"""Bytes over HTTP for AsyncFiboClient: the mirror of ``transport.HttpTransport`` on asyncio.

Each connection is an asyncio protocol whose answers are read by ``transport.Answer`` (httptools,
llhttp), over a small keep-alive pool per origin, as HttpTransport keeps one: a request goes out
in one write (``transport.request_bytes``), and one deadline bounds the whole answer, head
included. The same timeouts, the same response bound, the same reading of proxies (once, from
the environment, as urllib does) and the same translation of failures into the exception tree,
through what ``transport.py`` shares.

Nothing here writes a log record: there is no request line or trace in which a GET's password
could show.
"""

from __future__ import annotations

import asyncio
import builtins
import ssl
import time
import urllib.request
from collections.abc import Mapping
from typing import cast

from fibo_soap.errors import ConnectError, FiboError, TimeoutError
from fibo_soap.protocols.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    MAX_HEAD,
    Answer,
    Response,
    Route,
    bracketed,
    broken_error,
    connect_error,
    failure_reason,
    request_bytes,
    route_for,
    time_left,
    timeout_error,
)


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
        data = request_bytes(route, method, route.target + mark + query, body, headers)
        stop = loop.time() + seconds
        idle = self._idle.get(route.origin)
        if idle is None:
            idle = self._idle[route.origin] = []
        connection = self._idle_connection(idle)
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
            if len(idle) < self._pool_size:
                idle.append(connection)
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
        self._loop = loop

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
        authority = f"{bracketed(route.host)}:{route.port}"
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


class _Connection(asyncio.Protocol):
    """One keep-alive connection: an asyncio protocol whose answers ``Answer`` reads, one request
    at a time.

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
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: The answer to CONNECT as it arrives, while a tunnel is being opened.
        self._tunnel: bytearray | None = None
        # The exchange in progress.
        self._answer: Answer | None = None
        self._stop = 0.0
        self._read_timeout = DEFAULT_READ_TIMEOUT
        self._seconds = 0.0
        self._deadline = False
        self._reused = False
        self._last = 0.0

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
        if self._tunnel is not None:
            self._tunnel_answer(data)
            return
        answer = self._answer
        assert answer is not None
        try:
            answer.feed(data)
        except FiboError as failure:
            self._fail(failure)
            return
        if answer.complete:
            self._finish()

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost decides what the end means

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        answer = self._answer
        if self._tunnel is not None or answer is None:
            self._fail(connect_error("the proxy closed the connection during CONNECT"))
        elif exc is not None:
            self._fail(broken_error(failure_reason(exc), reading=answer.got))
        else:
            try:
                answer.ended(reused=self._reused)  # an answer without a length ends here
            except FiboError as failure:
                self._fail(failure)
                return
            self._finish()

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
        self._answer = Answer(limit, time.perf_counter() + (stop - now))
        self._stop = stop
        self._read_timeout = read_timeout
        self._seconds = seconds
        self._deadline = deadline
        self._reused = reused
        self._last = now
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
        assert self._answer is not None
        return self._answer.response()

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
            self._fail(timeout_error(reading=self._answer is not None and self._answer.got))
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
            if len(self._tunnel) > MAX_HEAD:
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
        return self._answer is not None and self._answer.keep and self.usable()

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
