"""Bytes over HTTP: one pooled, bounded, timed connection manager shared by every protocol.

Both SOAP protocols and the ASMX GET/POST protocol send through this, so there is one place for
timeouts, proxies, the response size bound and the translation of network failures into the
exception tree (with the one fact retries need: was the request certainly not sent?).

``HttpTransport`` connects with the standard library's ``http.client`` (proxy tunnels, TLS) and
keeps its connections in a small keep-alive pool of its own. A request goes out in one write; its
answer is read by httptools (llhttp, the C parser uvicorn uses), and one deadline bounds the whole
answer, head included. ``AsyncHttpTransport`` reads its answers with the same ``Answer``, so both
clients take an answer's bytes alike. When a recorder has replaced http.client's connections
(vcrpy, for cassettes), requests go through http.client's own request and response instead, so
that the recorder sees them.
"""

from __future__ import annotations

import base64
import builtins
import http.client
import io
import re
import select
import socket
import ssl
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar, cast, overload
from urllib.parse import unquote, urlsplit

import httptools

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

    def take(self) -> bytes:
        """The bytes so far, taken out: the body starts again from none."""
        content = b"".join(self._chunks)
        self._chunks = []
        self._size = 0
        return content


class HttpTransport:
    """Pooled keep-alive HTTP with connect and read timeouts on every request.

    Proxies are read from the environment once, here, not on every call. ``pool_size`` is the
    number of idle connections kept per host: as many as threads that share the client (more may
    be open at once; the extra ones are closed after use).

    Connections are opened by ``http.client`` (proxy tunnels, TLS), whose class is looked up
    when one is opened; requests on them are written here and their answers read by ``Answer``.
    When a recorder has put its own connection class in http.client (vcrpy, for cassettes), the
    request and its answer go through that class instead, so that the recorder sees every one.
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
        """The answer to one request; raises ConnectError, TimeoutError or TransportError
        (ProtocolError, before anything is sent, for a request HTTP cannot carry)."""
        left = time_left(self.longest)
        stop = time.perf_counter() + (self.longest if left is None else left)
        base, mark, query = url.partition("?")
        route = route_for(base, self._proxies.get(base.partition(":")[0].lower()))
        target = route.target + mark + query
        # Also what refuses, before a connection is made, a request HTTP cannot carry.
        data = request_bytes(route, method, target, body, headers)
        connection, reused = self._connection(route, stop)
        if type(connection) in _OURS:
            return self._exchange(route, connection, reused, data, stop)
        fields = {**route.headers, **headers} if headers else route.headers
        return self._recorded(route, connection, reused, method, target, body, fields, stop)

    def _exchange(
        self,
        route: Route,
        connection: http.client.HTTPConnection,
        reused: bool,
        data: bytes,
        stop: float,
    ) -> Response:
        """Write ``data`` (the whole request) and read its answer with llhttp."""
        sock = connection.sock
        answer = Answer(self.max_response_bytes, stop)
        read_timeout = self._read_timeout
        # Errors are raised after the except blocks: raised inside one, they would keep the
        # socket's exception as their __context__.
        error: FiboError
        try:
            left = stop - time.perf_counter()
            if left <= 0:  # the connect took what time there was
                raise TimeoutError("the call's time passed before the request", request_sent=False)
            sock.settimeout(left if left < read_timeout else read_timeout)
            sock.sendall(data)
            while not answer.complete:
                left = stop - time.perf_counter()
                if left <= 0:
                    raise TimeoutError("the answer did not arrive whole within the call's time")
                sock.settimeout(left if left < read_timeout else read_timeout)
                rest = answer.rest()
                if rest > _CHUNK:
                    answer.whole(self._read_rest(sock, answer.received(), rest, stop))
                elif chunk := sock.recv(_CHUNK):
                    answer.feed(chunk)
                else:
                    answer.ended(reused=reused)
        except FiboError:
            connection.close()
            raise
        except builtins.TimeoutError:
            error = timeout_error(reading=answer.got)
        except OSError as exc:
            error = broken_error(failure_reason(exc), reading=answer.got)
        else:
            if answer.keep:
                self._release(route, connection)
            else:
                connection.close()
            return answer.response()
        connection.close()
        raise error

    def _read_rest(self, sock: socket.socket, received: bytes, rest: int, stop: float) -> bytes:
        """The body of a declared length: ``received``, then ``rest`` more bytes from the socket,
        in one buffer (a large list is held once, not as pieces and their join)."""
        wire = _Wire(sock, self._read_timeout, stop, rest, received)
        whole = io.BufferedReader(wire, _CHUNK).read(len(received) + rest)
        if len(whole) < len(received) + rest:
            raise broken_error("the connection ended before the answer did", reading=True)
        return whole

    def _recorded(
        self,
        route: Route,
        connection: http.client.HTTPConnection,
        reused: bool,
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        stop: float,
    ) -> Response:
        """The answer through http.client's own request and response: what a recorder that has
        put its connections in http.client (vcrpy) records and replays."""
        error: FiboError  # raised after the except blocks, as in _exchange()
        try:
            connection.request(method, target, body, headers)
            answer = connection.getresponse()
            content = self._read(answer, stop)
        except FiboError:
            connection.close()
            raise
        except (http.client.InvalidURL, ValueError):
            # Refused before anything is sent. Its text quotes the URL (a GET's password with
            # it), so it is not kept.
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
        """A kept-alive connection to the route's host (one the server has not closed, of the
        class a new one would have), or a new one; and whether it was kept alive."""
        opens = _connection_class(tls=route.tls)
        idle = self._idle.get(route.origin)
        while idle:
            try:
                connection = idle.pop()
            except IndexError:  # another thread took the last one
                break
            # One opened before a recorder put its class in http.client would carry the request
            # past the recorder (and one of a recorder since gone, into a finished cassette).
            if type(connection) is opens and _alive(connection):
                return connection, True
            connection.close()
        return self._connect(route, opens, stop), False

    def _connect(
        self, route: Route, opens: type[http.client.HTTPConnection], stop: float
    ) -> http.client.HTTPConnection:
        seconds = min(self._connect_timeout, max(stop - time.perf_counter(), 0.001))
        host, port = route.connect_to
        connection: http.client.HTTPConnection
        if route.tls:
            connection = opens(  # type: ignore[call-arg]
                host, port, timeout=seconds, context=self._tls_context()
            )
        else:
            connection = opens(host, port, timeout=seconds)
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
    #: The Host header: the host (IDNA, an IPv6 address bracketed), with the port unless default.
    authority: str
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
    name = bracketed(host if host.isascii() else host.encode("idna").decode("ascii"))
    authority = name if port == (443 if tls else 80) else f"{name}:{port}"
    if not proxy or urllib.request.proxy_bypass(host):
        return Route(host, port, tls, (host, port), path, headers, authority)
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
        return Route(host, port, tls, proxy_to, path, headers, authority, credentials)
    target = f"http://{parts.netloc.rpartition('@')[2]}{path}"
    return Route(host, port, tls, proxy_to, target, {**headers, **credentials}, authority)


def bracketed(host: str) -> str:
    """A host as a URL's authority writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


