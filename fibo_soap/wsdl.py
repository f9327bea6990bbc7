"""The service description: where the shipped WSDL lives, one parsed copy of it per process, and
the lookups the client and the emulator make in it.

Bindings are found by what they are (SOAP 1.1, SOAP 1.2, HTTP GET, HTTP POST), never by the names
of the service, its ports or its bindings, and the namespace is read from the document: a refreshed
WSDL with another namespace or another class name behind it must just work.

Importing this module parses nothing and does not import zeep.
"""

from __future__ import annotations

import enum
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlparse

from lxml import etree

from fibo_soap.codec import parse_xml
from fibo_soap.errors import ProtocolError
from fibo_soap.operations import OPERATIONS

if TYPE_CHECKING:
    from zeep.settings import Settings
    from zeep.transports import Transport
    from zeep.wsdl.definitions import Binding
    from zeep.wsdl.wsdl import Document

__all__ = [
    "BindingKind",
    "binding_qname",
    "bundled_wsdl_path",
    "clear_cache",
    "find_binding",
    "load_document",
    "missing_operations",
    "operation_params",
    "settings",
    "target_namespace",
    "wsdl_with_address",
]

_WSDL_NS: Final = "http://schemas.xmlsoap.org/wsdl/"
#: The namespaces of the address elements of a wsdl:port: SOAP 1.1, SOAP 1.2, HTTP GET/POST.
_ADDRESS_NAMESPACES: Final = (
    "http://schemas.xmlsoap.org/wsdl/soap/",
    "http://schemas.xmlsoap.org/wsdl/soap12/",
    "http://schemas.xmlsoap.org/wsdl/http/",
)
_URL_SCHEMES: Final = frozenset({"http", "https", "file"})


class BindingKind(enum.Enum):
    """How a call travels: the four bindings an ASMX service describes."""

    SOAP11 = "SOAP 1.1"
    SOAP12 = "SOAP 1.2"
    HTTP_GET = "HTTP GET"
    HTTP_POST = "HTTP POST"


def bundled_wsdl_path() -> Path:
    """The path of the WSDL shipped with the package (FIBO's ``Service.asmx?WSDL``).

    A wheel carries it as ``fibo_soap/_wsdl/Service.wsdl``; a source or editable checkout keeps it
    at ``<repo>/wsdl/Service.wsdl``.
    """
    packaged = resources.files("fibo_soap").joinpath("_wsdl", "Service.wsdl")
    # A wheel installs as plain files, so the resource is a real path; a zipped install is not
    # supported (zeep reads the WSDL by path).
    if isinstance(packaged, Path) and packaged.is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "wsdl" / "Service.wsdl"


def settings() -> Settings:
    """The zeep Settings for every parse of the WSDL and of SOAP answers: no DTD, no entities, no
    fetches beyond the WSDL itself, strict XML.

    A fresh object on each call: zeep Settings are mutable (``with settings(raw_response=True)``),
    so sharing one would let one caller's override leak into another's.
    """
    from zeep.settings import Settings

    return Settings(
        strict=True,
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
        # FIBO's list results are large escaped strings inside one element.
        xml_huge_tree=True,
    )


_cache: dict[str, Document] = {}
_cache_lock = threading.Lock()
_location_locks: dict[str, threading.Lock] = {}


def _cache_key(location: str | os.PathLike[str] | None) -> str:
    if location is None:
        return str(bundled_wsdl_path())
    text = os.fspath(location)
    if urlparse(text).scheme.lower() in _URL_SCHEMES:
        return text
    return os.path.abspath(text)


