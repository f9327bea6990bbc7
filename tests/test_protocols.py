"""The protocol layer: both SOAP engines put the same request on the wire and read answers alike,
the WSDL reader behind the fast one, the ASMX form encoding, and HttpTransport's pool and proxies.

The SOAP engines are compared by sending each call through a recording transport: what zeep's
serializer writes is the reference for what the fast engine writes, and zeep's reading of an
answer the reference for the fast engine's reading.
"""

from __future__ import annotations

import gc
import socket
import threading
import tracemalloc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hostile import ThreadedServer
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from fibo_soap import codec, wsdl
from fibo_soap.errors import ConnectError, FiboError, InvalidInputError, ProtocolError
from fibo_soap.operations import OPERATIONS, Operation
from fibo_soap.protocols.http import AsmxHttpProtocol, form_fields
from fibo_soap.protocols.soap import SoapProtocol
from fibo_soap.protocols.transport import HttpTransport, Response

ENDPOINT = "http://127.0.0.1:9/Service.asmx"
VERSIONS = {"soap11": "1.1", "soap12": "1.2"}
TNS = "http://tempuri.org/"


# --- a transport that records what a protocol sends and answers what the test says ------------


@dataclass
class Recorder:
    """Stands in for HttpTransport: keeps each request, answers with ``answer``."""

    answer: Response
    max_response_bytes: int = 1 << 20
    sent: list[tuple[str, str, bytes, dict[str, str]]] = field(default_factory=list)

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        self.sent.append((method, url, body or b"", dict(headers or {})))
        return self.answer


def _ok(op: Operation, version: str, value: str) -> Response:
    body = codec.encode_soap_response(op, value, version=VERSIONS[version], namespace=TNS)  # type: ignore[arg-type]
    media = "text/xml" if version == "soap11" else "application/soap+xml"
    return Response(200, {"Content-Type": f"{media}; charset=utf-8"}, body)


def _call(
    engine: str,
    version: str,
    op: Operation,
    params: dict[str, str],
    answer: Response,
    wsdl_path: Path | None = None,
) -> tuple[Any, tuple[str, str, bytes, dict[str, str]]]:
    recorder = Recorder(answer)
    protocol = SoapProtocol(recorder, ENDPOINT, version, wsdl_path, engine=engine)  # type: ignore[arg-type]
    try:
        outcome: Any = protocol.call(op, params)
    except FiboError as exc:
        outcome = (type(exc), str(exc))
    return outcome, recorder.sent[0]


def _tree(data: bytes) -> Any:
    """An envelope as a comparable value: namespaces and names, text, order; not prefixes."""

    def walk(element: etree._Element) -> Any:
        return (element.tag, element.text or "", tuple(walk(child) for child in element))

    return walk(etree.fromstring(data))


def _params(op: Operation, value: str) -> dict[str, str]:
    return {name: f"{value}-{i}" for i, name in enumerate(op.params)}


@pytest.mark.parametrize("version", ["soap11", "soap12"])
@pytest.mark.parametrize("name", list(OPERATIONS))
def test_both_engines_send_the_same_request(name: str, version: str) -> None:
    op = OPERATIONS[name]
    params = _params(op, "v <&> ]]> 'x' \"y\" \r\n\tđ Việt 😀")
    answer = _ok(op, version, "7")
    zeep_result, zeep_sent = _call("zeep", version, op, params, answer)
    fast_result, fast_sent = _call("fast", version, op, params, answer)
    assert fast_result == zeep_result == "7"
    assert fast_sent[:2] == zeep_sent[:2] == ("POST", ENDPOINT)
    assert _tree(fast_sent[2]) == _tree(zeep_sent[2])
    assert fast_sent[3] == zeep_sent[3]