_USER_AGENT = "fibo-soap"


class _Deadline(http.client.HTTPConnection):
    """http.client's connection, used to connect (through a proxy's tunnel, with TLS): a proxy's
    answer to CONNECT is read with each read of the socket waiting no longer than the read
    timeout nor past the request's stop time, so a proxy dripping it cannot hold a call."""

    _stop = 0.0
    _read_timeout = DEFAULT_READ_TIMEOUT

    def until(self, stop: float, read_timeout: float) -> None:
        """Nothing: what is read next must be whole by ``stop`` (a ``time.perf_counter()``)."""
        self._stop = stop
        self._read_timeout = read_timeout

    def response_class(  # type: ignore[override]
        self, sock: socket.socket, debuglevel: int = 0, method: str | None = None
    ) -> http.client.HTTPResponse:
        source = cast(socket.socket, _Source(sock, self._read_timeout, self._stop))
        return http.client.HTTPResponse(source, debuglevel, method=method)


class _TlsDeadline(_Deadline, http.client.HTTPSConnection):
    """``_Deadline`` over TLS."""


# http.client's own classes, as they are when this module is first imported: that must happen
# before a recorder puts its classes there (the pytest plugin, fibo_soap.testing, imports this
# module when pytest loads it, before any cassette), or _Deadline would be built on the recorder's.
_PLAIN = http.client.HTTPConnection
_TLS = http.client.HTTPSConnection
#: The connections whose requests go out through ``HttpTransport._exchange``.
_OURS = (_Deadline, _TlsDeadline)


