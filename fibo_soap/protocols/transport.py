"""Bytes over HTTP: one pooled, bounded, timed connection manager shared by every protocol.

Both SOAP protocols and the ASMX GET/POST protocol send through this, so there is one place for
timeouts, proxies, the response size bound and the translation of network failures into the
exception tree (with the one fact retries need: was the request certainly not sent?).

``HttpTransport`` is the standard library's ``http.client`` (connecting, proxy tunnels, TLS, the
reading of status line, headers and chunked bodies) over a small keep-alive pool of its own: a
request goes out in one write, and one deadline bounds the whole answer, head included.
"""

from __future__ import annotations

import base64
import builtins
import http.client
import io
import select
import socket
import ssl
import threading
import time
import urllib.request
import zlib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from fibo_soap.errors import (
    ConnectError,
    FiboError,
    ProtocolError,
    ResponseTooLargeError,
    TimeoutError,
    TransportError,
)

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0

_CHUNK = 64 * 1024

#: The time.perf_counter() by which the current call must be over, or None. Set by resilience for
#: the length of one call (a context variable, so threads sharing a client do not share it): a
#: request made under it waits no longer than what is left, and one made after it is not sent.
call_deadline: ContextVar[float | None] = ContextVar("fibo_call_deadline", default=None)


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer, read whole (within the size bound)."""

    status: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower case ('' when absent)."""
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()


# --- what every transport shares (this one over http.client, AsyncHttpTransport on asyncio) ----


def time_left(longest: float) -> float | None:
    """The seconds a request may take under the call's deadline (``call_deadline``) when they are
    fewer than ``longest``, the most it takes anyway; None when the deadline is further or unset.

    TimeoutError (nothing sent) when the deadline has passed.
    """
    deadline = call_deadline.get()
    if deadline is None:
        return None
    left = deadline - time.perf_counter()
    if left <= 0:
        raise TimeoutError("the call's deadline passed before this request", request_sent=False)
    return left if left < longest else None


def connect_error(reason: str) -> ConnectError:
    """The connection could not be made (refused, timed out, proxy refused): nothing was sent."""
    return ConnectError(f"cannot connect: {reason}")


def timeout_error(*, reading: bool = False) -> TimeoutError:
    """No answer, or no more of it, within the read timeout."""
    if reading:
        return TimeoutError("the answer stopped arriving within the read timeout")
    return TimeoutError("no answer within the read timeout")


def broken_error(reason: str, *, reading: bool = False) -> TransportError:
    """The connection failed after the request may have gone out."""
    return TransportError(f"connection failed{' while reading' if reading else ''}: {reason}")


class BoundedBody:
    """An answer's bytes as they arrive, within the size bound and the time it has.

    ResponseTooLargeError once more than ``limit`` bytes are declared or received (decoded bytes:
    gzip counts as what it unpacks to); TimeoutError when the answer is not whole by ``stop`` (a
    ``time.perf_counter()``): the read timeout bounds each wait for bytes, so a server that drips a
    byte at a time could otherwise hold a call forever.
    """

    __slots__ = ("_chunks", "_limit", "_size", "_status", "_stop")

    def __init__(self, status: int, headers: Mapping[str, str], limit: int, stop: float) -> None:
        declared = headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLargeError(
                f"answer of {declared} bytes exceeds the bound of {limit} bytes", status=status
            )
        self._status = status
        self._limit = limit
        self._stop = stop
        self._size = 0
        self._chunks: list[bytes] = []

    def add(self, chunk: bytes) -> None:
        """Take the next piece of the answer."""
        self._size += len(chunk)
        if self._size > self._limit:
            raise ResponseTooLargeError(
                f"answer exceeds the bound of {self._limit} bytes", status=self._status
            )
        self._chunks.append(chunk)
        if time.perf_counter() > self._stop:
            raise TimeoutError(
                "the answer did not arrive whole within the call's time "
                f"({self._size} bytes so far)"
            )

    def room(self) -> int:
        """How many more bytes may come before the bound is passed (and one more, to pass it)."""
        return max(1, self._limit - self._size + 1)

    def content(self) -> bytes:
        """The answer's bytes."""
        return b"".join(self._chunks)


