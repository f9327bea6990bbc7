"""The shipped WSDL against the operation table, and the lookups of fibo_soap.wsdl."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from lxml import etree

from fibo_soap import wsdl
from fibo_soap.errors import ProtocolError
from fibo_soap.operations import OPERATIONS
from fibo_soap.wsdl import BindingKind

WSDL = "http://schemas.xmlsoap.org/wsdl/"
XSD = "http://www.w3.org/2001/XMLSchema"
SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
HTTP = "http://schemas.xmlsoap.org/wsdl/http/"
MIME = "http://schemas.xmlsoap.org/wsdl/mime/"
NS = {"wsdl": WSDL, "s": XSD, "soap": SOAP, "soap12": SOAP12, "http": HTTP, "mime": MIME}

SHIPPED_ADDRESS = "http://center.fibosms.com/Service.asmx"
ALL_KINDS = list(BindingKind)


def _raw() -> etree._Element:
    """The shipped WSDL as a plain XML tree, read without zeep."""
    return etree.parse(str(wsdl.bundled_wsdl_path())).getroot()


def _tns(root: etree._Element) -> str:
    return str(root.get("targetNamespace"))


def _local(value: str | None) -> str:
    """``tns:Name`` → ``Name``."""
    assert value is not None
    return value.split(":", 1)[1]


# --- the file itself, as ASMX writes it (read with lxml, independent of zeep) ---------------------


def test_file_declares_the_asmx_prefixes_and_one_schema() -> None:
    root = _raw()
    assert root.tag == f"{{{WSDL}}}definitions"
    expected = {
        "soap": SOAP,
        "soap12": SOAP12,
        "http": HTTP,
        "mime": MIME,
        "tm": "http://microsoft.com/wsdl/mime/textMatching/",
        "soapenc": "http://schemas.xmlsoap.org/soap/encoding/",
        "s": XSD,
        "tns": _tns(root),
        "wsdl": WSDL,
    }
    assert root.nsmap == expected
    (schema,) = root.findall("wsdl:types/s:schema", NS)
    assert schema.get("elementFormDefault") == "qualified"
    assert schema.get("targetNamespace") == _tns(root)


def test_file_request_and_response_elements_follow_the_table() -> None:
    schema = _raw().find("wsdl:types/s:schema", NS)
    assert schema is not None
    top = {e.get("name"): e for e in schema.findall("s:element", NS)}
    for name, op in OPERATIONS.items():
        request = top[name].findall("s:complexType/s:sequence/s:element", NS)
        assert [e.get("name") for e in request] == list(op.params), name
        for e in request:
            assert (e.get("minOccurs"), e.get("maxOccurs"), e.get("type")) == ("0", "1", "s:string")
        (result,) = top[f"{name}Response"].findall("s:complexType/s:sequence/s:element", NS)
        assert result.get("name") == f"{name}Result"
        expected = ("1", "1", "s:int") if op.returns_int else ("0", "1", "s:string")
        assert (result.get("minOccurs"), result.get("maxOccurs"), result.get("type")) == expected
    # About takes nothing at all: an empty complexType, as ASMX writes a method without arguments.
    about_type = top["About"].find("s:complexType", NS)
    assert about_type is not None
    assert len(about_type) == 0
    # The bare-body elements of the GET/POST answers.
    assert dict(top["string"].items()) == {"name": "string", "nillable": "true", "type": "s:string"}
    assert dict(top["int"].items()) == {"name": "int", "type": "s:int"}
    assert set(top) == {*OPERATIONS, *(f"{n}Response" for n in OPERATIONS), "string", "int"}


@pytest.mark.parametrize("protocol", ["HttpGet", "HttpPost"])
def test_file_http_messages_have_one_string_part_per_parameter(protocol: str) -> None:
    root = _raw()
    messages = {m.get("name"): m for m in root.findall("wsdl:message", NS)}
    for name, op in OPERATIONS.items():
        parts = messages[f"{name}{protocol}In"].findall("wsdl:part", NS)
        expected = [(param, "s:string") for param in op.params]
        assert [(p.get("name"), p.get("type")) for p in parts] == expected
        (body,) = messages[f"{name}{protocol}Out"].findall("wsdl:part", NS)
        assert body.get("name") == "Body"
        assert body.get("element") == ("tns:int" if op.returns_int else "tns:string")


def test_file_soap_messages_wrap_the_request_and_response_elements() -> None:
    messages = {m.get("name"): m for m in _raw().findall("wsdl:message", NS)}
    for name in OPERATIONS:
        (inp,) = messages[f"{name}SoapIn"].findall("wsdl:part", NS)
        (out,) = messages[f"{name}SoapOut"].findall("wsdl:part", NS)
        assert (inp.get("name"), inp.get("element")) == ("parameters", f"tns:{name}")
        assert (out.get("name"), out.get("element")) == ("parameters", f"tns:{name}Response")
    assert len(messages) == 6 * len(OPERATIONS)


def test_file_bindings_and_ports() -> None:
    root = _raw()
    bindings = {b.get("name"): b for b in root.findall("wsdl:binding", NS)}
    assert list(bindings) == ["ServiceSoap", "ServiceSoap12", "ServiceHttpGet", "ServiceHttpPost"]
    for name, prefix in (("ServiceSoap", "soap"), ("ServiceSoap12", "soap12")):
        binding = bindings[name]
        assert binding.get("type") == "tns:ServiceSoap"
        header = binding.find(f"{prefix}:binding", NS)
        assert header is not None
        assert header.get("transport") == "http://schemas.xmlsoap.org/soap/http"
        for op in binding.findall("wsdl:operation", NS):
            soap_op = op.find(f"{prefix}:operation", NS)
            assert soap_op is not None
            assert soap_op.get("style") == "document"
            for direction in ("input", "output"):
                body = op.find(f"wsdl:{direction}/{prefix}:body", NS)
                assert body is not None
                assert body.get("use") == "literal"
    for name, verb, content in (
        ("ServiceHttpGet", "GET", f"{{{HTTP}}}urlEncoded"),
        ("ServiceHttpPost", "POST", f"{{{MIME}}}content"),
    ):
        binding = bindings[name]
        header = binding.find("http:binding", NS)
        assert header is not None
        assert header.get("verb") == verb
        for op in binding.findall("wsdl:operation", NS):
            request_node = op.find("wsdl:input", NS)
            assert request_node is not None
            (request,) = list(request_node)
            assert request.tag == content
            if verb == "POST":
                assert request.get("type") == "application/x-www-form-urlencoded"
            mime_xml = op.find("wsdl:output/mime:mimeXml", NS)
            assert mime_xml is not None
            assert mime_xml.get("part") == "Body"
    ports = root.findall("wsdl:service/wsdl:port", NS)
    assert [(p.get("name"), _local(p.get("binding"))) for p in ports] == [(n, n) for n in bindings]
    addresses = [p[0] for p in ports]
    assert [etree.QName(a).namespace for a in addresses] == [SOAP, SOAP12, HTTP, HTTP]
    assert {a.get("location") for a in addresses} == {SHIPPED_ADDRESS}


# --- the same WSDL as zeep reads it ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS, ids=[k.name for k in ALL_KINDS])
def test_each_binding_has_exactly_the_operations_with_their_params_in_order(
    kind: BindingKind,
) -> None:
    binding = wsdl.find_binding(wsdl.load_document(), kind)
    assert list(binding.all()) == list(OPERATIONS)
    for name, op in OPERATIONS.items():
        assert wsdl.operation_params(binding, name) == op.params, name


@pytest.mark.parametrize("kind", ALL_KINDS, ids=[k.name for k in ALL_KINDS])
def test_result_type_is_int_only_for_get_total_page(kind: BindingKind) -> None:
    binding = wsdl.find_binding(wsdl.load_document(), kind)
    for name, op in OPERATIONS.items():
        output = binding.all()[name].output
        if kind in (BindingKind.SOAP11, BindingKind.SOAP12):
            ((child, element),) = output.body.type.elements
            assert child == f"{name}Result"
            assert element.min_occurs == (1 if op.returns_int else 0)
            result_type = element.type.qname
        else:
            # GET/POST answer with a bare <string> or <int> root element.
            assert output.body.qname.localname == ("int" if op.returns_int else "string")
            result_type = output.body.type.qname
        assert result_type == etree.QName(XSD, "int" if op.returns_int else "string"), name


@pytest.mark.parametrize("kind", [BindingKind.SOAP11, BindingKind.SOAP12])
def test_soap_action_is_namespace_plus_method(kind: BindingKind) -> None:
    document = wsdl.load_document()
    tns = wsdl.target_namespace(document)
    binding = wsdl.find_binding(document, kind)
    for name in OPERATIONS:
        operation = binding.all()[name]
        assert operation.soapaction == tns + name
        assert operation.input.body.qname == etree.QName(tns, name)


@pytest.mark.parametrize("kind", [BindingKind.HTTP_GET, BindingKind.HTTP_POST])
def test_http_location_is_slash_method(kind: BindingKind) -> None:
    binding = wsdl.find_binding(wsdl.load_document(), kind)
    for name in OPERATIONS:
        assert binding.all()[name].location == f"/{name}"


def test_bindings_found_are_the_ones_asmx_names() -> None:
    document = wsdl.load_document()
    tns = wsdl.target_namespace(document)
    assert tns == _tns(_raw())
    names = {kind: wsdl.binding_qname(wsdl.find_binding(document, kind)) for kind in BindingKind}
    assert names == {
        BindingKind.SOAP11: f"{{{tns}}}ServiceSoap",
        BindingKind.SOAP12: f"{{{tns}}}ServiceSoap12",
        BindingKind.HTTP_GET: f"{{{tns}}}ServiceHttpGet",
        BindingKind.HTTP_POST: f"{{{tns}}}ServiceHttpPost",
    }
    assert wsdl.missing_operations(document) == []


def test_binding_qname_is_what_zeep_create_service_takes() -> None:
    import zeep

    document = wsdl.load_document()
    client = zeep.Client(document, settings=wsdl.settings())
    binding = wsdl.find_binding(document, BindingKind.SOAP12)
    service = client.create_service(wsdl.binding_qname(binding), "http://127.0.0.1:9/Service.asmx")
    envelope = client.create_message(service, "CheckClient", clientNo="1", clientPass="p")
    assert etree.QName(envelope).namespace == "http://www.w3.org/2003/05/soap-envelope"


def test_operation_params_of_an_unknown_method_is_a_protocol_error() -> None:
    binding = wsdl.find_binding(wsdl.load_document(), BindingKind.SOAP11)
    with pytest.raises(ProtocolError, match="NoSuchMethod"):
        wsdl.operation_params(binding, "NoSuchMethod")


# --- another namespace, other names, another order ------------------------------------------------


def _renamed(tmp_path: Path, namespace: str = "urn:example:fibo") -> Path:
    """A copy of the WSDL as ASMX would write it for ``[WebService(Namespace = namespace)]`` on a
    class ``SmsService``, its bindings listed in reverse order."""
    root = _raw()
    old = _tns(root)
    # ASMX joins namespace and method with a "/" when the namespace does not end in one.
    action_base = namespace if namespace.endswith("/") else namespace + "/"
    for op in root.iter(f"{{{SOAP}}}operation", f"{{{SOAP12}}}operation"):
        op.set("soapAction", op.get("soapAction", "").replace(old, action_base, 1))
    for node in root.iter():
        for attr in ("name", "type", "binding"):
            value = node.get(attr)
            if value and value.removeprefix("tns:").startswith("Service"):
                node.set(attr, value.replace("Service", "SmsService", 1))
    text = etree.tostring(root, encoding="unicode")
    text = text.replace(f'"{old}"', f'"{namespace}"')  # xmlns:tns, targetNamespace ×2
    tree = etree.fromstring(text)
    bindings = tree.findall("wsdl:binding", NS)
    anchor = bindings[0].getprevious()
    assert anchor is not None
    for binding in bindings:
        tree.remove(binding)
    for binding in bindings:  # each insert lands right after the portTypes: reversed order
        anchor.addnext(binding)
    path = tmp_path / "Renamed.wsdl"
    path.write_bytes(etree.tostring(tree, xml_declaration=True, encoding="utf-8"))
    assert old not in path.read_text()
    return path


def test_another_namespace_and_class_name_still_yield_every_binding(tmp_path: Path) -> None:
    document = wsdl.load_document(_renamed(tmp_path))
    assert wsdl.target_namespace(document) == "urn:example:fibo"
    first = next(iter(document.bindings.values()))
    assert first.name.localname == "SmsServiceHttpPost"
    expected = {
        BindingKind.SOAP11: "SmsServiceSoap",
        BindingKind.SOAP12: "SmsServiceSoap12",
        BindingKind.HTTP_GET: "SmsServiceHttpGet",
        BindingKind.HTTP_POST: "SmsServiceHttpPost",
    }
    for kind, local in expected.items():
        binding = wsdl.find_binding(document, kind)
        assert wsdl.binding_qname(binding) == f"{{urn:example:fibo}}{local}"
        for name, op in OPERATIONS.items():
            assert wsdl.operation_params(binding, name) == op.params
    soap = wsdl.find_binding(document, BindingKind.SOAP11)
    assert soap.all()["SendSMS"].soapaction == "urn:example:fibo/SendSMS"
    assert soap.all()["SendSMS"].input.body.qname == etree.QName("urn:example:fibo", "SendSMS")
    assert wsdl.missing_operations(document) == []


def _without(tmp_path: Path, xpath: str) -> Path:
    root = _raw()
    removed = root.xpath(xpath, namespaces=NS)
    assert isinstance(removed, list)
    assert removed
    for node in removed:
        assert isinstance(node, etree._Element)
        parent = node.getparent()
        assert parent is not None
        parent.remove(node)
    path = tmp_path / "Partial.wsdl"
    path.write_bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))
    return path


def test_a_wsdl_without_a_kind_of_binding_is_a_protocol_error(tmp_path: Path) -> None:
    path = _without(
        tmp_path,
        "/wsdl:definitions/wsdl:binding[http:binding/@verb='GET']"
        " | /wsdl:definitions/wsdl:service/wsdl:port[http:address][1]",
    )
    document = wsdl.load_document(path)
    with pytest.raises(ProtocolError, match="HTTP GET"):
        wsdl.find_binding(document, BindingKind.HTTP_GET)
    assert wsdl.find_binding(document, BindingKind.HTTP_POST) is not None


def test_missing_operations_names_what_the_soap_binding_lacks(tmp_path: Path) -> None:
    path = _without(
        tmp_path,
        "/wsdl:definitions/wsdl:binding[soap:binding]"
        "/wsdl:operation[@name='SendSMS' or @name='GetSMSStatus']",
    )
    assert wsdl.missing_operations(wsdl.load_document(path)) == ["SendSMS", "GetSMSStatus"]


def test_missing_operations_without_a_soap11_binding_is_a_protocol_error(tmp_path: Path) -> None:
    path = _without(
        tmp_path,
        "/wsdl:definitions/wsdl:binding[soap:binding]"
        " | /wsdl:definitions/wsdl:service/wsdl:port[soap:address]",
    )
    with pytest.raises(ProtocolError, match=r"SOAP 1\.1"):
        wsdl.missing_operations(wsdl.load_document(path))


# --- the address the emulator serves --------------------------------------------------------------


def _addresses(data: bytes) -> list[tuple[str, str | None]]:
    root = etree.fromstring(data)
    return [
        (str(etree.QName(a).namespace), a.get("location"))
        for a in root.iterfind("wsdl:service/wsdl:port/*", NS)
        if etree.QName(a).localname == "address"
    ]


def test_wsdl_with_address_rewrites_all_four_addresses_and_nothing_else() -> None:
    here = "http://127.0.0.1:8765/Service.asmx"
    data = wsdl.wsdl_with_address(here)
    assert data.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    assert _addresses(data) == [(SOAP, here), (SOAP12, here), (HTTP, here), (HTTP, here)]
    shipped = wsdl.bundled_wsdl_path().read_bytes().replace(SHIPPED_ADDRESS.encode(), here.encode())
    canonical = etree.tostring(etree.fromstring(shipped), method="c14n")
    assert etree.tostring(etree.fromstring(data), method="c14n") == canonical


def test_wsdl_with_address_of_a_given_source_is_read_by_zeep(tmp_path: Path) -> None:
    here = "http://localhost:1/x/Service.asmx"
    path = tmp_path / "Served.wsdl"
    path.write_bytes(wsdl.wsdl_with_address(here, _renamed(tmp_path).read_bytes()))
    document = wsdl.load_document(path)
    ports = [port for service in document.services.values() for port in service.ports.values()]
    assert len(ports) == 4
    assert {port.binding_options["address"] for port in ports} == {here}
    assert wsdl.target_namespace(document) == "urn:example:fibo"


def test_wsdl_with_address_keeps_comments_and_other_elements() -> None:
    shipped = wsdl.bundled_wsdl_path().read_bytes()
    marked = shipped.replace(
        b'<wsdl:port name="ServiceSoap12" binding="tns:ServiceSoap12">',
        b'<wsdl:port name="ServiceSoap12" binding="tns:ServiceSoap12"><!-- kept -->'
        b"<wsdl:documentation>no address</wsdl:documentation>",
    )
    assert marked != shipped
    data = wsdl.wsdl_with_address("http://h/S.asmx", marked)
    assert b"<!-- kept -->" in data
    assert b"<wsdl:documentation>no address</wsdl:documentation>" in data
    assert [location for _ns, location in _addresses(data)] == ["http://h/S.asmx"] * 4


@pytest.mark.parametrize(
    "source",
    [
        b"<not-xml",
        b'<?xml version="1.0"?><definitions/>',
        b'<!DOCTYPE d [<!ENTITY e "x">]><d xmlns="http://schemas.xmlsoap.org/wsdl/">&e;</d>',
    ],
    ids=["malformed", "not-wsdl", "doctype"],
)
def test_wsdl_with_address_refuses_what_is_not_a_plain_wsdl(source: bytes) -> None:
    with pytest.raises(ProtocolError):
        wsdl.wsdl_with_address("http://x/", source)


# --- loading: where, how, how often ---------------------------------------------------------------


def test_bundled_wsdl_path_in_a_checkout_is_the_repo_file() -> None:
    path = wsdl.bundled_wsdl_path()
    assert path == Path(__file__).resolve().parent.parent / "wsdl" / "Service.wsdl"
    assert path.is_file()


def test_bundled_wsdl_path_in_a_wheel_is_the_package_resource(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged = tmp_path / "fibo_soap" / "_wsdl" / "Service.wsdl"
    packaged.parent.mkdir(parents=True)
    packaged.write_bytes(b"<x/>")

    def files(package: str) -> Path:
        assert package == "fibo_soap"
        return tmp_path / "fibo_soap"

    monkeypatch.setattr("fibo_soap.wsdl.resources", SimpleNamespace(files=files))
    assert wsdl.bundled_wsdl_path() == packaged


def test_load_document_parses_once_per_location(tmp_path: Path) -> None:
    first = wsdl.load_document()
    assert wsdl.load_document() is first
    assert wsdl.load_document(wsdl.bundled_wsdl_path()) is first
    assert wsdl.load_document(str(wsdl.bundled_wsdl_path())) is first
    other = wsdl.load_document(_renamed(tmp_path))
    assert other is not first


def test_load_document_from_many_threads_yields_one_document(tmp_path: Path) -> None:
    path = _renamed(tmp_path)
    start = threading.Barrier(8)
    results: list[Any] = []

    def load() -> None:
        start.wait()
        results.append(wsdl.load_document(path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(result is results[0] for result in results)


def test_clear_cache_makes_the_next_load_parse_again(tmp_path: Path) -> None:
    path = _renamed(tmp_path)
    first = wsdl.load_document(path)
    wsdl.clear_cache()
    assert wsdl.load_document(path) is not first


def test_settings_are_hardened_and_not_shared() -> None:
    settings = wsdl.settings()
    assert settings.forbid_dtd
    assert settings.forbid_entities
    assert settings.forbid_external
    assert settings.strict
    assert settings.xml_huge_tree
    assert wsdl.settings() is not settings


def test_load_document_refuses_a_wsdl_with_a_dtd(tmp_path: Path) -> None:
    from zeep.exceptions import DTDForbidden

    path = tmp_path / "Dtd.wsdl"
    text = wsdl.bundled_wsdl_path().read_text(encoding="utf-8")
    path.write_text(text.replace("?>", "?>\n<!DOCTYPE wsdl:definitions>", 1), encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"Dtd\.wsdl") as caught:
        wsdl.load_document(path)
    assert isinstance(caught.value.__cause__, DTDForbidden)


def test_load_document_of_malformed_xml_is_a_protocol_error(tmp_path: Path) -> None:
    path = tmp_path / "Broken.wsdl"
    path.write_bytes(b"<wsdl:definitions")
    with pytest.raises(ProtocolError):
        wsdl.load_document(path)


def test_importing_the_module_neither_imports_zeep_nor_parses() -> None:
    code = (
        "import sys, fibo_soap.wsdl as w\n"
        "assert 'zeep' not in sys.modules, sorted(m for m in sys.modules if 'zeep' in m)\n"
        "assert not w._cache\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