def _connection_class(*, tls: bool) -> type[http.client.HTTPConnection]:
    """The connection class to open: ours, unless something (vcrpy recording or replaying a
    cassette) has put its own in http.client, which is then used as it is."""
    if tls:
        return _TlsDeadline if http.client.HTTPSConnection is _TLS else http.client.HTTPSConnection
    return _Deadline if http.client.HTTPConnection is _PLAIN else http.client.HTTPConnection


class _Source:
    """What http.client.HTTPResponse reads a proxy's answer to CONNECT from: the socket, each
    read waiting no longer than the read timeout nor past ``stop``."""

    __slots__ = ("_read_timeout", "_sock", "_stop")

    def __init__(self, sock: socket.socket, read_timeout: float, stop: float) -> None:
        self._sock = sock
        self._read_timeout = read_timeout
        self._stop = stop

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_Wire(self._sock, self._read_timeout, self._stop), _CHUNK)


class _Wire(io.RawIOBase):
    """A socket as a raw file: each read waits no longer than the read timeout nor past
    ``stop``; what was received already (``first``) comes first, and no more than ``most``
    bytes are taken from the socket (bytes after an answer are not its own)."""

    def __init__(
        self,
        sock: socket.socket,
        read_timeout: float,
        stop: float,
        most: int | None = None,
        first: bytes = b"",
    ) -> None:
        self._sock = sock
        self._read_timeout = read_timeout
        self._stop = stop
        self._most = most
        self._first = first

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._first:
            size = min(len(self._first), len(buffer))
            buffer[:size] = self._first[:size]
            self._first = self._first[size:]
            return size
        left = self._stop - time.perf_counter()
        if left <= 0:
            raise TimeoutError("the answer did not arrive whole within the call's time")
        self._sock.settimeout(left if left < self._read_timeout else self._read_timeout)
        if self._most is None:
            return self._sock.recv_into(buffer)
        if self._most <= 0:
            return 0
        got = self._sock.recv_into(buffer, min(len(buffer), self._most))
        self._most -= got
        return got


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


# --- the wire: a request's bytes, and llhttp's reading of its answer (both transports) ----------

#: What http.client allows an answer's head: 64 KB (its longest line) and 100 header lines.
MAX_HEAD = 65536
MAX_HEADERS = 100

#: A request-target or header value that would split or end the request head (http.client
#: refuses the same: control characters and spaces in the target, line breaks in a value).
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]").search
_BAD_VALUE = re.compile(r"[\x00\r\n]").search
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch

_T = TypeVar("_T")


def request_bytes(
    route: Route,
    method: str,
    target: str,
    body: bytes | None,
    headers: Mapping[str, str] | None,
) -> bytes:
    """The request's head and body, as http.client writes them (Host, Accept-Encoding: identity
    and Content-Length unless given; the route's headers, then the caller's).

    ProtocolError, before anything is sent, for what cannot go in a request head. (Its text does
    not quote the URL: a GET's password is in it.)
    """
    fields = {**route.headers, **headers} if headers else route.headers
    if not _TOKEN(method) or not target.isascii() or _BAD_TARGET(target):
        raise ProtocolError(f"cannot send this request: {method[:20]} to a malformed URL")
    lines = [f"{method} {target} HTTP/1.1"]
    names = {name.lower() for name in fields} if headers else ()
    if "host" not in names:
        lines.append(f"Host: {route.authority}")
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


class Headers(Mapping[str, str]):
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