@pytest.mark.parametrize("version", ["soap11", "soap12"])
@settings(max_examples=60, deadline=None)
@given(value=st.text())
def test_both_engines_send_any_text_alike_or_refuse_it_alike(version: str, value: str) -> None:
    op = OPERATIONS["SendSMS"]
    params = {name: value for name in op.params}
    answer = _ok(op, version, "0")
    _zeep_result, zeep_sent = _safe_call("zeep", version, op, params, answer)
    fast_result, fast_sent = _safe_call("fast", version, op, params, answer)
    if fast_sent is None:
        # The fast engine names the parameter; zeep (lxml) refuses the same text with ValueError.
        assert isinstance(fast_result, InvalidInputError)
        assert zeep_sent is None
        return
    assert zeep_sent is not None
    assert _tree(fast_sent[2]) == _tree(zeep_sent[2])
    assert etree.fromstring(fast_sent[2]).findtext(f".//{{{TNS}}}smsMessage") == value


def _safe_call(
    engine: str, version: str, op: Operation, params: dict[str, str], answer: Response
) -> tuple[Any, Any]:
    recorder = Recorder(answer)
    protocol = SoapProtocol(recorder, ENDPOINT, version, engine=engine)  # type: ignore[arg-type]
    try:
        return protocol.call(op, params), recorder.sent[0]
    except (FiboError, ValueError) as exc:
        return exc, recorder.sent[0] if recorder.sent else None


def _fault(version: str, reason: str, status: int = 500) -> Response:
    body = codec.encode_soap_fault(VERSIONS[version], "Client", reason)  # type: ignore[arg-type]
    media = "text/xml" if version == "soap11" else "application/soap+xml"
    return Response(status, {"Content-Type": f"{media}; charset=utf-8"}, body)


ANSWERS = {
    "a fault": lambda v: _fault(v, "Server did not recognize the value.\n   at Stack.Trace()"),
    "a fault with 200": lambda v: _fault(v, "odd but seen", 200),
    "no result element": lambda v: Response(
        200,
        {"Content-Type": "text/xml"},
        codec.encode_soap_response(
            OPERATIONS["About"], "x", version=VERSIONS[v], namespace=TNS
        ).replace(b"<AboutResult>x</AboutResult>", b""),
    ),
    "a comment inside the result": lambda v: Response(
        200,
        {"Content-Type": "text/xml"},
        codec.encode_soap_response(
            OPERATIONS["About"], "2x00", version=VERSIONS[v], namespace=TNS
        ).replace(b"2x00", b"2<!-- -->00"),
    ),
}


@pytest.mark.parametrize("version", ["soap11", "soap12"])
@pytest.mark.parametrize("case", list(ANSWERS))
def test_both_engines_read_an_answer_alike(case: str, version: str) -> None:
    answer = ANSWERS[case](version)
    op = OPERATIONS["About"]
    zeep_result, _ = _call("zeep", version, op, {}, answer)
    fast_result, _ = _call("fast", version, op, {}, answer)
    assert fast_result == zeep_result


@pytest.mark.parametrize("version", ["soap11", "soap12"])
def test_an_envelope_of_the_other_version_is_refused(version: str) -> None:
    other = "soap12" if version == "soap11" else "soap11"
    result, _ = _call(
        "fast", version, OPERATIONS["About"], {}, _ok(OPERATIONS["About"], other, "x")
    )
    assert result[0] is ProtocolError
    assert "envelope answered" in result[1]


# --- the WSDL reader ---------------------------------------------------------------------------


