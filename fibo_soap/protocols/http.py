"""ASMX's HTTP GET and HTTP POST protocols: ``/Service.asmx/<Method>`` with form-encoded fields.

``AsmxHttpProtocol`` sends through ``HttpTransport``, ``AsyncAsmxHttpProtocol`` through
``AsyncHttpTransport``; the request they make and the reading of the answer are written once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote_plus

from fibo_soap import codec
from fibo_soap.errors import AsmxError, HttpStatusError, ProtocolError
from fibo_soap.operations import Operation
from fibo_soap.protocols.transport import HttpTransport, Response

if TYPE_CHECKING:
    from lxml import etree

    from fibo_soap.protocols.async_transport import AsyncHttpTransport

#: Past this length a GET URL risks being cut by proxies and servers (IIS, ASP.NET defaults).
MAX_GET_URL = 2000

_FORM = "application/x-www-form-urlencoded"


def form_fields(op: Operation, params: Mapping[str, str]) -> str:
    """Every parameter of ``op`` form-encoded in wire order, '' for unset ones: what
    ``urllib.parse.urlencode`` writes.

    ASMX refuses a GET/POST call that lacks any parameter ("Missing parameter"), so each one is
    always sent.
    """
    return "&".join(
        f"{name}={value if _UNRESERVED(value) else quote_plus(value)}"
        for name in op.params
        for value in (params.get(name) or "",)
    )


#: What quote_plus leaves as it is: a value of only these needs no encoding (most of them: the
#: account, GUIDs, service types, dates are quoted by nobody). Parameter names are all of these.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch


class AsmxForm:
    """What both ASMX GET/POST protocols share: the endpoint, the verb, the request of a call."""

    def __init__(self, endpoint: str, verb: Literal["get", "post"]) -> None:
        self.name: str = verb
        self.endpoint = endpoint.rstrip("/")
        self._verb = verb

    def url_length(self, op: Operation, params: Mapping[str, str]) -> int:
        """The length the GET URL of this call would have."""
        return len(self.endpoint) + len(op.name) + 2 + len(form_fields(op, params))

    def _request(
        self, op: Operation, params: Mapping[str, str]
    ) -> tuple[str, str, bytes | None, dict[str, str] | None]:
        """The method, URL, body and headers of a call of ``op``."""
        url = f"{self.endpoint}/{op.name}"
        fields = form_fields(op, params)
        if self._verb == "get":
            return "GET", f"{url}?{fields}" if fields else url, None, None
        return "POST", url, fields.encode("ascii"), {"Content-Type": _FORM}


class AsmxHttpProtocol(AsmxForm):
    """Calls a method over HTTP GET or POST and returns the text inside ``<string>``."""

    def __init__(
        self, transport: HttpTransport, endpoint: str, verb: Literal["get", "post"]
    ) -> None:
        super().__init__(endpoint, verb)
        self._transport = transport

    def call(self, op: Operation, params: Mapping[str, str]) -> str:
        """The result text of ``op`` over HTTP GET or POST."""
        method, url, body, headers = self._request(op, params)
        response = self._transport.request(method, url, body=body, headers=headers)
        found = http_answer_result(response, self._transport.max_response_bytes)
        del response  # a long list's bytes go before its text is made (codec.result_text)
        return codec.result_text(found)

    def close(self) -> None:
        """Nothing of its own to release: the transport is the client's."""


class AsyncAsmxHttpProtocol(AsmxForm):
    """``AsmxHttpProtocol`` for AsyncFiboClient, over ``AsyncHttpTransport``."""

    def __init__(
        self, transport: AsyncHttpTransport, endpoint: str, verb: Literal["get", "post"]
    ) -> None:
        super().__init__(endpoint, verb)
        self._transport = transport

    async def call(self, op: Operation, params: Mapping[str, str]) -> str:
        """The result text of ``op`` over HTTP GET or POST."""
        method, url, body, headers = self._request(op, params)
        response = await self._transport.request(method, url, body=body, headers=headers)
        found = http_answer_result(response, self._transport.max_response_bytes)
        del response  # a long list's bytes go before its text is made (codec.result_text)
        return codec.result_text(found)

    async def aclose(self) -> None:
        """Nothing of its own to release: the transport is the client's."""


def read_http_answer(response: Response, max_bytes: int) -> str:
    """The result text of an ASMX GET/POST answer, or the error it stands for."""
    return codec.result_text(http_answer_result(response, max_bytes))


def http_answer_result(response: Response, max_bytes: int) -> etree._Element | str:
    """What ``read_http_answer`` reads, before the text is taken (``codec.result_text``)."""
    if response.status == 200:
        if "xml" not in response.media_type:
            raise ProtocolError(
                f"expected XML, got {response.media_type or 'no content type'}",
                excerpt=codec.excerpt(response.content),
                status=200,
            )
        return codec.http_body_result(response.content, max_bytes=max_bytes)
    if response.status == 500 and response.media_type == "text/plain":
        # ASMX's refusal of the call itself: unknown method, missing parameter, request
        # validation. The first line is the reason; the rest is a .NET stack trace.
        text = response.content.decode("utf-8", "replace").strip()
        reason = text.splitlines()[0] if text else "HTTP 500"
        raise AsmxError(reason[:300], excerpt=codec.excerpt(text), status=500)
    if 200 <= response.status < 300:
        # A success status without ASMX's answer (204 from a proxy, say): the request went
        # through, so it is not an error status that proves the method did not run.
        raise ProtocolError(
            f"HTTP {response.status} is not an ASMX answer",
            excerpt=codec.excerpt(response.content),
            status=response.status,
        )
    raise HttpStatusError(
        f"HTTP {response.status} ({response.media_type or 'no content type'}): "
        f"{codec.excerpt(response.content, 120)}",
        status=response.status,
    )
