"""FIBO's XML in both directions, and the project's one hardened XML parser.

Outgoing: the request documents (smsList, listPhoneNumber, the multi-message document, the status
query) built with lxml so that escaping is always right. Incoming: the double-encoded results: the
envelope or ``<string>`` first, then the inner document in its text. The emulator uses the same
module the other way round: it parses request documents and writes result documents and envelopes.

The codec knows no HTTP and no FIBO code's meaning; it turns bytes into values and back.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from lxml import etree

from fibo_soap.errors import InvalidInputError, ProtocolError, ResponseTooLargeError
from fibo_soap.models import VN_TZ, IncomingStatus, SmsStatus, StatusDocument
from fibo_soap.operations import (
    REQUEST_DATE_FORMAT,
    Column,
    Kind,
    Operation,
    RequestDocument,
    Result,
)

#: Default bound on any XML this library parses (a response body, or a request at the emulator).
MAX_XML_BYTES = 50 * 1024 * 1024

_EXCERPT_CHARS = 200
_LINE_BREAKS = re.compile(r"\s*[\r\n]\s*")
_VN_TIME_FORMAT = "%d/%m/%Y(%H:%M:%S)"

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
SoapVersion = Literal["1.1", "1.2"]

_local = threading.local()


class _NoExternalResources(etree.Resolver):
    """Answers every external resource libxml2 asks for (DTD, entity) with an empty document.

    ``resolve_entities=False`` does not stop libxml2 from loading a DOCTYPE's external subset or an
    external parameter entity while it parses, before parse_xml can refuse the DOCTYPE: without
    this, a hostile body makes the parser open any local path it names (a FIFO or a device blocks
    the thread).
    """

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:  # type: ignore[override]
        return self.resolve_string("", context, base_url=None)


def _parser() -> etree.XMLParser:
    # lxml parsers keep state while parsing, so each thread gets its own.
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=True,  # large list results are one long text node inside <string>
            remove_pis=True,
            collect_ids=False,
        )
        parser.resolvers.add(_NoExternalResources())
        _local.parser = parser
    return parser


def excerpt(data: bytes | str, limit: int = _EXCERPT_CHARS) -> str:
    """The start of a body as printable text, for error messages (callers redact it).

    Line breaks and the indentation around them become one space; spaces and tabs inside a line
    are kept as they are, so that a secret echoed in the body is still found by its spelling.
    """
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = _LINE_BREAKS.sub(" ", text[: limit * 2]).strip()
    return text[:limit] + ("…" if len(text) > limit else "")


def parse_xml(data: bytes | str, *, max_bytes: int = MAX_XML_BYTES) -> etree._Element:
    """The root element of an XML document, parsed with no DTD, no entities and no network.

    Raises ResponseTooLargeError past ``max_bytes`` and ProtocolError for anything that is not a
    plain, well-formed document (a DOCTYPE of any kind is refused: nothing FIBO sends has one).
    """
    size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
    if size > max_bytes:
        raise ResponseTooLargeError(
            f"XML document of {size} bytes exceeds the bound of {max_bytes} bytes",
            excerpt=excerpt(data[:400]),
        )
    if isinstance(data, str):
        # lxml refuses str input that declares an encoding; the text is already decoded.
        data = data.encode("utf-8")
        if data.startswith(b"<?xml"):
            end = data.find(b"?>")
            data = data[end + 2 :] if end != -1 else data
    parser = _parser()
    error: ProtocolError | None = None  # raised outside the except block: no lxml __context__
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        error = ProtocolError(f"malformed XML: {exc.msg}", excerpt=excerpt(data))
    if error is not None:
        raise error
    # lxml returns some documents that libxml2 reported errors in (an undeclared namespace
    # prefix, when a warning comes after it): such a tree has tags like "soap:Envelope" that
    # lxml's own QName refuses. Not namespace-well-formed, so not XML we take.
    failed = next((e for e in parser.error_log if e.level >= etree.ErrorLevels.ERROR), None)
    if failed is not None:
        raise ProtocolError(f"malformed XML: {failed.message}", excerpt=excerpt(data))
    if root is None:
        raise ProtocolError("empty XML document", excerpt=excerpt(data))
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lacks DocInfo.doctype
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise ProtocolError("XML with a DOCTYPE is refused", excerpt=excerpt(data))
    return root


def sanitize(data: bytes, *, max_bytes: int = MAX_XML_BYTES) -> bytes:
    """The document as the hardened parser reads it, written back as UTF-8 bytes.

    For an XML parser that is not ours (zeep's, reading a fetched WSDL): what it gets has no
    DOCTYPE and no processing instruction, in one encoding. Raises as :func:`parse_xml`, with an
    excerpt of the body.
    """
    return etree.tostring(parse_xml(data, max_bytes=max_bytes), encoding="utf-8")


def sanitize_soap_answer(data: bytes, *, max_bytes: int = MAX_XML_BYTES) -> bytes:
    """A SOAP answer as :func:`sanitize` writes it, once it is known to have FIBO's shape.

    ProtocolError unless the root is a SOAP 1.1 or 1.2 Envelope with one Body holding one
    element, and when a result element (``Body/<OpResponse>/<OpResult>``) holds elements: every
    FIBO result is text, and a SOAP library reading one would keep only the text before the first
    element.
    """
    root = parse_xml(data, max_bytes=max_bytes)
    env_ns = etree.QName(root).namespace
    if local_name(root) != "Envelope" or env_ns not in (SOAP11_NS, SOAP12_NS):
        raise ProtocolError(
            f"not a SOAP envelope: the root element is <{local_name(root)}>",
            excerpt=excerpt(data),
        )
    bodies = [child for child in _children(root) if child.tag == f"{{{env_ns}}}Body"]
    answers = list(_children(bodies[0])) if len(bodies) == 1 else []
    if len(answers) != 1:
        # ASMX answers with one element (the response or a Fault); zeep fails on less or more.
        raise ProtocolError(
            "a SOAP answer must hold one Body with one element", excerpt=excerpt(data)
        )
    if local_name(answers[0]) != "Fault":
        for result in _children(answers[0]):
            _text(result)
    # zeep keeps comments and instructions, and reads only the text before one.
    etree.strip_tags(root, etree.Comment, etree.ProcessingInstruction)
    return etree.tostring(root, encoding="utf-8")


def local_name(element: etree._Element) -> str:
    """The tag of an element without its namespace ('' for comments and the like)."""
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def _children(element: etree._Element) -> Iterator[etree._Element]:
    for child in element:
        if isinstance(child.tag, str):
            yield child


def _text(element: etree._Element, operation: str | None = None) -> str:
    """The whole text of an element that holds a value: a comment inside it does not cut it
    short (``<Code>2<!-- -->00</Code>`` is 200, where ``.text`` is 2). ProtocolError when it
    holds elements: reading only the text around them would silently drop them."""
    if not len(element):
        return element.text or ""
    parts = [element.text or ""]
    for child in element:
        if isinstance(child.tag, str):
            raise ProtocolError(
                f"{operation + ': ' if operation else ''}<{local_name(element)}> holds elements, "
                "not text",
                excerpt=excerpt(etree.tostring(element, encoding="unicode")),
                operation=operation,
            )
        parts.append(child.tail or "")
    return "".join(parts)


# --- request documents -------------------------------------------------------------------------


def encode_document(shape: RequestDocument, rows: Iterable[Sequence[str] | str]) -> str:
    """The escaped-text value of a request document: one row element per item of ``rows``.

    A row is a sequence of strings in the order of ``shape.fields`` (or one string for a shape
    without fields). Raises InvalidInputError for text XML cannot carry (NUL, lone surrogates…).
    """
    root = etree.Element(shape.root)
    for row in rows:
        element = etree.SubElement(root, shape.row)
        try:
            if not shape.fields:
                element.text = row if isinstance(row, str) else row[0]
                continue
            values = (row,) if isinstance(row, str) else row
            for name, value in zip(shape.fields, values, strict=True):
                etree.SubElement(element, name).text = value
        except ValueError as exc:
            raise InvalidInputError(
                f"text cannot be carried in XML: {exc}", field=shape.row
            ) from None
    return etree.tostring(root, encoding="unicode")


def decode_document(
    shape: RequestDocument, text: str, *, max_bytes: int = MAX_XML_BYTES
) -> list[tuple[str | None, ...]]:
    """The rows of a request document, each a tuple in ``shape.fields`` order (None if missing).

    Element names match case-insensitively; a wrong root raises ProtocolError.
    """
    root = parse_xml(text, max_bytes=max_bytes)
    if local_name(root).lower() != shape.root.lower():
        raise ProtocolError(f"expected <{shape.root}>, got <{local_name(root)}>")
    wanted = shape.row.lower()
    rows: list[tuple[str | None, ...]] = []
    for row in _children(root):
        if local_name(row).lower() != wanted:
            continue
        if not shape.fields:
            rows.append((_text(row),))
            continue
        found: dict[str, str] = {}
        for child in _children(row):
            found.setdefault(local_name(child).lower(), _text(child))
        rows.append(tuple(found.get(name.lower()) for name in shape.fields))
    return rows


def request_date(value: date | datetime | None) -> str:
    """A date as FIBO takes it in requests (MM-DD-YYYY); '' for None.

    InvalidInputError for anything that is not a date: text is never passed through as a date.
    """
    if value is None:
        return ""
    if not isinstance(value, date):
        raise InvalidInputError(
            f"a date must be a datetime.date or datetime, not {type(value).__name__}",
            field="date",
        )
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(VN_TZ)
    return value.strftime(REQUEST_DATE_FORMAT)


def parse_request_date(text: str) -> date | None:
    """The date of a MM-DD-YYYY request value; None for ''; ValueError otherwise."""
    text = text.strip()
    if not text:
        return None
    return datetime.strptime(text, REQUEST_DATE_FORMAT).date()


# --- result documents --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrongPhones:
    """FIBO's ``<ListWrongPhoneNumber>``: the GUIDs of the recipients it rejected."""

    guids: tuple[str, ...]


Decoded = str | int | StatusDocument | WrongPhones | list[Any]


def parse_time(text: str) -> datetime:
    """An aware datetime in Vietnam time from either of FIBO's formats; ValueError otherwise."""
    text = text.strip()
    if "(" in text:
        return datetime.strptime(text, _VN_TIME_FORMAT).replace(tzinfo=VN_TZ)
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=VN_TZ)
    return value.astimezone(VN_TZ)


