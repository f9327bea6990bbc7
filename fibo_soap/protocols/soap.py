"""SOAP 1.1 and 1.2, driven by the WSDL, sending over the client's HttpTransport.

Two engines write the envelope and read the answer, both from the same WSDL:

- ``"fast"`` (the default): the binding is read once with the hardened parser
  (``wsdl.read_soap_binding``); an envelope is the operation's fixed tags around the escaped
  values, and an answer is parsed once. zeep is not imported. A WSDL of a shape it does not read
  (imports, RPC style, encoded use...) falls back to zeep.
- ``"zeep"``: zeep's Client (``AsyncClient`` for AsyncFiboClient) and its serializer, over a
  zeep Transport that sends through the client's own transport.

``SoapProtocol`` and ``AsyncSoapProtocol`` share the screening of answers, the reading of the
WSDL and the mapping of failures onto the exception tree.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlparse

from fibo_soap import codec, wsdl
from fibo_soap.errors import (
    FiboError,
    HttpStatusError,
    InvalidInputError,
    ProtocolError,
    SoapFaultError,
)
from fibo_soap.operations import Operation
from fibo_soap.protocols.transport import HttpTransport, Response

if TYPE_CHECKING:
    from lxml import etree

    from fibo_soap.protocols.async_transport import AsyncHttpTransport

SoapName = Literal["soap11", "soap12"]
#: How envelopes are written and answers read: see the module's docstring.
SoapEngine = Literal["fast", "zeep"]

_KIND = {"soap11": wsdl.BindingKind.SOAP11, "soap12": wsdl.BindingKind.SOAP12}
_ENVELOPE_NS = {"soap11": codec.SOAP11_NS, "soap12": codec.SOAP12_NS}


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
            # zeep's own __init__ would open two httpx clients of its own (and need httpx).
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
    """The answer as zeep may read it, or the error it stands for (see ``_screen``).

    What zeep reads has been through the hardened parser: no DOCTYPE, and no comment or
    processing instruction, which zeep keeps and which split a text.
    """
    _screen(response)
    try:
        content = codec.sanitize_soap_answer(response.content, max_bytes=max_bytes)
    except ProtocolError as exc:
        exc.status = response.status
        raise
    return Response(response.status, response.headers, content)


def _screen(response: Response) -> None:
    """Nothing, or the error an answer that cannot be the service's stands for.

    ASMX answers a SOAP call with 200 (the result) or 500 (a fault), in XML. Anything else is not
    the service's answer (a proxy's login page, a redirect, an HTML error page), and a SOAP
    reader would take a well-formed one for a fault.
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