def _variant(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    text = wsdl.bundled_wsdl_path().read_text("utf-8")
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "Service.wsdl"
    path.write_text(text, "utf-8")
    wsdl.clear_cache()
    return path


@pytest.fixture(autouse=True)
def _fresh_wsdl_cache() -> Iterator[None]:
    yield
    wsdl.clear_cache()


@pytest.mark.parametrize("version", ["soap11", "soap12"])
def test_unqualified_children_are_written_as_zeep_writes_them(tmp_path: Path, version: str) -> None:
    path = _variant(
        tmp_path, ('elementFormDefault="qualified"', 'elementFormDefault="unqualified"')
    )
    op = OPERATIONS["SendSMS"]
    params = _params(op, "x")
    binding = wsdl.soap_binding(path, wsdl.BindingKind.SOAP11)
    assert not binding.operations["SendSMS"].qualified
    # The answer's result element is unqualified too.
    answer = _ok(op, version, "ok")
    answer = Response(
        answer.status,
        answer.headers,
        answer.content.replace(
            b"<SendSMSResult>ok</SendSMSResult>", b'<SendSMSResult xmlns="">ok</SendSMSResult>'
        ),
    )
    zeep_result, zeep_sent = _call("zeep", version, op, params, answer, path)
    fast_result, fast_sent = _call("fast", version, op, params, answer, path)
    assert fast_result == zeep_result == "ok"
    assert _tree(fast_sent[2]) == _tree(zeep_sent[2])


def test_another_namespace_and_class_name_just_work(tmp_path: Path) -> None:
    path = _variant(
        tmp_path, ("http://tempuri.org/", "urn:fibo:other/"), ("ServiceSoap", "GatewaySoap")
    )
    op = OPERATIONS["CheckClient"]
    answer = Response(
        200,
        {"Content-Type": "text/xml"},
        codec.encode_soap_response(op, "<SMS/>", version="1.1", namespace="urn:fibo:other/"),
    )
    result, sent = _call("fast", "soap11", op, _params(op, "x"), answer, path)
    assert result == "<SMS/>"
    assert sent[3]["SOAPAction"] == '"urn:fibo:other/CheckClient"'
    assert etree.fromstring(sent[2])[0][0].tag == "{urn:fibo:other/}CheckClient"


def test_a_wsdl_only_zeep_reads_is_called_through_zeep(tmp_path: Path) -> None:
    # RPC style: the fast reader declines it, and the call goes through zeep instead.
    path = _variant(
        tmp_path,
        (
            '<soap:binding transport="http://schemas.xmlsoap.org/soap/http" />',
            '<soap:binding transport="http://schemas.xmlsoap.org/soap/http" style="rpc" />',
        ),
    )
    with pytest.raises(wsdl.UnsupportedWsdlError):
        wsdl.soap_binding(path, wsdl.BindingKind.SOAP11)
    protocol = SoapProtocol(
        Recorder(_ok(OPERATIONS["About"], "soap11", "x")), ENDPOINT, "soap11", path
    )  # type: ignore[arg-type]
    protocol.call(OPERATIONS["About"], {})
    assert protocol._service is not None  # zeep's proxy made the call


def test_a_wsdl_without_the_binding_is_a_protocol_error(tmp_path: Path) -> None:
    path = _variant(tmp_path, ("soap12:binding", "soap12:nothing"))
    with pytest.raises(ProtocolError, match=r"no SOAP 1\.2 binding"):
        wsdl.soap_binding(path, wsdl.BindingKind.SOAP12)


def test_every_operation_of_the_table_is_in_the_bundled_wsdl_alike() -> None:
    for kind in (wsdl.BindingKind.SOAP11, wsdl.BindingKind.SOAP12):
        binding = wsdl.soap_binding(None, kind)
        for name, op in OPERATIONS.items():
            assert binding.operations[name].params == op.params


# --- the ASMX form --------------------------------------------------------------------------


@settings(max_examples=500)
@given(st.lists(st.text(), min_size=6, max_size=6))
def test_form_fields_are_what_urlencode_writes(values: list[str]) -> None:
    op = OPERATIONS["SendSMS"]
    params = dict(zip(op.params, values, strict=True))
    assert form_fields(op, params) == urlencode([(n, params[n]) for n in op.params])


# --- HttpTransport ------------------------------------------------------------------------------


class Server(ThreadedServer):
    """A loopback HTTP/1.1 server that answers each request with ``body`` (``OK``), then
    ``extra`` bytes that belong to no answer, and counts connections; ``close_idle`` makes it
    close each connection after one answer without saying so."""

    def __init__(
        self,
        *,
        close_idle: bool = False,
        body: bytes = b"OK",
        extra: bytes = b"",
        content_type: bytes = b"text/plain",
    ) -> None:
        self.close_idle = close_idle
        self.answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: "
            + content_type
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
            + extra
        )
        self.heads: list[bytes] = []
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:  # the client reset a connection it would not reuse
                        return
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                self.heads.append(head)
                conn.sendall(self.answer)
                if self.close_idle:
                    return