class HttpTransport:
    """Pooled keep-alive HTTP with connect and read timeouts on every request.

    Proxies are read from the environment once, here, not on every call. ``pool_size`` is the
    number of idle connections kept per host: as many as threads that share the client (more may
    be open at once; the extra ones are closed after use).

    Connections are ``http.client``'s, looked up when one is opened: a recorder that patches
    http.client (vcrpy, for cassettes) sees every request.
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
        self._proxies = dict(urllib.request.getproxies() if proxies is None else proxies)
        self._pool_size = pool_size
        self._idle: dict[tuple[Any, ...], list[http.client.HTTPConnection]] = {}
        self._tls: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """The answer to one request; raises ConnectError, TimeoutError or TransportError."""
        left = time_left(self.longest)
        stop = time.perf_counter() + (self.longest if left is None else left)
        base, mark, query = url.partition("?")
        route = route_for(base, self._proxies.get(base.partition(":")[0].lower()))
        connection, reused = self._connection(route, stop)
        if headers:
            headers = {**route.headers, **headers}
        # Errors are raised after the except blocks: raised inside one, they would keep the
        # socket's or http.client's exception as their __context__.
        error: FiboError
        try:
            if isinstance(connection, _Deadline):
                connection.until(stop, self._read_timeout)
            connection.request(method, route.target + mark + query, body, headers or route.headers)
            answer = connection.getresponse()
            content = self._read(answer, stop)
        except FiboError:
            connection.close()
            raise
        except (http.client.InvalidURL, ValueError):
            # http.client's refusal of a URL or header value, before anything is sent. Its text
            # quotes the URL (a GET's password with it), so it is not kept.
            error = ProtocolError(
                "cannot send this request: its URL or a header holds a character HTTP forbids"
            )
        except builtins.TimeoutError:
            error = timeout_error()
        except http.client.RemoteDisconnected:
            error = broken_error(
                "the server closed a kept-alive connection without answering"
                if reused
                else "the server closed the connection without answering"
            )
        except (http.client.HTTPException, OSError) as exc:
            error = broken_error(failure_reason(exc))
        else:
            # A recorder's replayed answer has no will_close: its connection is not kept.
            if getattr(answer, "will_close", True):
                connection.close()
            else:
                self._release(route, connection)
            return Response(answer.status, cast("Mapping[str, str]", answer.headers), content)
        connection.close()
        raise error

    def _read(self, answer: http.client.HTTPResponse, stop: float) -> bytes:
        headers = cast("Mapping[str, str]", answer.headers)
        body = BoundedBody(answer.status, headers, self.max_response_bytes, stop)
        inflate = inflater(headers.get("Content-Encoding", ""), answer.status)
        error: FiboError  # raised after the except blocks, as in request()
        try:
            if inflate is None and isinstance(answer.length, int) and not answer.chunked:
                # A declared length (within the bound: BoundedBody checked it) is read into one
                # buffer, not pieces to join: a large list is held once, not twice. Each read
                # of the socket still waits no longer than the time left (_Wire).
                body.add(answer.read())
            # Otherwise read1: whatever one read of the socket gives, so that the size is
            # checked as it grows.
            while chunk := answer.read1(_CHUNK):
                take_encoded(body, inflate, chunk)
            # read1 ends quietly where the server closed short of the length. (A recorder's
            # replayed answer keeps the header's text there, and is whole.)
            if isinstance(answer.length, int) and answer.length > 0:
                raise http.client.IncompleteRead(b"", answer.length)
            if inflate is not None:
                body.add(inflate.flush())
        except FiboError:
            raise
        except zlib.error as exc:
            error = broken_error(f"undecodable {headers.get('Content-Encoding')}: {exc}")
        except builtins.TimeoutError:
            error = timeout_error(reading=True)
        except (http.client.HTTPException, OSError) as exc:
            error = broken_error(failure_reason(exc), reading=True)
        else:
            answer.close()  # read whole: the connection may take the next request
            return body.content()
        raise error

    def _connection(self, route: Route, stop: float) -> tuple[http.client.HTTPConnection, bool]:
        """A kept-alive connection to the route's host (one the server has not closed), or a
        new one; and whether it was kept alive."""
        idle = self._idle.get(route.origin)
        while idle:
            try:
                connection = idle.pop()
            except IndexError:  # another thread took the last one
                break
            if _alive(connection):
                return connection, True
            connection.close()
        return self._connect(route, stop), False

    def _connect(self, route: Route, stop: float) -> http.client.HTTPConnection:
        seconds = min(self._connect_timeout, max(stop - time.perf_counter(), 0.001))
        host, port = route.connect_to
        connection: http.client.HTTPConnection
        if route.tls:
            connection = _connection_class(tls=True)(  # type: ignore[call-arg]
                host, port, timeout=seconds, context=self._tls_context()
            )
        else:
            connection = _connection_class(tls=False)(host, port, timeout=seconds)
        if isinstance(connection, _Deadline):  # a proxy's answer to CONNECT is read by it too
            connection.until(stop, self._read_timeout)
        if route.tunnel is not None:
            connection.set_tunnel(route.host, route.port, headers=route.tunnel)
        error: ConnectError
        try:
            connection.connect()
        except (OSError, http.client.HTTPException) as exc:
            error = connect_error(failure_reason(exc))
        else:
            return connection
        connection.close()
        raise error

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            with self._lock:
                if self._tls is None:
                    self._tls = ssl.create_default_context()
        return self._tls

    def _release(self, route: Route, connection: http.client.HTTPConnection) -> None:
        idle = self._idle.get(route.origin)
        if idle is None:
            idle = self._idle.setdefault(route.origin, [])
        if len(idle) < self._pool_size:
            idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        """Close every pooled connection."""
        for idle in list(self._idle.values()):
            while idle:
                try:
                    idle.pop().close()
                except IndexError:
                    break


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """How requests for one origin go: straight, through a proxy, or tunnelled through one.

    Compared by identity: ``_route`` makes one per URL and proxy.
    """

    host: str
    port: int
    tls: bool
    #: Where the socket connects: the origin, or the proxy.
    connect_to: tuple[str, int]
    #: The request-target before the query: the path, or the whole URL when a proxy forwards it.
    target: str
    #: The headers every request of the route has.
    headers: Mapping[str, str]
    #: The headers of the CONNECT that opens a tunnel through a proxy; None when there is none.
    tunnel: Mapping[str, str] | None = None

    @property
    def origin(self) -> tuple[tuple[str, int], bool, str, int]:
        """What a kept-alive connection serves: every route with the same origin (whatever its
        path) shares the connections of the pool."""
        return self.connect_to, self.tls, self.host, self.port


@lru_cache(maxsize=64)
def route_for(base: str, proxy: str | None) -> Route:
    """The route of a URL without its query (``base``), through ``proxy`` (the one set for its
    scheme) unless its host is exempt (``urllib.request.proxy_bypass``)."""
    parts = urlsplit(base)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ProtocolError(f"cannot send to {parts.scheme or 'a'} URL without an http(s) host")
    tls = scheme == "https"
    host = parts.hostname
    port = parts.port or (443 if tls else 80)
    headers = {"User-Agent": _USER_AGENT}
    path = parts.path or "/"
    if not proxy or urllib.request.proxy_bypass(host):
        return Route(host, port, tls, (host, port), path, headers)
    via = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not via.hostname:
        raise ProtocolError("the proxy setting names no host")
    proxy_to = (via.hostname, via.port or 80)
    credentials: dict[str, str] = {}
    if via.username is not None:
        token = f"{unquote(via.username)}:{unquote(via.password or '')}".encode()
        credentials["Proxy-Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
    if tls:
        # CONNECT through the proxy, then TLS to the origin inside the tunnel.
        return Route(host, port, tls, proxy_to, path, headers, credentials)
    authority = parts.netloc.rpartition("@")[2]
    target = f"http://{authority}{path}"
    return Route(host, port, tls, proxy_to, target, {**headers, **credentials})


_USER_AGENT = "fibo-soap"


class _Deadline(http.client.HTTPConnection):
    """http.client's connection, with two changes: a request's head and body go out in one
    write (two would cost a second packet, and a wake-up of the server, per call), and each read
    of the answer waits no longer than the read timeout nor past the request's stop time, so a
    server dripping its status line and headers a byte at a time cannot hold a call either."""

    _stop = 0.0
    _read_timeout = DEFAULT_READ_TIMEOUT
    _body: bytes | None = None

    def until(self, stop: float, read_timeout: float) -> None:
        """Nothing: the next request must be answered by ``stop`` (a ``time.perf_counter()``)."""
        self._stop = stop
        self._read_timeout = read_timeout
        if self.sock is not None:
            left = stop - time.perf_counter()
            self.sock.settimeout(left if left < read_timeout else read_timeout)

    def endheaders(self, message_body: Any = None, *, encode_chunked: bool = False) -> None:
        if isinstance(message_body, bytes) and not encode_chunked:
            self._body, message_body = message_body, None
        super().endheaders(message_body, encode_chunked=encode_chunked)

    def send(self, data: Any) -> None:
        body, self._body = self._body, None
        super().send(data + body if body else data)

    def response_class(  # type: ignore[override]
        self, sock: socket.socket, debuglevel: int = 0, method: str | None = None
    ) -> http.client.HTTPResponse:
        source = cast(socket.socket, _Source(sock, self._read_timeout, self._stop))
        return http.client.HTTPResponse(source, debuglevel, method=method)


class _TlsDeadline(_Deadline, http.client.HTTPSConnection):
    """``_Deadline`` over TLS."""


_PLAIN = http.client.HTTPConnection
_TLS = http.client.HTTPSConnection


def _connection_class(*, tls: bool) -> type[http.client.HTTPConnection]:
    """The connection class to open: ours, unless something (vcrpy recording or replaying a
    cassette) has put its own in http.client, which is then used as it is."""
    if tls:
        return _TlsDeadline if http.client.HTTPSConnection is _TLS else http.client.HTTPSConnection
    return _Deadline if http.client.HTTPConnection is _PLAIN else http.client.HTTPConnection


class _Source:
    """What http.client.HTTPResponse reads an answer from: the socket, each read waiting no
    longer than the read timeout nor past ``stop``."""

    __slots__ = ("_read_timeout", "_sock", "_stop")

    def __init__(self, sock: socket.socket, read_timeout: float, stop: float) -> None:
        self._sock = sock
        self._read_timeout = read_timeout
        self._stop = stop

    def makefile(self, mode: str) -> io.BufferedReader:
        # The socket's own raw file, which keeps the socket open while the answer is read even
        # after http.client closes the connection (an answer that ends the connection).
        raw = self._sock.makefile("rb", buffering=0)
        return io.BufferedReader(_Wire(self._sock, raw, self._read_timeout, self._stop), _CHUNK)


class _Wire(io.RawIOBase):
    def __init__(self, sock: socket.socket, raw: Any, read_timeout: float, stop: float) -> None:
        self._sock = sock
        self._raw = raw
        self._read_timeout = read_timeout
        self._stop = stop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._stop - time.perf_counter()
        if left <= 0:
            raise TimeoutError("the answer did not arrive whole within the call's time")
        self._sock.settimeout(left if left < self._read_timeout else self._read_timeout)
        return cast(int, self._raw.readinto(buffer))

    def close(self) -> None:
        self._raw.close()
        super().close()


def _alive(connection: http.client.HTTPConnection) -> bool:
    """Whether a kept-alive connection is still usable: nothing to read on it (a server that
    closed it makes it readable, with nothing but the end)."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        if _poll is not None:
            poller = _poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        return not select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):
        return False


