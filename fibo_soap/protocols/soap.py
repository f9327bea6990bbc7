"""SOAP 1.1 and 1.2 through zeep, driven by the WSDL, sending over the client's HttpTransport.

``SoapProtocol`` calls through zeep's Client, ``AsyncSoapProtocol`` through zeep's AsyncClient
over ``AsyncHttpTransport``; both share the screening of answers, the reading of the WSDL and the
mapping of zeep's failures onto the exception tree.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from fibo_soap import codec
from fibo_soap.errors import FiboError, HttpStatusError, ProtocolError, SoapFaultError
from fibo_soap.operations import Operation
from fibo_soap.protocols.transport import HttpTransport, Response

if TYPE_CHECKING:
    from fibo_soap.protocols.async_transport import AsyncHttpTransport

SoapName = Literal["soap11", "soap12"]


class _ZeepResponse:
    """The parts of a requests.Response that zeep reads, over our Response."""

    __slots__ = ("content", "headers", "status_code")

    encoding = "utf-8"

    def __init__(self, response: Response) -> None:
        self.status_code = response.status
        self.content = response.content
        self.headers = response.headers


def _zeep_transport(http: HttpTransport) -> Any:
    import zeep

    class _Transport(zeep.Transport):
        """zeep's Transport, sending through our pooled, bounded, timed HttpTransport."""

        def __init__(self) -> None:
            super().__init__(timeout=60, operation_timeout=60)  # type: ignore[no-untyped-call]

        def post(self, address: str, message: bytes, headers: Mapping[str, str]) -> Any:
            response = http.request("POST", address, body=message, headers=headers)
            return _ZeepResponse(_screened(response, http.max_response_bytes))

        def get(self, address: str, params: Any, headers: Mapping[str, str]) -> Any:
            response = http.request("GET", address, headers=headers)
            return _ZeepResponse(_screened(response, http.max_response_bytes))

        def _load_remote_data(self, url: str) -> bytes:
            return _wsdl_bytes(http.request("GET", url), http.max_response_bytes)

    return _Transport()


def _zeep_async_transport(http: AsyncHttpTransport, fetched: Mapping[str, bytes]) -> Any:
    from zeep.transports import AsyncTransport
    from zeep.wsdl.utils import etree_to_string

    class _AsyncTransport(AsyncTransport):
        """zeep's AsyncTransport, sending through our pooled, bounded, timed AsyncHttpTransport.

        zeep reads a WSDL synchronously; a remote one is fetched (awaited) before it is parsed,
        and handed over from ``fetched``.
        """

        def __init__(self) -> None:
            # zeep's own __init__ would open two httpx clients of its own.
            self.cache = None
            self.load_timeout = 60
            self.operation_timeout = 60
            self._close_session = False

        async def post(self, address: str, message: bytes, headers: Mapping[str, str]) -> Any:
            response = await http.request("POST", address, body=message, headers=headers)
            return _ZeepResponse(_screened(response, http.max_response_bytes))

        async def post_xml(self, address: str, envelope: Any, headers: Mapping[str, str]) -> Any:
            return await self.post(address, etree_to_string(envelope), headers)

        async def get(self, address: str, params: Any, headers: Mapping[str, str]) -> Any:
            response = await http.request("GET", address, headers=headers)
            return _ZeepResponse(_screened(response, http.max_response_bytes))

        def _load_remote_data(self, url: str) -> bytes:
            content = fetched.get(url)
            if content is None:
                raise ProtocolError(
                    f"the WSDL at {url} is fetched by the first call of an AsyncFiboClient: "
                    "await one before using .service"
                )
            return content

        async def aclose(self) -> None:
            """Nothing of its own to close: the transport is the client's."""

    return _AsyncTransport()


def _wsdl_bytes(response: Response, max_bytes: int) -> bytes:
    """The WSDL document a fetch answered, through the hardened parser."""
    if response.status != 200:
        raise HttpStatusError(f"WSDL fetch answered HTTP {response.status}", status=response.status)
    return codec.sanitize(response.content, max_bytes=max_bytes)