def load_document(
    location: str | os.PathLike[str] | None = None,
    transport: Transport | None = None,
) -> Document:
    """The parsed WSDL at ``location`` (the bundled one by default), shared by the whole process.

    The first call for a location parses it with :func:`settings`; later calls, from any thread,
    get the same object. ``transport`` is used only by the call that does the parsing (to fetch a
    live ``?WSDL``); it is not part of the cache key. Raises ProtocolError when zeep refuses the
    document (not XML, a DTD or entity, an external import); a transport's own errors pass through.
    """
    key = _cache_key(location)
    with _cache_lock:
        document = _cache.get(key)
        if document is not None:
            return document
        location_lock = _location_locks.setdefault(key, threading.Lock())
    # One lock per location: a slow fetch of one WSDL does not hold up the others.
    with location_lock:
        with _cache_lock:
            document = _cache.get(key)
        if document is not None:
            return document
        from zeep.exceptions import Error as ZeepError
        from zeep.transports import Transport as ZeepTransport
        from zeep.wsdl.wsdl import Document as ZeepDocument

        # zeep annotates Document's transport as type[Transport] (it takes an instance) and
        # leaves Transport() unannotated: go through Any rather than silence the checker.
        untyped: Any = ZeepDocument
        try:
            parsed: Document = untyped(
                key,
                transport if transport is not None else cast(Any, ZeepTransport)(),
                settings=settings(),
            )
        except ZeepError as exc:
            # Malformed XML, a DTD or entity, a forbidden import: not a WSDL we can use.
            raise ProtocolError(f"the WSDL at {key} cannot be used: {exc}") from exc
        with _cache_lock:
            _cache[key] = parsed
        return parsed


def clear_cache() -> None:
    """Nothing: forgets every parsed WSDL, so that the next :func:`load_document` or
    :func:`soap_binding` of a location parses it again (after ``fibo-sms wsdl refresh`` rewrote
    it, or between tests)."""
    with _cache_lock:
        _cache.clear()
        _location_locks.clear()
        _bindings.clear()


def _binding_class(kind: BindingKind) -> type[Any]:
    from zeep.wsdl import bindings

    classes: dict[BindingKind, type[Any]] = {
        BindingKind.SOAP11: bindings.Soap11Binding,
        BindingKind.SOAP12: bindings.Soap12Binding,
        BindingKind.HTTP_GET: bindings.HttpGetBinding,
        BindingKind.HTTP_POST: bindings.HttpPostBinding,
    }
    return classes[kind]


def find_binding(document: Document, kind: BindingKind) -> Binding:
    """The first binding of ``kind`` in the WSDL, in document order.

    Found by its zeep class, never by a service, port or binding name. Raises ProtocolError when
    the WSDL describes no binding of that kind.
    """
    wanted = _binding_class(kind)
    for binding in document.bindings.values():
        # Exact class: both SOAP bindings derive from SoapBinding, and a transport may register
        # subclasses of its own (Transport.binding_classes) whose wire format we cannot vouch for.
        if type(binding) is wanted:
            return binding
    raise ProtocolError(
        f"the WSDL at {document.location} has no {kind.value} binding "
        f"(it has: {', '.join(type(b).__name__ for b in document.bindings.values()) or 'none'})"
    )


def binding_qname(binding: Binding) -> str:
    """The binding's qualified name as ``{namespace}Name``, as ``zeep.Client.create_service``
    takes it."""
    return str(binding.name.text)


def target_namespace(document: Document) -> str:
    """The targetNamespace of the WSDL's root definitions (``http://tempuri.org/`` for FIBO).

    Raises ProtocolError when the WSDL declares none.
    """
    definitions = list(document._definitions.values())
    root = next((d for d in definitions if d.location == document.location), None)
    if root is None and definitions:
        root = definitions[0]
    namespace = root.target_namespace if root is not None else None
    if not namespace:
        raise ProtocolError(f"the WSDL at {document.location} declares no targetNamespace")
    return str(namespace)


def _operations(binding: Binding) -> dict[str, Any]:
    # Binding.all() is zeep's public accessor of the operations, left unannotated by zeep.
    return cast("dict[str, Any]", cast(Any, binding).all())