def _convert(kind: Kind, text: str) -> Any:
    if kind is Kind.RAW:
        return text
    text = text.strip()
    if not text:
        return None
    if kind is Kind.TEXT:
        return text
    if kind is Kind.INT:
        return int(text)
    if kind is Kind.TIME or kind is Kind.VN_TIME:
        return parse_time(text)
    if kind is Kind.SMS_STATUS:
        number = int(text)
        return SmsStatus(number) if number in SmsStatus._value2member_map_ else number
    number = int(text)
    return IncomingStatus(number) if number in IncomingStatus._value2member_map_ else number


@functools.cache
def _column_map(op: Operation) -> dict[str, Column]:
    return {column.element.lower(): column for column in op.columns}


def _rows(op: Operation, root: etree._Element) -> list[Any]:
    assert op.row is not None
    columns = _column_map(op)
    # Every field of the model, not only the operation's columns: a list that has no element
    # for a field (GetCommingSMSList has no SentDate) leaves it None.
    fields = [field.name for field in dataclasses.fields(op.row)]
    rows: list[Any] = []
    for row in _children(root):
        values: dict[str, Any] = dict.fromkeys(fields)
        for child in _children(row):
            column = columns.get(local_name(child).lower())
            if column is None:
                continue
            text = _text(child, op.name)
            try:
                values[column.field] = _convert(column.kind, text)
            except ValueError:
                raise ProtocolError(
                    f"{op.name}: bad value in <{local_name(child)}>",
                    excerpt=excerpt(text),
                    operation=op.name,
                ) from None
        rows.append(op.row(**values))
    return rows