_poll = getattr(select, "poll", None)


def inflater(coding: str, status: int) -> Any:
    """The zlib decompressor an answer's Content-Encoding calls for; None for identity.

    ProtocolError for an encoding the client cannot undo.
    """
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        # zlib-wrapped, as the standard says (raw deflate is also seen; it fails as undecodable).
        return zlib.decompressobj()
    raise ProtocolError(
        f"the answer is encoded as {coding!r}, which the client did not ask for", status=status
    )


def take_encoded(body: BoundedBody, inflate: Any, raw: bytes) -> None:
    """Add ``raw`` to ``body``, inflated by ``inflate`` (or as it is when None) one bounded step
    at a time: 64 KB of gzip can hold 64 MB, and no step makes more than the bound has room for."""
    if inflate is None:
        body.add(raw)
        return
    body.add(inflate.decompress(raw, body.room()))
    while inflate.unconsumed_tail:
        body.add(inflate.decompress(inflate.unconsumed_tail, body.room()))


def failure_reason(exc: BaseException) -> str:
    """What went wrong, for an error text: the exception's class and text. (Only for failures
    whose text names the failure, a host and a port, never a URL: the OS's, ssl's, llhttp's,
    http.client's connection and framing errors; not InvalidURL.)"""
    text = str(exc)
    return type(exc).__name__ + (f": {text}" if text else "")
