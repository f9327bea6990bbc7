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
    ResponseTooLargeError,
    TimeoutError,
    TransportError,
)

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0

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
        deadline = call_deadline.get()
        timeout = self._timeout if deadline is None else self._within(deadline)
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
            raise ConnectError(f"cannot connect: {_reason(exc)}") from None
        except ReadTimeoutError:
            raise TimeoutError("no answer within the read timeout") from None
        except HTTPError as exc:
            raise TransportError(f"connection failed: {_reason(exc)}") from None
        try:
            return Response(raw.status, raw.headers, self._read(raw))
        finally:
            raw.release_conn()

    def _within(self, deadline: float) -> urllib3.Timeout:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError("the call's deadline passed before this request", request_sent=False)
        if left >= self.longest:
            return self._timeout
        return urllib3.Timeout(
            connect=self._timeout.connect_timeout, read=self._timeout.read_timeout, total=left
        )

    def _read(self, raw: urllib3.BaseHTTPResponse) -> bytes:
        limit = self.max_response_bytes
        declared = raw.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raw.close()
            raise ResponseTooLargeError(
                f"answer of {declared} bytes exceeds the bound of {limit} bytes", status=raw.status
            )
        try:
            data = raw.read(limit + 1)
        except ReadTimeoutError:
            raise TimeoutError("the answer stopped arriving within the read timeout") from None
        except HTTPError as exc:
            raise TransportError(f"connection failed while reading: {_reason(exc)}") from None
        if len(data) > limit:
            raw.close()
            raise ResponseTooLargeError(
                f"answer exceeds the bound of {limit} bytes", status=raw.status
            )
        return data

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
