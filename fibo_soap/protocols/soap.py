"""SOAP 1.1 and 1.2 through zeep, driven by the WSDL, sending over the client's HttpTransport."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any, Literal

from fibo_soap import codec
from fibo_soap.errors import HttpStatusError, ProtocolError, SoapFaultError
from fibo_soap.operations import Operation
from fibo_soap.protocols.transport import HttpTransport, Response

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
            return _ZeepResponse(http.request("POST", address, body=message, headers=headers))

        def get(self, address: str, params: Any, headers: Mapping[str, str]) -> Any:
            return _ZeepResponse(http.request("GET", address, headers=headers))

        def _load_remote_data(self, url: str) -> bytes:
            response = http.request("GET", url)
            if response.status != 200:
                raise HttpStatusError(f"WSDL fetch answered HTTP {response.status}", status=200)
            return response.content

    return _Transport()


class SoapProtocol:
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
        self.name: str = version
        self._http = transport
        self._endpoint = endpoint
        self._wsdl = wsdl
        self._service: Any = None
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

        from fibo_soap import wsdl

        transport = _zeep_transport(self._http)
        document = wsdl.load_document(self._wsdl, transport)
        client = zeep.Client(wsdl=document, transport=transport, settings=wsdl.settings())
        kind = wsdl.BindingKind.SOAP11 if self.name == "soap11" else wsdl.BindingKind.SOAP12
        binding = wsdl.find_binding(document, kind)
        return client.create_service(wsdl.binding_qname(binding), self._endpoint)

    def call(self, op: Operation, params: Mapping[str, str]) -> str:
        """The result text of ``op`` (``<OpResult>``) over SOAP."""
        import zeep.exceptions
        from lxml import etree

        method = getattr(self.service, op.name)
        try:
            result = method(**{name: params.get(name, "") for name in op.params})
        except zeep.exceptions.Fault as fault:
            raise _fault_error(fault) from None
        except zeep.exceptions.TransportError as exc:
            content = exc.content if isinstance(exc.content, bytes) else b""
            if exc.status_code >= 400 and not content.lstrip().startswith(b"<"):
                raise HttpStatusError(
                    f"HTTP {exc.status_code}: {codec.excerpt(content, 120)}",
                    status=exc.status_code,
                ) from None
            raise ProtocolError(
                "the answer is not a SOAP envelope",
                excerpt=codec.excerpt(content),
                status=exc.status_code,
            ) from None
        except (zeep.exceptions.Error, etree.LxmlError, ValueError) as exc:
            raise ProtocolError(f"undecodable SOAP answer: {type(exc).__name__}") from None
        return "" if result is None else str(result)

    def close(self) -> None:
        """Forget the service proxy (the shared transport stays open)."""
        self._service = None


def _fault_error(fault: Any) -> SoapFaultError:
    code = str(fault.code or "").rpartition(":")[2] or "Server"
    # SOAP 1.2 says Sender/Receiver where SOAP 1.1 says Client/Server.
    code = {"Sender": "Client", "Receiver": "Server"}.get(code, code)
    # ASMX appends a .NET stack trace after the first line; it never belongs in an error text.
    lines = str(fault.message or "").strip().splitlines()
    return SoapFaultError((lines[0] if lines else "SOAP fault")[:300], fault_code=code)
