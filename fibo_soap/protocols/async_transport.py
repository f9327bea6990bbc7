"""Bytes over HTTP for AsyncFiboClient: the mirror of ``transport.HttpTransport`` over httpx.

One pooled ``httpx.AsyncClient`` per client, with the same timeouts, the same response bound, the
same reading of proxies (once, from the environment, as urllib does) and the same translation of
failures into the exception tree, through the helpers ``transport.py`` shares. Importing this
module imports httpx; nothing else in the package does until an AsyncFiboClient is made.
"""

from __future__ import annotations

import asyncio
import builtins
import time
import urllib.request
import zlib
from collections.abc import Mapping
from typing import Any

try:
    import httpx
except ImportError as missing:  # pragma: no cover - httpx is in the dev set and the async extra
    raise ImportError(
        "AsyncFiboClient needs httpx: pip install 'fibo-soap[async]' (or httpx)"
    ) from missing

from fibo_soap import logs
from fibo_soap.errors import FiboError, ProtocolError, TimeoutError
from fibo_soap.protocols.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    BoundedBody,
    Response,
    broken_error,
    connect_error,
    time_left,
    timeout_error,
)

#: The loggers of httpx (every request line, query string included, at INFO) and of httpcore
#: under it (a DEBUG trace that shows what a broken answer sent, as it came).
_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)

#: httpx failures after which it is certain that no byte of the request reached the server.
_NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ProxyError,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


class AsyncHttpTransport:
    """Pooled keep-alive HTTP (httpx) with connect and read timeouts on every request.

    Proxies are read from the environment once, here, not on every call, and a host the
    environment exempts (``no_proxy``) is reached directly, as ``HttpTransport`` does.
    ``pool_size`` is the number of idle connections kept: as many as tasks that share the client.

    The ``httpx.AsyncClient`` is opened by the first request, in the event loop that makes it, and
    ``aclose`` closes it; a request after that opens a new one, as ``HttpTransport`` reconnects
    after ``close``.
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
        #: The longest one request can take: connect and read timeouts together.
        self.longest = connect_timeout + read_timeout
        # urllib3 bounds every socket operation after the connect by the read timeout: writes too.
        self._timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        )
        # Like urllib3's non-blocking pool: no cap on connections, ``pool_size`` of them kept.
        self._limits = httpx.Limits(max_connections=None, max_keepalive_connections=pool_size)
        found = urllib.request.getproxies() if proxies is None else proxies
        self._proxies = {k: v for k, v in found.items() if k in ("http", "https") and v}
        self._client: httpx.AsyncClient | None = None
        guard_httpx()

    def _open(self) -> httpx.AsyncClient:
        limits = self._limits
        sender: httpx.AsyncBaseTransport = (
            _Routes(self._proxies, limits)
            if self._proxies
            else httpx.AsyncHTTPTransport(limits=limits)
        )
        self._client = httpx.AsyncClient(
            transport=sender,
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
            # What _read can inflate within the bound (httpx would add br or zstd when their
            # packages are installed).
            headers={"Accept-Encoding": "gzip, deflate"},
        )
        return self._client

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
        # Always bounded as a whole: httpx's read timeout bounds each wait for bytes, so a server
        # that drips its status line and headers a byte at a time would otherwise hold the call.
        seconds = self.longest if left is None else left
        try:
            # What httpx and httpcore log of this request is redacted of the password it carries.
            with logs.redacting_request(url, body):
                async with asyncio.timeout(seconds):
                    return await self._exchange(method, url, body, headers, seconds)
        except FiboError:
            raise
        except builtins.TimeoutError:
            pass
        # Cut short where it is not known, so it may have been sent. (Raised here, not in the
        # except block, as in _exchange.)
        raise TimeoutError(
            "the call's deadline passed during the request"
            if left is not None
            else f"no whole answer within {seconds:g} s (connect and read timeouts together)"
        )

    async def _exchange(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        seconds: float,
    ) -> Response:
        stop = time.perf_counter() + seconds
        client = self._client or self._open()
        request = client.build_request(method, url, content=body, headers=headers)
        # Errors are raised after the except blocks: raised inside one, they would keep httpx's
        # exception as their __context__, and its request holds a GET's query: the password.
        error: FiboError
        try:
            answer = await client.send(request, stream=True)
        except _NOT_SENT as exc:
            error = connect_error(_reason(exc))
        except httpx.TimeoutException:
            error = timeout_error()
        except httpx.HTTPError as exc:
            error = broken_error(_reason(exc))
        else:
            try:
                return await self._read(answer, stop)
            finally:
                await answer.aclose()
        raise error

    async def _read(self, answer: httpx.Response, stop: float) -> Response:
        error: FiboError  # raised after the except blocks, as in _exchange
        try:
            limit = self.max_response_bytes
            received = BoundedBody(answer.status_code, answer.headers, limit, stop)
            # Raw bytes, inflated here: httpx inflates each chunk whole, and 64 KB of gzip can
            # hold 64 MB. Here no step makes more than the bound has room for.
            inflate = _inflater(answer)
            async for raw in answer.aiter_raw():
                if inflate is None:
                    received.add(raw)
                    continue
                chunk = inflate.decompress(raw, received.room())
                received.add(chunk)
                while inflate.unconsumed_tail:
                    received.add(inflate.decompress(inflate.unconsumed_tail, received.room()))
            if inflate is not None:
                received.add(inflate.flush())
        except zlib.error as exc:
            error = broken_error(f"undecodable {answer.headers.get('Content-Encoding')}: {exc}")
        except httpx.TimeoutException:
            error = timeout_error(reading=True)
        except httpx.HTTPError as exc:
            error = broken_error(_reason(exc), reading=True)
        else:
            return Response(answer.status_code, answer.headers, received.content())
        raise error

    async def aclose(self) -> None:
        """Close every pooled connection."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _inflater(answer: httpx.Response) -> Any:
    """The zlib decompressor the answer's Content-Encoding calls for; None for identity."""
    coding = answer.headers.get("Content-Encoding", "").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        # zlib-wrapped, as the standard says (raw deflate is also seen; it fails as undecodable).
        return zlib.decompressobj()
    raise ProtocolError(
        f"the answer is encoded as {coding!r}, which the client did not ask for",
        status=answer.status_code,
    )