def _status(root: etree._Element, op: Operation) -> StatusDocument:
    found = {local_name(child).lower(): _text(child, op.name) for child in _children(root)}
    try:
        code = int(found.get("code", "").strip())
    except ValueError:
        raise ProtocolError(
            f"{op.name}: status document without a numeric <Code>",
            excerpt=excerpt(etree.tostring(root)),
            operation=op.name,
        ) from None
    return StatusDocument(code, found.get("message", "").strip(), found.get("time", "").strip())


def decode_result(op: Operation, text: str, *, max_bytes: int = MAX_XML_BYTES) -> Decoded:
    """The value inside an operation's result text (the second of the two parses).

    About gives its text; GetTotalPageOfClientSMS and a bare balance give an int; otherwise a
    StatusDocument, WrongPhones, or the list of typed rows of ``op.row``.
    """
    if op.result is Result.TEXT:
        return text.strip()
    stripped = text.strip()
    if op.result is Result.INT or (op.result is Result.BALANCE and not stripped.startswith("<")):
        try:
            return int(stripped)
        except ValueError:
            raise ProtocolError(
                f"{op.name}: expected an integer", excerpt=excerpt(text), operation=op.name
            ) from None
    if not stripped:
        raise ProtocolError(f"{op.name}: empty result", operation=op.name)
    try:
        root = parse_xml(stripped, max_bytes=max_bytes)
    except ProtocolError as exc:
        exc.operation = op.name
        raise
    name = local_name(root).lower()
    if name == "sms":
        return _status(root, op)
    if name == "listwrongphonenumber":
        return WrongPhones(tuple(_text(c, op.name).strip() for c in _children(root)))
    if name == "documentelement" and op.row is not None:
        return _rows(op, root)
    raise ProtocolError(
        f"{op.name}: unexpected result document <{local_name(root)}>",
        excerpt=excerpt(stripped),
        operation=op.name,
    )