def _screened(response: Response, max_bytes: int) -> Response:
    """The answer as zeep may read it, or the error it stands for.

    ASMX answers a SOAP call with 200 (the result) or 500 (a fault), in XML. Anything else is not
    the service's answer (a proxy's login page, a redirect, an HTML error page), and zeep would
    take a well-formed one for a fault. What zeep reads has been through the hardened parser: no
    DOCTYPE, and no comment or processing instruction, which zeep keeps and which split a text.
    """
    status, media = response.status, response.media_type
    if status not in (200, 500) or (status == 500 and "xml" not in media):
        if 200 <= status < 300:
            raise ProtocolError(
                f"HTTP {status} is not an answer to a SOAP call",
                excerpt=codec.excerpt(response.content),
                status=status,
            )
        raise HttpStatusError(
            f"HTTP {status} ({media or 'no content type'}): {codec.excerpt(response.content, 120)}",
            status=status,
        )
    if "xml" not in media:
        raise ProtocolError(
            f"expected a SOAP envelope, got {media or 'no content type'}",
            excerpt=codec.excerpt(response.content),
            status=status,
        )
    if not response.content.strip():
        raise ProtocolError("the answer is empty", status=status)
    try:
        content = codec.sanitize_soap_answer(response.content, max_bytes=max_bytes)
    except ProtocolError as exc:
        exc.status = status
        raise
    return Response(status, response.headers, content)


class _SoapBinding:
    """What both SOAP protocols hold: the binding's kind, the endpoint, the WSDL, zeep's proxy."""

    def __init__(
        self, endpoint: str, version: SoapName, wsdl: str | os.PathLike[str] | None
    ) -> None:
        self.name: str = version
        self._endpoint = endpoint
        self._wsdl = wsdl
        self._service: Any = None

    def _proxy(self, client_class: Any, proxy_class: Any, transport: Any) -> Any:
        """zeep's service proxy (``proxy_class``) for this binding at the endpoint, over a zeep
        client of ``client_class`` (what ``Client.create_service`` does, which always makes a
        synchronous proxy, even for an AsyncClient)."""
        from fibo_soap import wsdl

        document = wsdl.load_document(self._wsdl, transport)
        client = client_class(wsdl=document, transport=transport, settings=wsdl.settings())
        kind = wsdl.BindingKind.SOAP11 if self.name == "soap11" else wsdl.BindingKind.SOAP12
        return proxy_class(client, wsdl.find_binding(document, kind), address=self._endpoint)