class _Routes(httpx.AsyncBaseTransport):
    """Each request directly, or through the proxy named for its scheme unless its host is exempt
    (``urllib.request.proxy_bypass``, as ``HttpTransport`` decides)."""

    def __init__(self, proxies: Mapping[str, str], limits: httpx.Limits) -> None:
        self._proxies = dict(proxies)
        self._limits = limits
        self._direct = httpx.AsyncHTTPTransport(limits=limits)
        self._via_proxy: dict[str, httpx.AsyncHTTPTransport] = {}
        self._bypass: dict[str, bool] = {}

    def _route(self, url: httpx.URL) -> httpx.AsyncHTTPTransport:
        proxy = self._proxies.get(url.scheme)
        if not proxy:
            return self._direct
        bypass = self._bypass.get(url.host)
        if bypass is None:
            bypass = self._bypass[url.host] = bool(urllib.request.proxy_bypass(url.host))
        if bypass:
            return self._direct
        route = self._via_proxy.get(proxy)
        if route is None:
            route = self._via_proxy[proxy] = httpx.AsyncHTTPTransport(
                proxy=proxy, limits=self._limits
            )
        return route

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._route(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        await self._direct.aclose()
        for route in self._via_proxy.values():
            await route.aclose()


def guard_httpx() -> None:
    """Put ``logs.UrlSecretFilter`` on httpx's and httpcore's loggers, once (every transport does:
    a GET's URL carries the password, and a broken answer may echo it on any protocol)."""
    logs.guard_loggers(_LOGGERS)


def _reason(exc: BaseException) -> str:
    # httpx's texts name the failure ("[Errno 111] Connection refused"), never the URL.
    text = str(exc)
    return type(exc).__name__ + (f": {text}" if text else "")