def test_kept_alive_connections_are_reused() -> None:
    server = Server()
    transport = HttpTransport(max_response_bytes=1000)
    try:
        for path in ("/x", "/Service.asmx/About", "/Service.asmx/CheckClient?a=1", "/x"):
            assert (
                transport.request("GET", f"http://127.0.0.1:{server.port}{path}").content == b"OK"
            )
        assert server.connections == 1  # one origin, one connection, whatever the path
    finally:
        transport.close()
        server.close()


def test_a_connection_the_server_closed_is_not_reused() -> None:
    server = Server(close_idle=True)
    transport = HttpTransport(max_response_bytes=1000)
    try:
        for _ in range(3):
            response = transport.request("GET", f"http://127.0.0.1:{server.port}/x")
            assert response.content == b"OK"
            # Give the server's close time to arrive before the next request looks.
            threading.Event().wait(0.05)
        assert server.connections == 3
    finally:
        transport.close()
        server.close()


def test_a_long_answer_is_read_whole_and_nothing_keeps_it() -> None:
    body = bytes(range(256)) * 8192  # 2 MB: past one read of the socket
    server = Server(body=body)
    transport = HttpTransport(max_response_bytes=len(body))
    gc.collect()
    gc.disable()
    try:
        for _ in range(2):
            response = transport.request("GET", f"http://127.0.0.1:{server.port}/x")
            assert response.content == body
            del response
            # No reference cycle is left to hold the answer until the collector runs.
            assert gc.collect() == 0
        assert server.connections == 1
    finally:
        gc.enable()
        transport.close()
        server.close()


def test_bytes_after_an_answer_are_not_read_as_the_next_one() -> None:
    body = b"x" * 300_000
    stray = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"
    server = Server(body=body, extra=stray)
    transport = HttpTransport(max_response_bytes=len(body))
    try:
        for _ in range(3):
            assert transport.request("GET", f"http://127.0.0.1:{server.port}/x").content == body
            threading.Event().wait(0.02)  # the stray bytes are there before the next request
        assert server.connections == 3  # a connection with bytes waiting on it is not reused
    finally:
        transport.close()
        server.close()


@pytest.mark.parametrize("protocol", ["get", "soap11"])
def test_a_long_list_is_not_held_as_bytes_and_text_at_once(protocol: str) -> None:
    # The protocol lets the answer's bytes go before the result's text is made: the Python
    # memory of a call (the text, not libxml2's tree) peaks at about one copy of the answer.
    op = OPERATIONS["GetSMSSentList"]
    row = "<SMSLIST><SMSID>{0}</SMSID><PhoneNumber>0909{0:06d}</PhoneNumber></SMSLIST>"
    rows = "".join(row.format(i) for i in range(40_000))
    document = f"<DocumentElement>{rows}</DocumentElement>"
    if protocol == "get":
        body = codec.encode_http_body(op, document, TNS)
    else:
        body = codec.encode_soap_response(op, document, version="1.1", namespace=TNS)
    media = b"text/xml; charset=utf-8"
    server = Server(body=body, content_type=media)
    transport = HttpTransport(max_response_bytes=len(body))
    endpoint = f"http://127.0.0.1:{server.port}/Service.asmx"
    caller: Any = (
        AsmxHttpProtocol(transport, endpoint, "get")
        if protocol == "get"
        else SoapProtocol(transport, endpoint, "soap11")
    )
    params = {"clientNo": "CL1", "clientPass": "pw", "minutes": "5"}
    try:
        caller.call(op, params)  # the WSDL read, the connection made
        tracemalloc.start()
        text = caller.call(op, params)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        transport.close()
        server.close()
    assert text == document
    assert len(body) + len(text) > 1.6 * len(body)  # what holding both would take
    assert peak < 1.3 * len(body)