def _encode_value(kind: Kind, value: Any) -> str:
    if value is None:
        return ""
    if kind is Kind.TIME:
        return str(value.astimezone(VN_TZ).isoformat(timespec="seconds"))
    if kind is Kind.VN_TIME:
        return str(value.astimezone(VN_TZ).strftime(_VN_TIME_FORMAT))
    if kind is Kind.SMS_STATUS or kind is Kind.INCOMING_STATUS:
        return str(int(value))
    return str(value)


def encode_rows(op: Operation, rows: Iterable[Any]) -> str:
    """A list document of ``op`` from model rows, with the operation's own element names."""
    root = etree.Element("DocumentElement")
    for row in rows:
        element = etree.SubElement(root, "SMSLIST")
        for column in op.columns:
            child = etree.SubElement(element, column.element)
            value = getattr(row, column.field)
            # Written as an empty element, as the vendor's examples print a missing MSGUID.
            if value is not None:
                child.text = _encode_value(column.kind, value)
    return etree.tostring(root, encoding="unicode")


def encode_status(code: int, message: str) -> str:
    """A status document ``<SMS><Code/><Message/><Time/></SMS>``."""
    root = etree.Element("SMS")
    etree.SubElement(root, "Code").text = str(code)
    etree.SubElement(root, "Message").text = message
    etree.SubElement(root, "Time")
    return etree.tostring(root, encoding="unicode")


def encode_wrong_phones(guids: Iterable[str]) -> str:
    """A ``<ListWrongPhoneNumber>`` document of rejected GUIDs."""
    root = etree.Element("ListWrongPhoneNumber")
    for guid in guids:
        etree.SubElement(root, "MSGUID").text = guid
    return etree.tostring(root, encoding="unicode")


# --- the outer layer: <string> bodies and SOAP envelopes ---------------------------------------


def _default_ns(namespace: str) -> Any:
    # lxml takes None as the key of the default namespace; lxml-stubs does not know it.
    return {None: namespace}


def decode_http_body(body: bytes, *, max_bytes: int = MAX_XML_BYTES) -> str:
    """The result text of an ASMX GET/POST answer (the first of the two parses).

    The ``<string>``/``<int>`` root is accepted in any namespace; a body whose root is a result
    document itself (FIBO's ListWrongPhoneNumber outside ``<string>``) is returned whole.
    """
    root = parse_xml(body, max_bytes=max_bytes)
    if local_name(root) in ("string", "int"):
        if any(isinstance(child.tag, str) for child in root):
            raise ProtocolError(
                f"<{local_name(root)}> holds elements, not text", excerpt=excerpt(body)
            )
        return _text(root)
    return etree.tostring(root, encoding="unicode")