def operation_params(binding: Binding, name: str) -> tuple[str, ...]:
    """The parameter names of wire method ``name`` in ``binding``, in wire order.

    The same for all four kinds: the children of the SOAP request element, or the message parts
    of GET/POST. Raises ProtocolError when the binding lacks the method.
    """
    operation = _operations(binding).get(name)
    if operation is None or operation.input is None:
        raise ProtocolError(f"the {binding_qname(binding)} binding has no operation {name}")
    return tuple(str(child) for child, _element in operation.input.body.type.elements)


def missing_operations(document: Document) -> list[str]:
    """The wire methods of :data:`fibo_soap.operations.OPERATIONS` that the WSDL's SOAP 1.1
    binding lacks, in the table's order; empty when it has them all.

    Raises ProtocolError when the WSDL has no SOAP 1.1 binding at all.
    """
    present = _operations(find_binding(document, BindingKind.SOAP11))
    return [name for name in OPERATIONS if name not in present]


def wsdl_with_address(address: str, source: bytes | None = None) -> bytes:
    """The WSDL text (the bundled one by default) with the ``location`` of every port's
    soap:address, soap12:address and http:address set to ``address``.

    The emulator answers ``Service.asmx?WSDL`` with it, as ASMX names its own host. The rest of
    the text is kept as it is. Raises ProtocolError when ``source`` is not a WSDL document.
    """
    data = bundled_wsdl_path().read_bytes() if source is None else source
    root = parse_xml(data)
    if root.tag != f"{{{_WSDL_NS}}}definitions":
        raise ProtocolError(f"not a WSDL document: the root element is {root.tag}")
    for port in root.iterfind(f"{{{_WSDL_NS}}}service/{{{_WSDL_NS}}}port"):
        for child in port:
            if not isinstance(child.tag, str):  # a comment or processing instruction
                continue
            qname = etree.QName(child)
            if qname.localname == "address" and qname.namespace in _ADDRESS_NAMESPACES:
                child.set("location", address)
    # ASMX writes the declaration with double quotes; lxml's own uses single quotes.
    body = etree.tostring(root.getroottree(), encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


def wsdl_namespace(source: bytes | None = None) -> str:
    """The targetNamespace of a WSDL text (the bundled one by default), read without zeep.

    The emulator needs only this of the WSDL, so it never loads zeep.
    """
    data = bundled_wsdl_path().read_bytes() if source is None else source
    root = parse_xml(data)
    namespace = root.get("targetNamespace")
    if root.tag != f"{{{_WSDL_NS}}}definitions" or not namespace:
        raise ProtocolError("not a WSDL document with a targetNamespace")
    return namespace


# --- the SOAP bindings read without zeep, for the fast path of SoapProtocol --------------------

_XSD_NS: Final = "http://www.w3.org/2001/XMLSchema"
_SOAP_BINDING_NS: Final = {
    BindingKind.SOAP11: "http://schemas.xmlsoap.org/wsdl/soap/",
    BindingKind.SOAP12: "http://schemas.xmlsoap.org/wsdl/soap12/",
}


class UnsupportedWsdlError(ProtocolError):
    """The WSDL uses more of WSDL or XML Schema than :func:`read_soap_binding` reads (imports,
    references, RPC style, encoded use...): zeep, which reads all of it, calls it instead."""


@dataclass(frozen=True, slots=True)
class SoapOperation:
    """What a SOAP call of one wire method needs from the WSDL, in the shape the envelope is
    written and read in."""

    name: str
    #: The SOAPAction (SOAP 1.1 header; SOAP 1.2 ``action`` parameter of the Content-Type).
    action: str
    #: The request element's start and end tags, its namespace declared.
    open: str
    close: str
    #: The request element's children, in schema order.
    params: tuple[str, ...]
    #: Whether the children are in the request element's namespace (elementFormDefault).
    qualified: bool
    #: ``{namespace}Name`` of the response element and of its result child.
    response: str
    result: str


@dataclass(frozen=True, slots=True)
class SoapBinding:
    """The operations of one SOAP binding of a WSDL, by wire method name."""

    kind: BindingKind
    operations: Mapping[str, SoapOperation]


def _qname(node: etree._Element, value: str | None, what: str) -> str:
    """``{namespace}local`` of a QName-valued attribute, resolved against ``node``'s prefixes."""
    if not value:
        raise UnsupportedWsdlError(f"the WSDL's {what} names nothing")
    prefix, _, local = value.rpartition(":")
    namespace = node.nsmap.get(prefix or None)
    if namespace is None:
        if prefix:
            raise UnsupportedWsdlError(f"the WSDL's {what} uses an undeclared prefix {prefix!r}")
        return local
    return f"{{{namespace}}}{local}"


def _schema_elements(root: etree._Element) -> dict[str, tuple[etree._Element, etree._Element]]:
    """Every global element of the WSDL's inline schemas: ``{ns}name`` → (element, schema)."""
    found: dict[str, tuple[etree._Element, etree._Element]] = {}
    for schema in root.iterfind(f"{{{_WSDL_NS}}}types/{{{_XSD_NS}}}schema"):
        if schema.find(f"{{{_XSD_NS}}}import") is not None:
            raise UnsupportedWsdlError("the WSDL's schema imports another")
        namespace = schema.get("targetNamespace", "")
        for element in schema.iterfind(f"{{{_XSD_NS}}}element"):
            found[f"{{{namespace}}}{element.get('name')}"] = (element, schema)
    return found


def _sequence(
    qname: str, elements: dict[str, tuple[etree._Element, etree._Element]]
) -> tuple[tuple[str, ...], bool]:
    """The child names of the sequence of global element ``qname`` and whether they are
    qualified; UnsupportedWsdlError for any other shape than ASMX's (an anonymous complexType
    with one sequence of simple, named elements, or none)."""
    if qname not in elements:
        raise UnsupportedWsdlError(f"the WSDL's schema has no element {qname}")
    element, schema = elements[qname]
    types = element.findall(f"{{{_XSD_NS}}}complexType")
    if element.get("type") is not None or len(types) != 1:
        raise UnsupportedWsdlError(f"element {qname} is not an inline complexType")
    shape = [child for child in types[0] if isinstance(child.tag, str)]
    sequence = shape[0] if shape else None
    if shape and (len(shape) != 1 or sequence is None or sequence.tag != f"{{{_XSD_NS}}}sequence"):
        raise UnsupportedWsdlError(f"element {qname} is not one sequence")
    names: list[str] = []
    forms: set[str] = set()
    default_form = schema.get("elementFormDefault", "unqualified")
    for child in sequence if sequence is not None else ():
        if not isinstance(child.tag, str):
            continue
        name = child.get("name")
        if child.tag != f"{{{_XSD_NS}}}element" or not name or child.get("ref") is not None:
            raise UnsupportedWsdlError(f"element {qname} holds something else than elements")
        if not _NCNAME(name):
            raise UnsupportedWsdlError(f"element {qname} has a child named {name!r}")
        names.append(name)
        forms.add(child.get("form", default_form))
    if len(forms) > 1:
        raise UnsupportedWsdlError(f"element {qname} mixes qualified and unqualified children")
    return tuple(names), forms != {"unqualified"}


def read_soap_binding(data: bytes, kind: BindingKind) -> SoapBinding:
    """The first binding of ``kind`` (SOAP 1.1 or 1.2) in the WSDL text ``data``, read with the
    hardened parser: document/literal operations whose messages are one element each.

    ProtocolError when it is not a WSDL or has no such binding; UnsupportedWsdlError when it is
    of a shape only zeep reads.
    """
    soap_ns = _SOAP_BINDING_NS[kind]
    root = parse_xml(data)
    if root.tag != f"{{{_WSDL_NS}}}definitions":
        raise ProtocolError(f"not a WSDL document: the root element is {root.tag}")
    for binding in root.iterfind(f"{{{_WSDL_NS}}}binding"):
        style = binding.find(f"{{{soap_ns}}}binding")
        if style is not None:
            break
    else:
        raise ProtocolError(f"the WSDL has no {kind.value} binding")
    if style.get("style", "document") != "document":
        raise UnsupportedWsdlError(f"the {kind.value} binding is not document style")
    by_name = {
        f"{{{root.get('targetNamespace', '')}}}{node.get('name')}": node
        for tag in ("portType", "message")
        for node in root.iterfind(f"{{{_WSDL_NS}}}{tag}")
    }
    port_type = by_name.get(_qname(binding, binding.get("type"), "binding type"))
    if port_type is None:
        raise UnsupportedWsdlError(f"the {kind.value} binding's portType is not in the WSDL")
    elements = _schema_elements(root)

    def message_element(operation: etree._Element, direction: str) -> str:
        io = operation.find(f"{{{_WSDL_NS}}}{direction}")
        message = by_name.get(
            _qname(operation, io.get("message") if io is not None else "", direction)
        )
        parts = message.findall(f"{{{_WSDL_NS}}}part") if message is not None else []
        if len(parts) != 1 or parts[0].get("element") is None:
            raise UnsupportedWsdlError(f"the {direction} of an operation is not one element")
        return _qname(parts[0], parts[0].get("element"), "message part")

    abstract = {op.get("name"): op for op in port_type.iterfind(f"{{{_WSDL_NS}}}operation")}
    operations: dict[str, SoapOperation] = {}
    for node in binding.iterfind(f"{{{_WSDL_NS}}}operation"):
        name = node.get("name", "")
        soap_operation = node.find(f"{{{soap_ns}}}operation")
        bodies = node.findall(f"{{{_WSDL_NS}}}input/{{{soap_ns}}}body")
        if name not in abstract or soap_operation is None:
            raise UnsupportedWsdlError(f"operation {name} is not fully described")
        if any(body.get("use", "literal") != "literal" for body in bodies):
            raise UnsupportedWsdlError(f"operation {name} is not literal")
        request = message_element(abstract[name], "input")
        response = message_element(abstract[name], "output")
        params, qualified = _sequence(request, elements)
        results, result_qualified = _sequence(response, elements)
        if len(results) != 1:
            raise UnsupportedWsdlError(f"the response of {name} is not one result")
        namespace, _, local = request[1:].partition("}")
        if not _NCNAME(local):
            raise UnsupportedWsdlError(f"operation {name}'s request element is named {local!r}")
        response_ns = response[1:].partition("}")[0]
        if qualified:
            open_tag, close_tag = f'<{local} xmlns="{_attr(namespace)}">', f"</{local}>"
        else:
            open_tag, close_tag = f'<m:{local} xmlns:m="{_attr(namespace)}">', f"</m:{local}>"
        operations[name] = SoapOperation(
            name=name,
            action=soap_operation.get("soapAction", ""),
            open=open_tag,
            close=close_tag,
            params=params,
            qualified=qualified,
            response=response,
            result=f"{{{response_ns}}}{results[0]}" if result_qualified else results[0],
        )
    return SoapBinding(kind, operations)


#: An XML name without a prefix: what the envelope writer may put between angle brackets as is.
_NCNAME = re.compile(r"[^\W\d][\w.-]*").fullmatch


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


_bindings: dict[tuple[str, BindingKind], SoapBinding] = {}


def soap_binding(
    location: str | os.PathLike[str] | None,
    kind: BindingKind,
    fetch: Callable[[str], bytes] | None = None,
) -> SoapBinding:
    """:func:`read_soap_binding` of the WSDL at ``location`` (the bundled one by default), once
    per process and location; ``fetch`` reads a URL's bytes (a live ``?WSDL``)."""
    key = (_cache_key(location), kind)
    binding = _bindings.get(key)
    if binding is None:
        text = key[0]
        scheme = urlparse(text).scheme.lower()
        if scheme in ("http", "https"):
            if fetch is None:
                raise ProtocolError(f"the WSDL at {text} must be fetched first")
            data = fetch(text)
        else:
            data = Path(urlparse(text).path if scheme == "file" else text).read_bytes()
        binding = _bindings.setdefault(key, read_soap_binding(data, kind))
    return binding