def test_a_plain_http_proxy_gets_the_whole_url_and_its_credentials() -> None:
    proxy = Server()
    transport = HttpTransport(
        max_response_bytes=1000, proxies={"http": f"http://us%40er:p%3Ass@127.0.0.1:{proxy.port}"}
    )
    try:
        transport.request("GET", "http://fibo.example:8080/Service.asmx/About?x=1")
    finally:
        transport.close()
        proxy.close()
    head = proxy.heads[0].decode()
    assert head.startswith("GET http://fibo.example:8080/Service.asmx/About?x=1 HTTP/1.1\r\n")
    assert "Proxy-Authorization: Basic dXNAZXI6cDpzcw==" in head  # base64 of "us@er:p:ss"


def test_a_proxy_that_refuses_the_tunnel_is_a_connect_error() -> None:
    refusing = socket.create_server(("127.0.0.1", 0))
    port = refusing.getsockname()[1]

    def refuse() -> None:
        conn, _ = refusing.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=refuse, daemon=True).start()
    transport = HttpTransport(
        max_response_bytes=1000, proxies={"https": f"http://127.0.0.1:{port}"}
    )
    try:
        with pytest.raises(ConnectError) as caught:
            transport.request("GET", "https://fibo.example/Service.asmx/About")
    finally:
        transport.close()
        refusing.close()
    assert caught.value.request_sent is False
    assert "407" in str(caught.value)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/a b", "http://127.0.0.1:9/\u00e0", "ftp://127.0.0.1/x"]
)
def test_a_url_that_cannot_be_sent_is_refused_before_anything_is(url: str) -> None:
    transport = HttpTransport(max_response_bytes=1000, connect_timeout=0.5)
    with pytest.raises((ProtocolError, ConnectError)) as caught:
        transport.request("GET", url)
    assert not isinstance(caught.value, ConnectError) or caught.value.request_sent is False


def test_a_refused_url_is_not_quoted_in_the_error() -> None:
    transport = HttpTransport(max_response_bytes=1000, connect_timeout=0.5)
    server = Server()
    try:
        with pytest.raises(ProtocolError) as caught:
            transport.request("GET", f"http://127.0.0.1:{server.port}/x?clientPass=S3cr3t one")
    finally:
        transport.close()
        server.close()
    assert "S3cr3t" not in str(caught.value)
    assert caught.value.__context__ is None


@pytest.mark.parametrize("engine", ["fast", "zeep"])
def test_a_client_sends_with_the_engine_it_was_given(engine: str) -> None:
    from fibo_soap.emulator import run_emulator

    with run_emulator() as emu:
        client = emu.client(protocols=("soap11",), soap_engine=engine)
        assert client.check_client() is not None
        soap = client._protocols[0]
        assert (soap._service is not None) is (engine == "zeep")
        assert (soap._fast is not None) is (engine == "fast")
        client.close()


def test_an_unknown_engine_is_refused() -> None:
    from fibo_soap import FiboClient

    with pytest.raises(InvalidInputError, match="soap_engine"):
        FiboClient("CL1", "pw", soap_engine="lxml")  # type: ignore[arg-type]


def test_a_child_name_that_is_not_an_xml_name_is_left_to_zeep(tmp_path: Path) -> None:
    path = _variant(tmp_path, ('name="smsGUID"', 'name="sms&gt;GUID"'))
    with pytest.raises(wsdl.UnsupportedWsdlError, match="child named"):
        wsdl.soap_binding(path, wsdl.BindingKind.SOAP11)