def encode_http_body(op: Operation, value: str | int, namespace: str) -> bytes:
    """An ASMX GET/POST answer: ``<string xmlns=…>escaped text</string>`` (``<int>`` for ints)."""
    root = etree.Element(
        f"{{{namespace}}}{'int' if op.returns_int else 'string'}", nsmap=_default_ns(namespace)
    )
    root.text = str(value)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def soap_namespace(version: SoapVersion) -> str:
    """The envelope namespace of a SOAP version."""
    return SOAP11_NS if version == "1.1" else SOAP12_NS


def _envelope(version: SoapVersion) -> tuple[etree._Element, etree._Element]:
    env_ns = soap_namespace(version)
    nsmap = {
        "soap": env_ns,
        "xsi": "http://www.w3.org/2001/XMLSchema-instance",
        "xsd": "http://www.w3.org/2001/XMLSchema",
    }
    envelope = etree.Element(f"{{{env_ns}}}Envelope", nsmap=nsmap)
    body = etree.SubElement(envelope, f"{{{env_ns}}}Body")
    return envelope, body


def encode_soap_response(
    op: Operation, value: str | int, *, version: SoapVersion, namespace: str
) -> bytes:
    """A SOAP response envelope ``<OpResponse><OpResult>…</OpResult></OpResponse>``."""
    envelope, body = _envelope(version)
    response = etree.SubElement(
        body, f"{{{namespace}}}{op.name}Response", nsmap=_default_ns(namespace)
    )
    etree.SubElement(response, f"{{{namespace}}}{op.name}Result").text = str(value)
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def encode_soap_fault(
    version: SoapVersion, code: Literal["Client", "Server"], reason: str
) -> bytes:
    """A SOAP fault as ASMX writes it (1.1: faultcode/faultstring/detail; 1.2: Code/Reason)."""
    envelope, body = _envelope(version)
    env_ns = soap_namespace(version)
    fault = etree.SubElement(body, f"{{{env_ns}}}Fault")
    if version == "1.1":
        etree.SubElement(fault, "faultcode").text = f"soap:{code}"
        etree.SubElement(fault, "faultstring").text = reason
        etree.SubElement(fault, "detail")
    else:
        value = "soap:Sender" if code == "Client" else "soap:Receiver"
        code_el = etree.SubElement(fault, f"{{{env_ns}}}Code")
        etree.SubElement(code_el, f"{{{env_ns}}}Value").text = value
        reason_el = etree.SubElement(fault, f"{{{env_ns}}}Reason")
        text = etree.SubElement(reason_el, f"{{{env_ns}}}Text")
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = reason
        etree.SubElement(fault, f"{{{env_ns}}}Detail")
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


@dataclass(frozen=True, slots=True)
class SoapRequest:
    """What a SOAP request envelope asks for: the body element and its parameters."""

    version: SoapVersion
    namespace: str
    method: str
    params: Mapping[str, str | None]


def decode_soap_request(body: bytes, *, max_bytes: int = MAX_XML_BYTES) -> SoapRequest:
    """The method and parameters of a SOAP request envelope; ProtocolError if it is not one.

    A parameter element that is present but nil or empty maps to None or '' as .NET binds it.
    """
    root = parse_xml(body, max_bytes=max_bytes)
    env_ns = etree.QName(root).namespace
    if local_name(root) != "Envelope" or env_ns not in (SOAP11_NS, SOAP12_NS):
        raise ProtocolError("not a SOAP envelope", excerpt=excerpt(body))
    version: SoapVersion = "1.1" if env_ns == SOAP11_NS else "1.2"
    soap_body = next(
        (c for c in _children(root) if c.tag == f"{{{env_ns}}}Body"),
        None,
    )
    if soap_body is None:
        raise ProtocolError("SOAP envelope without a Body", excerpt=excerpt(body))
    elements = list(_children(soap_body))
    if len(elements) != 1:
        raise ProtocolError("SOAP Body must hold exactly one element", excerpt=excerpt(body))
    call = elements[0]
    params: dict[str, str | None] = {}
    nil = "{http://www.w3.org/2001/XMLSchema-instance}nil"
    for child in _children(call):
        # xsi:nil is an xs:boolean: .NET (XmlConvert.ToBoolean) takes "1" and "true", trimmed.
        is_nil = (child.get(nil) or "").strip() in ("true", "1")
        params[local_name(child)] = None if is_nil else _text(child)
    return SoapRequest(version, etree.QName(call).namespace or "", local_name(call), params)