class _FastSoap:
    """The fast engine for one binding: envelopes written from the WSDL's operations, answers
    read with one parse."""

    __slots__ = ("_binding", "_head", "_headers", "_tail", "_version")

    def __init__(self, binding: wsdl.SoapBinding, version: SoapName) -> None:
        self._binding = binding
        self._version = version
        namespace = _ENVELOPE_NS[version]
        self._head = (
            f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{namespace}">'
            "<soap:Body>"
        )
        self._tail = "</soap:Body></soap:Envelope>"
        self._headers: dict[str, dict[str, str]] = {}
        for name, operation in binding.operations.items():
            action = operation.action
            # SOAPAction in both versions, as zeep sends it (SOAP 1.2 reads the action from
            # the Content-Type; ASMX ignores the header there).
            headers = {"SOAPAction": f'"{action}"'}
            if version == "soap11":
                headers["Content-Type"] = "text/xml; charset=utf-8"
            else:
                headers["Content-Type"] = f'application/soap+xml; charset=utf-8; action="{action}"'
            self._headers[name] = headers

    def operation(self, op: Operation) -> wsdl.SoapOperation:
        """The WSDL's description of ``op``; ProtocolError when the binding lacks it."""
        operation = self._binding.operations.get(op.name)
        if operation is None:
            raise ProtocolError(f"the WSDL's {self._version} binding has no operation {op.name}")
        return operation

    def request(self, op: Operation, params: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
        """The envelope of a call of ``op`` and its HTTP headers."""
        operation = self.operation(op)
        parts = [self._head, operation.open]
        for name in operation.params:
            value = params.get(name, "")
            text = codec.xml_text(value)
            if text is None:
                raise InvalidInputError(
                    f"{name} holds a character XML cannot carry", field=name, value=value
                )
            parts.append(f"<{name}>{text}</{name}>")
        parts.append(operation.close)
        parts.append(self._tail)
        return "".join(parts).encode("utf-8"), self._headers[op.name]

    def result(self, op: Operation, response: Response, max_bytes: int) -> etree._Element | str:
        """The result element of an answer to ``op`` (its text is ``codec.result_text``'s), or
        the error it stands for."""
        _screen(response)
        try:
            found = self._read(op, response, max_bytes)
        except ProtocolError as exc:
            if exc.status is None:
                exc.status = response.status
            raise
        if isinstance(found, SoapFaultError):
            raise found  # as zeep's engine raises it: the fault, with no HTTP status
        return found

    def _read(
        self, op: Operation, response: Response, max_bytes: int
    ) -> etree._Element | str | SoapFaultError:
        envelope_ns = _ENVELOPE_NS[self._version]
        root, answer = codec.soap_answer(response.content, max_bytes=max_bytes)
        if root.tag != f"{{{envelope_ns}}}Envelope":
            raise ProtocolError(
                f"a {root.tag.partition('}')[0][1:]} envelope answered a {self._version} call",
                excerpt=codec.excerpt(response.content),
            )
        if answer.tag == f"{{{envelope_ns}}}Fault":
            return _read_fault(answer, self._version)
        if response.status != 200:
            raise ProtocolError(
                f"HTTP {response.status} without a SOAP fault",
                excerpt=codec.excerpt(response.content),
            )
        operation = self.operation(op)
        if answer.tag != operation.response:
            raise ProtocolError(
                f"expected <{operation.response}>, got <{answer.tag}>",
                excerpt=codec.excerpt(response.content),
            )
        for child in answer:
            if child.tag == operation.result:
                return child
        return ""


def _read_fault(fault: etree._Element, version: SoapName) -> SoapFaultError:
    """The error a SOAP Fault element stands for."""
    if version == "soap11":
        code, message = fault.findtext("faultcode"), fault.findtext("faultstring")
    else:
        namespace = codec.SOAP12_NS
        code = fault.findtext(f"{{{namespace}}}Code/{{{namespace}}}Value")
        message = fault.findtext(f"{{{namespace}}}Reason/{{{namespace}}}Text")
    return _fault_error(code, message)


class _SoapBinding:
    """What both SOAP protocols hold: the binding's kind, the endpoint, the WSDL, the engine."""

    def __init__(
        self,
        endpoint: str,
        version: SoapName,
        wsdl: str | os.PathLike[str] | None,
        engine: SoapEngine,
    ) -> None:
        if engine not in ("fast", "zeep"):
            raise ValueError(f"soap engine must be 'fast' or 'zeep', not {engine!r}")
        self.name: str = version
        self._endpoint = endpoint
        self._wsdl = wsdl
        self._service: Any = None
        #: The fast engine, once the WSDL is read; None before, and for good with ``"zeep"`` or
        #: a WSDL only zeep reads (``_zeep`` is then True).
        self._fast: _FastSoap | None = None
        self._zeep = engine == "zeep"

    def _fast_engine(self, fetch: Callable[[str], bytes]) -> _FastSoap | None:
        """The fast engine, or None when zeep must make the call; ``fetch`` gives a remote
        WSDL's bytes."""
        if self._fast is None and not self._zeep:
            try:
                binding = wsdl.soap_binding(self._wsdl, _KIND[self.name], fetch)
            except wsdl.UnsupportedWsdlError:
                self._zeep = True
                return None
            self._fast = _FastSoap(binding, cast(SoapName, self.name))
        return self._fast

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
        engine: SoapEngine = "fast",
    ) -> None:
        super().__init__(endpoint, version, wsdl, engine)
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

    def _fetch(self, url: str) -> bytes:
        return _wsdl_bytes(self._http.request("GET", url), self._http.max_response_bytes)

    def _create_service(self) -> Any:
        import zeep
        from zeep.proxy import ServiceProxy

        return self._proxy(zeep.Client, ServiceProxy, _zeep_transport(self._http))

    def call(self, op: Operation, params: Mapping[str, str]) -> str:
        """The result text of ``op`` (``<OpResult>``) over SOAP."""
        fast = self._fast or self._fast_engine(self._fetch)
        if fast is not None:
            body, headers = fast.request(op, params)
            response = self._http.request("POST", self._endpoint, body=body, headers=headers)
            found = fast.result(op, response, self._http.max_response_bytes)
            del response  # a long list's bytes go before its text is made (codec.result_text)
            return codec.result_text(found)
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
        engine: SoapEngine = "fast",
    ) -> None:
        super().__init__(endpoint, version, wsdl, engine)
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

    async def _fetch(self) -> None:
        """Nothing: a remote WSDL's bytes are in ``_fetched`` (fetched once, awaited)."""
        if self._wsdl is not None:
            location = os.fspath(self._wsdl)
            if location in self._fetched:
                return
            if urlparse(location).scheme.lower() in ("http", "https"):
                response = await self._http.request("GET", location)
                self._fetched[location] = _wsdl_bytes(response, self._http.max_response_bytes)

    async def call(self, op: Operation, params: Mapping[str, str]) -> str:
        """The result text of ``op`` (``<OpResult>``) over SOAP."""
        fast = self._fast
        if fast is None and not self._zeep:
            await self._fetch()
            fast = self._fast_engine(self._fetched.__getitem__)
        if fast is not None:
            body, headers = fast.request(op, params)
            response = await self._http.request("POST", self._endpoint, body=body, headers=headers)
            found = fast.result(op, response, self._http.max_response_bytes)
            del response  # a long list's bytes go before its text is made (codec.result_text)
            return codec.result_text(found)
        if self._service is None:
            await self._fetch()
        method = getattr(self.service, op.name)
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
        return _fault_error(exc.code, exc.message)
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


def _fault_error(fault_code: str | None, message: str | None) -> SoapFaultError:
    code = str(fault_code or "").rpartition(":")[2] or "Server"
    # SOAP 1.2 says Sender/Receiver where SOAP 1.1 says Client/Server.
    code = {"Sender": "Client", "Receiver": "Server"}.get(code, code)
    # ASMX appends a .NET stack trace after the first line; it never belongs in an error text.
    lines = str(message or "").strip().splitlines()
    return SoapFaultError((lines[0] if lines else "SOAP fault")[:300], fault_code=code)
