"""Bytes over HTTP: one pooled, bounded, timed connection manager shared by every protocol.

Both the SOAP protocol (through zeep) and the ASMX GET/POST protocol send through this, so there is
one place for timeouts, proxies, the response size bound and the translation of network failures
into the exception tree (with the one fact retries need: was the request certainly not sent?).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
)

from fibo_soap.errors import (
    ConnectError,
    FiboError,
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


# --- what every transport shares (this one over urllib3, AsyncHttpTransport over httpx) ---------


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
    number of connections kept per host: as many as threads that share the client.
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
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        #: The longest one request can take: connect and read timeouts together.
        self.longest = connect_timeout + read_timeout
        self._proxies = dict(urllib.request.getproxies() if proxies is None else proxies)
        self._pool_size = pool_size
        self._direct = urllib3.PoolManager(
            num_pools=4, maxsize=pool_size, block=False, retries=False, timeout=self._timeout
        )
        self._via_proxy: dict[str, urllib3.ProxyManager] = {}

    def _manager(self, url: str) -> urllib3.PoolManager:
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme)
        if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
            return self._direct
        manager = self._via_proxy.get(proxy)
        if manager is None:
            manager = urllib3.ProxyManager(
                proxy, maxsize=self._pool_size, retries=False, timeout=self._timeout
            )
            self._via_proxy[proxy] = manager
        return manager

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
        if left is None:
            timeout, stop = self._timeout, time.perf_counter() + self.longest
        else:
            timeout = urllib3.Timeout(
                connect=self._timeout.connect_timeout, read=self._timeout.read_timeout, total=left
            )
            stop = time.perf_counter() + left
        # Errors are raised after the except blocks: raised inside one, they would keep urllib3's
        # exception as their __context__, and its ``url`` holds a GET's query: the password.
        error: FiboError
        try:
            raw = self._manager(url).request(
                method,
                url,
                body=body,
                headers=dict(headers or {}),
                preload_content=False,
                redirect=False,
                timeout=timeout,
            )
        except (NewConnectionError, ConnectTimeoutError, ProxyError) as exc:
            error = connect_error(_reason(exc))
        except ReadTimeoutError:
            error = timeout_error()
        except HTTPError as exc:
            error = broken_error(_reason(exc))
        else:
            try:
                return Response(raw.status, raw.headers, self._read(raw, stop))
            finally:
                raw.release_conn()
        raise error

    def _read(self, raw: urllib3.BaseHTTPResponse, stop: float) -> bytes:
        error: FiboError  # raised after the except blocks, as in request()
        try:
            body = BoundedBody(raw.status, raw.headers, self.max_response_bytes, stop)
            # read1: whatever one read of the socket gives, so that the time is checked between
            # reads (read(n) waits for all n bytes).
            while chunk := raw.read1(_CHUNK):
                body.add(chunk)
        except FiboError:
            raw.close()
            raise
        except ReadTimeoutError:
            error = timeout_error(reading=True)
        except HTTPError as exc:
            error = broken_error(_reason(exc), reading=True)
        else:
            return body.content()
        raise error

    def close(self) -> None:
        """Close every pooled connection."""
        self._direct.clear()
        for manager in self._via_proxy.values():
            manager.clear()


def _reason(exc: BaseException) -> str:
    # urllib3 nests the OS error; its text names the host and port, never a query string.
    inner = exc
    while inner.__context__ is not None and isinstance(inner.__context__, OSError):
        inner = inner.__context__
    text = getattr(inner, "reason", None) or inner
    return type(inner).__name__ + (f": {text}" if str(text) else "")