class SoapProtocol(_SoapBinding):
    """Calls a method through zeep's service proxy for the WSDL's SOAP 1.1 or 1.2 binding.

    The binding is found by its kind, never by name, so a live WSDL whose class, port or namespace
    differ works unchanged. zeep is imported and the WSDL parsed on the first call, not before.
    """

    def __init__(
        self,
        transport: HttpTransport,
        endpoint: str,
        version: SoapName,
        wsdl: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(endpoint, version, wsdl)
        self._http = transport
        self._lock = threading.Lock()

    @property
    def service(self) -> Any:
        """zeep's ServiceProxy for this binding at the client's endpoint: raw strings in and out."""
        if self._service is None:
            with self._lock:
                if self._service is None:
                    self._service = self._create_service()
        return self._service

    def _create_service(self) -> Any:
        import zeep
        from zeep.proxy import ServiceProxy

        return self._proxy(zeep.Client, ServiceProxy, _zeep_transport(self._http))

    def call(self, op: Operation, params: Mapping[str, str]) -> str:
        """The result text of ``op`` (``<OpResult>``) over SOAP."""
        method = getattr(self.service, op.name)
        # The error is raised after the except block: raised inside one, it would keep zeep's
        # exception (which holds the whole answer, echoes and all) as its __context__.
        error: FiboError
        try:
            result = method(**_arguments(op, params))
        except _zeep_failures() as exc:
            error = _soap_error(exc)
        else:
            return _result_text(result)
        raise error

    def close(self) -> None:
        """Forget the service proxy (the shared transport stays open)."""
        self._service = None


class AsyncSoapProtocol(_SoapBinding):
    """``SoapProtocol`` for AsyncFiboClient: zeep's AsyncClient over ``AsyncHttpTransport``.

    As with zeep's own AsyncClient, the WSDL is parsed synchronously (once per process); a remote
    WSDL is fetched asynchronously first.
    """

    def __init__(
        self,
        transport: AsyncHttpTransport,
        endpoint: str,
        version: SoapName,
        wsdl: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(endpoint, version, wsdl)
        self._http = transport
        self._fetched: dict[str, bytes] = {}

    @property
    def service(self) -> Any:
        """zeep's AsyncServiceProxy for this binding at the client's endpoint: raw strings in and
        out, each operation a coroutine."""
        if self._service is None:
            import zeep
            from zeep.proxy import AsyncServiceProxy

            transport = _zeep_async_transport(self._http, self._fetched)
            self._service = self._proxy(zeep.AsyncClient, AsyncServiceProxy, transport)
        return self._service

    async def _ready(self) -> Any:
        if self._service is None and self._wsdl is not None:
            location = os.fspath(self._wsdl)
            if urlparse(location).scheme.lower() in ("http", "https"):
                response = await self._http.request("GET", location)
                self._fetched[location] = _wsdl_bytes(response, self._http.max_response_bytes)
        return self.service

    async def call(self, op: Operation, params: Mapping[str, str]) -> str:
        """The result text of ``op`` (``<OpResult>``) over SOAP."""
        method = getattr(await self._ready(), op.name)
        error: FiboError  # raised after the except block, as in SoapProtocol.call
        try:
            result = await method(**_arguments(op, params))
        except _zeep_failures() as exc:
            error = _soap_error(exc)
        else:
            return _result_text(result)
        raise error

    async def aclose(self) -> None:
        """Forget the service proxy (the shared transport stays open)."""
        self._service = None


def _arguments(op: Operation, params: Mapping[str, str]) -> dict[str, str]:
    return {name: params.get(name, "") for name in op.params}


def _result_text(result: Any) -> str:
    return "" if result is None else str(result)


def _zeep_failures() -> tuple[type[Exception], ...]:
    """What zeep and lxml raise for an answer they cannot use."""
    import zeep.exceptions
    from lxml import etree

    return (zeep.exceptions.Error, etree.LxmlError, ValueError)


def _soap_error(exc: Exception) -> FiboError:
    """The error in the tree that a failure of zeep's stands for."""
    import zeep.exceptions

    if isinstance(exc, zeep.exceptions.Fault):
        return _fault_error(exc)
    if isinstance(exc, zeep.exceptions.TransportError):
        content = exc.content if isinstance(exc.content, bytes) else b""
        if exc.status_code >= 400 and not content.lstrip().startswith(b"<"):
            return HttpStatusError(
                f"HTTP {exc.status_code}: {codec.excerpt(content, 120)}",
                status=exc.status_code,
            )
        return ProtocolError(
            "the answer is not a SOAP envelope",
            excerpt=codec.excerpt(content),
            status=exc.status_code,
        )
    body = getattr(exc, "content", None)
    return ProtocolError(
        f"undecodable SOAP answer: {type(exc).__name__}",
        excerpt=codec.excerpt(body) if isinstance(body, bytes | str) else "",
    )


def _fault_error(fault: Any) -> SoapFaultError:
    code = str(fault.code or "").rpartition(":")[2] or "Server"
    # SOAP 1.2 says Sender/Receiver where SOAP 1.1 says Client/Server.
    code = {"Sender": "Client", "Receiver": "Server"}.get(code, code)
    # ASMX appends a .NET stack trace after the first line; it never belongs in an error text.
    lines = str(fault.message or "").strip().splitlines()
    return SoapFaultError((lines[0] if lines else "SOAP fault")[:300], fault_code=code)