class Answer:
    """One answer to one request, read by llhttp as its bytes arrive (``feed``): the head within
    http.client's bounds (``MAX_HEAD``, ``MAX_HEADERS``), the body within the size bound and by
    ``stop`` (a ``time.perf_counter()``; see BoundedBody), gzip and deflate undone.

    ``complete`` once the answer is whole; ``keep`` then says whether the connection may carry
    another request. What cannot be taken raises a FiboError (TransportError for what is not
    HTTP, ResponseTooLargeError, TimeoutError, ProtocolError for an unknown encoding).
    """

    __slots__ = (
        "_body",
        "_chunks",
        "_count",
        "_fields",
        "_head_received",
        "_head_size",
        "_headers_done",
        "_inflate",
        "_limit",
        "_parser",
        "_received",
        "_status",
        "_stop",
        "_until_eof",
        "complete",
        "got",
        "keep",
    )

    def __init__(self, limit: int, stop: float) -> None:
        self._limit = limit
        self._stop = stop
        #: None once the response is taken: the parser refers back to the answer, and a cycle
        #: would keep the body until the garbage collector found it.
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        #: Whether any byte of the answer has come.
        self.got = False
        self.complete = False
        self.keep = False
        self._headers_done = False
        self._until_eof = False
        #: The head's bytes: as the header lines came, and as received before its end.
        self._head_size = 0
        self._head_received = 0
        self._count = 0
        self._fields: dict[str, str] = {}
        self._status = 0
        self._chunks: list[bytes] = []
        #: The body's bytes as received (before inflating), for ``rest``.
        self._received = 0
        self._body: BoundedBody | None = None
        self._inflate: Any = None

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the answer."""
        self.got = True
        failure: FiboError | None = None  # raised outside the except block: no __context__
        assert self._parser is not None
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self.complete:  # bytes after the answer: a second one, or after Connection: close
                self.keep = False
            else:
                failure = broken_error(failure_reason(exc), reading=self._headers_done)
        if failure is not None:
            raise failure
        self._advance(len(data))

    def ended(self, *, reused: bool) -> None:
        """Nothing, when the end of the connection is the end of an answer without a length;
        TransportError otherwise. ``reused``: whether the connection was kept alive."""
        if self._headers_done and self._until_eof:
            self.keep = False
            self.complete = True
            self._advance(0)
        elif not self.got:
            raise broken_error(
                "the server closed a kept-alive connection without answering"
                if reused
                else "the server closed the connection without answering"
            )
        else:
            raise broken_error("the connection ended before the answer did", reading=True)

    def rest(self) -> int:
        """How many bytes of a body of declared length, not encoded, are still to come (0 for
        any other, or before the head is whole)."""
        if not self._headers_done or self._until_eof or self._inflate is not None:
            return 0
        declared = self._fields.get("content-length", "")
        if not declared.isdigit() or "transfer-encoding" in self._fields:
            return 0
        return max(0, int(declared) - self._received)

    def received(self) -> bytes:
        """The body's bytes received so far, taken out (for ``whole``)."""
        assert self._body is not None
        return self._body.take()

    def whole(self, body: bytes) -> None:
        """Take the whole body of a declared length, read past llhttp (``rest``)."""
        assert self._body is not None
        assert self._parser is not None
        self._body.add(body)
        self.keep = self._parser.should_keep_alive()
        self.complete = True

    def response(self) -> Response:
        """The answer, once complete (taken: the answer holds it no more)."""
        assert self._body is not None
        self._parser = None
        return Response(self._status, Headers(self._fields), self._body.take())

    def _advance(self, received: int) -> None:
        """Take what the parser has read: the head's size, the body within the bound."""
        if not self._headers_done:
            self._head_received += received
            if self._head_received > MAX_HEAD:
                raise broken_error(f"the answer's head exceeds {MAX_HEAD} bytes")
            return
        failure: FiboError | None = None
        try:
            if self._body is None:
                if self._head_size > MAX_HEAD:
                    raise broken_error(f"the answer's head exceeds {MAX_HEAD} bytes")
                if self._count > MAX_HEADERS:
                    raise broken_error(f"the answer has more than {MAX_HEADERS} header lines")
                headers = Headers(self._fields)
                self._body = BoundedBody(self._status, headers, self._limit, self._stop)
                self._inflate = inflater(self._fields.get("content-encoding", ""), self._status)
            if self._chunks:
                chunks, self._chunks = self._chunks, []
                for chunk in chunks:
                    take_encoded(self._body, self._inflate, chunk)
            if self.complete and self._inflate is not None:
                self._body.add(self._inflate.flush())
        except zlib.error as exc:
            failure = broken_error(f"undecodable {self._fields.get('content-encoding')}: {exc}")
        if failure is not None:
            raise failure

    # --- llhttp's callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
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
        assert self._parser is not None
        self._status = self._parser.get_status_code()
        fields = self._fields
        self._until_eof = "content-length" not in fields and not fields.get(
            "transfer-encoding", ""
        ).lower().endswith("chunked")

    def on_body(self, body: bytes) -> None:
        self._received += len(body)
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._status < 200:  # 100 Continue and the like: the answer is still to come
            self._fields = {}
            self._count = self._head_size = self._head_received = 0
            self._headers_done = False
            return
        self.complete = True
        assert self._parser is not None
        self.keep = self._parser.should_keep_alive()
