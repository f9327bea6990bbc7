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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Literal, NamedTuple, TypedDict, cast

from lxml import etree

from fibo_soap.errors import InvalidInputError, ProtocolError, ResponseTooLargeError
from fibo_soap.models import VN_TZ, IncomingStatus, SmsStatus, StatusDocument
from fibo_soap.operations import (
    REQUEST_DATE_FORMAT,
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


class _Hardening(TypedDict):
    resolve_entities: bool
    no_network: bool
    load_dtd: bool
    dtd_validation: bool
    huge_tree: bool
    remove_pis: bool
    collect_ids: bool


#: The settings of every parser made here: the thread's parser and each list's pull parser.
_HARDENING: Final[_Hardening] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": True,  # large list results are one long text node inside <string>
    "remove_pis": True,
    "collect_ids": False,
}


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
        parser = etree.XMLParser(**_HARDENING)
        parser.resolvers.add(_NoExternalResources())
        _local.parser = parser
    return parser


def _pull_parser() -> etree.XMLPullParser:
    # A fresh one per document: it reports only where a DocumentElement root starts (the
    # elements in between cost no event), so that the rows can be taken as they complete.
    parser = etree.XMLPullParser(events=("start",), tag="{*}DocumentElement", **_HARDENING)
    parser.resolvers.add(_NoExternalResources())
    return parser


def _failure(parser: etree._FeedParser) -> Any:
    # lxml returns some documents that libxml2 reported errors in (an undeclared namespace
    # prefix, when a warning comes after it): such a tree has tags like "soap:Envelope" that
    # lxml's own QName refuses. Not namespace-well-formed, so not XML we take.
    log = parser.error_log  # a copy, made on each read
    if not log:
        return None  # nearly every document: no generator to make
    return next((e for e in log if e.level >= etree.ErrorLevels.ERROR), None)


def _has_doctype(root: etree._Element) -> bool:
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lacks DocInfo.doctype
    return bool(docinfo.doctype) or docinfo.internalDTD is not None


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
    # A text is encoded once, and its bytes are both what is counted and what is parsed.
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise ResponseTooLargeError(
            f"XML document of {len(raw)} bytes exceeds the bound of {max_bytes} bytes",
            excerpt=excerpt(raw[:400]),
        )
    if isinstance(data, str) and raw.startswith(b"<?xml"):
        # lxml refuses str input that declares an encoding; the text is already decoded, so
        # its declaration goes.
        end = raw.find(b"?>")
        raw = raw[end + 2 :] if end != -1 else raw
    parser = _parser()
    error: ProtocolError | None = None  # raised outside the except block: no lxml __context__
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as exc:
        error = ProtocolError(f"malformed XML: {exc.msg}", excerpt=excerpt(raw))
    if error is not None:
        raise error
    failed = _failure(parser)
    if failed is not None:
        raise ProtocolError(f"malformed XML: {failed.message}", excerpt=excerpt(raw))
    if root is None:
        raise ProtocolError("empty XML document", excerpt=excerpt(raw))
    if _has_doctype(root):
        raise ProtocolError("XML with a DOCTYPE is refused", excerpt=excerpt(raw))
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
    root, _answer = soap_answer(data, max_bytes=max_bytes)
    # zeep keeps comments and instructions, and reads only the text before one.
    etree.strip_tags(root, etree.Comment, etree.ProcessingInstruction)
    return etree.tostring(root, encoding="utf-8")


def soap_answer(
    data: bytes, *, max_bytes: int = MAX_XML_BYTES
) -> tuple[etree._Element, etree._Element]:
    """The Envelope of a SOAP answer and the one element of its Body (the response or a Fault).

    ProtocolError unless the root is a SOAP 1.1 or 1.2 Envelope with one Body holding one
    element, and when a result element (``Body/<OpResponse>/<OpResult>``) holds elements: every
    FIBO result is text.
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
            _text_only(result)
    return root, answers[0]


def element_text(element: etree._Element) -> str:
    """The text of an element that holds text only (comments and instructions in it skipped);
    ProtocolError when it holds elements."""
    return _text(element)


def result_text(found: etree._Element | str) -> str:
    """The result text of what the first parse found (``http_body_result``, the SOAP engine's
    ``result``): the element's text, or the text itself.

    The two are apart so that a protocol can let go of the answer's bytes before the text is
    made: a long list is then never held as bytes, tree and text at once.
    """
    return found if isinstance(found, str) else _text(found)


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
    _text_only(element, operation)
    return "".join([element.text or "", *(child.tail or "" for child in element)])


def _text_only(element: etree._Element, operation: str | None = None) -> None:
    """Nothing, when an element holds text only (comments and instructions aside); ProtocolError
    when it holds elements."""
    for child in element:
        if isinstance(child.tag, str):
            raise ProtocolError(
                f"{operation + ': ' if operation else ''}<{local_name(element)}> holds elements, "
                "not text",
                excerpt=excerpt(etree.tostring(element, encoding="unicode")),
                operation=operation,
            )


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


def request_day(value: date | datetime, field: str = "date") -> date:
    """The day a request's date stands for: a date as it is, a datetime's day, an aware
    datetime's day in Vietnam time (FIBO's).

    InvalidInputError (naming ``field``) for anything that is not a date: text is never passed
    through as a date.
    """
    if not isinstance(value, date):
        raise InvalidInputError(
            f"{field} must be a datetime.date or datetime, not {type(value).__name__}",
            field=field,
            value=value,
        )
    if isinstance(value, datetime):
        return (value.astimezone(VN_TZ) if value.tzinfo is not None else value).date()
    return value


def request_date(value: date | datetime | None, field: str = "date") -> str:
    """A date as FIBO takes it in requests (MM-DD-YYYY) of the day ``request_day`` gives; ''
    for None."""
    if value is None:
        return ""
    return request_day(value, field).strftime(REQUEST_DATE_FORMAT)


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


@dataclass(frozen=True, slots=True)
class StreamedOperation(Operation):
    """An operation whose list answer :func:`decode_result` gives as a :class:`RowStream`,
    decoded as it is iterated, rather than as a list (the client's ``iter_*`` methods)."""


@functools.cache
def streamed(op: Operation) -> StreamedOperation:
    """``op`` with its list answers decoded as they are iterated (see StreamedOperation)."""
    return StreamedOperation(*(getattr(op, field.name) for field in dataclasses.fields(op)))


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
    # The plain form of a column's conversion; _typed_rows has fast paths for the usual texts
    # and comes here for every other one.
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


# How _typed_rows converts a column's text (the Kinds, grouped by their fast path).
_RAW, _TEXT, _INT, _TIME, _STATUS = range(5)
_CODES: Final = {
    Kind.RAW: _RAW,
    Kind.TEXT: _TEXT,
    Kind.INT: _INT,
    Kind.TIME: _TIME,
    Kind.VN_TIME: _TIME,
    Kind.SMS_STATUS: _STATUS,
    Kind.INCOMING_STATUS: _STATUS,
}
_STATUS_BY_TEXT: Final[Mapping[Kind, Mapping[str, Any]]] = {
    Kind.SMS_STATUS: {str(status.value): status for status in SmsStatus},
    Kind.INCOMING_STATUS: {str(status.value): status for status in IncomingStatus},
}
#: Tag spellings a row plan remembers (the names of a list's columns as a server writes them).
_TAGS_KEPT = 256
#: Time texts one decode remembers at most (rows of a list, in time order, share timestamps).
_TIMES_KEPT = 1024
_UNSEEN: Final[Any] = object()

# A column of a row plan: (position in the row model, fast path, Kind, statuses by text).
_Spec = tuple[int, int, Kind, Mapping[str, Any]]


@dataclass(frozen=True, slots=True, eq=False)
class _RowPlan:
    """How the rows of one list operation are built: the row model, its width, and the column
    of each element name (exact tags as met, and lower-case local names)."""

    operation: str
    make: Callable[..., Any]
    width: int
    by_tag: dict[Any, _Spec | None]
    by_name: dict[str, _Spec]

    def column(self, tag: Any) -> _Spec | None:
        """The column of a tag not met before (None for comments and unknown elements)."""
        spec = None
        if isinstance(tag, str):
            spec = self.by_name.get(tag.rpartition("}")[2].lower())
            if len(self.by_tag) < _TAGS_KEPT:
                self.by_tag[tag] = spec
        return spec


@functools.cache
def _row_plan(op: Operation) -> _RowPlan:
    assert op.row is not None
    # Every field of the model, not only the operation's columns: a list that has no element
    # for a field (GetCommingSMSList has no SentDate) leaves it None.
    fields = [field.name for field in dataclasses.fields(op.row)]
    by_name: dict[str, _Spec] = {}
    by_tag: dict[Any, _Spec | None] = {}
    for column in op.columns:
        spec = (
            fields.index(column.field),
            _CODES[column.kind],
            column.kind,
            _STATUS_BY_TEXT.get(column.kind, {}),
        )
        by_name[column.element.lower()] = spec
        by_tag[column.element] = spec
    return _RowPlan(op.name, op.row, len(fields), by_tag, by_name)


def _bad_value(plan: _RowPlan, spec: _Spec, element: etree._Element, text: str) -> Any:
    """The value of a text the fast paths do not take, or the ProtocolError it stands for."""
    try:
        return _convert(spec[2], text)
    except ValueError:
        raise ProtocolError(
            f"{plan.operation}: bad value in <{local_name(element)}>",
            excerpt=excerpt(text),
            operation=plan.operation,
        ) from None


def _typed_rows(
    plan: _RowPlan, rows: Iterable[etree._Element], times: dict[str, Any] | None = None
) -> list[Any]:
    """The typed rows of list row elements, in one pass over their children.

    The same values as ``_convert`` on each column's whole text (``_text``): the usual texts take
    a fast path (a time met before in this document, a status by its digits, an int() that takes
    it), every other one goes through ``_convert``. ``times`` holds the times met so far, for a
    document decoded in slices (RowStream); a new one otherwise.
    """
    name = plan.operation
    known = plan.by_tag.get
    make = plan.make
    blank: list[Any] = [None] * plan.width
    if times is None:
        times = {}
    out: list[Any] = []
    append = out.append
    for row in rows:
        if row.tag.__class__ is not str:  # a comment or an instruction between the rows
            continue
        values = blank.copy()
        for child in row:
            spec = known(child.tag, _UNSEEN)
            if spec is _UNSEEN:
                spec = plan.column(child.tag)
            if spec is None:
                continue
            index, code, _, statuses = spec
            # A comment inside the text (or an element, which _text refuses) makes children.
            text = _text(child, name) if len(child) else child.text
            if text is None:
                values[index] = "" if code == _RAW else None
            elif code == _RAW:
                values[index] = text
            elif code == _TEXT:
                values[index] = text.strip() or None
            elif code == _INT:
                try:
                    values[index] = int(text)
                except ValueError:
                    values[index] = _bad_value(plan, spec, child, text)
            elif code == _TIME:
                value = times.get(text, _UNSEEN)
                if value is _UNSEEN:
                    value = _bad_value(plan, spec, child, text)
                    if len(times) >= _TIMES_KEPT:
                        times.clear()
                    times[text] = value
                values[index] = value
            else:
                value = statuses.get(text, _UNSEEN)
                values[index] = _bad_value(plan, spec, child, text) if value is _UNSEEN else value
        append(make(*values))
    return out


def _rows(op: Operation, root: etree._Element) -> list[Any]:
    return _typed_rows(_row_plan(op), root)


#: Characters of a list text given to the pull parser at a time.
_PULL_CHUNK = 64 * 1024
#: List texts this long or longer are decoded as they are parsed, never held as a whole tree.
_PULL_FROM = 512 * 1024


class RowStream:
    """The typed rows of a list document, decoded a slice of text at a time.

    The parse is lxml's pull parser with the hardened parser's settings; the rows of each slice
    are made and their elements dropped before the next slice is read, so the tree never holds
    more than about one slice of rows. ``batches()`` gives the rows in document order, a list per
    slice. Made by :func:`decode_result`, which reads as far as the document's root: a document
    that is not a list (a status document, say) is complete by then and decoded whole.

    What is wrong further on (malformed XML, a bad value, passing the size bound by a text that
    is not ASCII) raises ProtocolError from the iteration, after the rows before it.
    """

    __slots__ = (
        "_done",
        "_head",
        "_max_bytes",
        "_parser",
        "_plan",
        "_pos",
        "_root",
        "_size",
        "_text",
        "_times",
        "document",
    )

    def __init__(self, op: Operation, text: str, *, max_bytes: int) -> None:
        self._plan = _row_plan(op)
        # The times met in every slice so far: a list's rows share timestamps across slices.
        self._times: dict[str, Any] = {}
        self._head = text[:400]
        # Over the bound: refused before anything is parsed, as parse_xml does. A text that is
        # not ASCII is counted as its slices are encoded (counting first would encode it twice).
        if text.isascii() and len(text) > max_bytes:
            raise ResponseTooLargeError(
                f"XML document of {len(text)} bytes exceeds the bound of {max_bytes} bytes",
                excerpt=excerpt(self._head),
                operation=op.name,
            )
        self._text: str | None = text
        self._max_bytes = max_bytes
        self._pos = 0
        self._size = 0
        if text.startswith("<?xml"):
            # The text is already decoded: a declared encoding (utf-16 from .NET) must not count.
            end = text.find("?>")
            if end != -1:
                self._pos = end + 2
                self._size = len(text[: self._pos].encode("utf-8"))
        self._parser: etree.XMLPullParser | None = _pull_parser()
        self._root: etree._Element | None = None
        self._done = False
        #: The whole document's root, when it is complete before a list root was seen.
        self.document: etree._Element | None = None
        while self._root is None and not self._done:
            self._feed()

    @property
    def streaming(self) -> bool:
        """True when the document is a list whose rows are still to be read."""
        return self._root is not None

    def _error(self, detail: str) -> ProtocolError:
        return ProtocolError(detail, excerpt=excerpt(self._head), operation=self._plan.operation)

    def _feed(self) -> None:
        """Parse the next slice of the text, or finish the parse after the last one."""
        parser = self._parser
        assert parser is not None
        text = self._text
        error: ProtocolError | None = None  # raised outside the except block: no __context__
        root: etree._Element | None = None
        try:
            if text is not None and self._pos < len(text):
                chunk = text[self._pos : self._pos + _PULL_CHUNK].encode("utf-8")
                self._pos += _PULL_CHUNK
                self._size += len(chunk)
                if self._size > self._max_bytes:
                    raise ResponseTooLargeError(
                        f"XML document exceeds the bound of {self._max_bytes} bytes",
                        excerpt=excerpt(self._head),
                        operation=self._plan.operation,
                    )
                parser.feed(chunk)
            else:
                self._text = None  # all of it is in the parser: the text can go
                self._done = True
                root = parser.close()
        except etree.XMLSyntaxError as exc:
            error = self._error(f"malformed XML: {exc.msg}")
        if error is not None:
            raise error
        failed = _failure(parser)
        if failed is not None:
            raise self._error(f"malformed XML: {failed.message}")
        for _event, started in parser.read_events():
            element = cast(etree._Element, started)  # "start" events carry the element
            if self._root is None and element.getparent() is None:
                self._root = element
                if _has_doctype(element):
                    raise self._error("XML with a DOCTYPE is refused")
        if self._done:
            self._parser = None
            if root is None:
                raise self._error("empty XML document")
            if _has_doctype(root):
                raise self._error("XML with a DOCTYPE is refused")
            if self._root is None:
                self.document = root

    def batches(self) -> Iterator[list[Any]]:
        """The rows, a list per slice of text, in document order."""
        root = self._root
        if root is None:
            return
        plan = self._plan
        while True:
            if not self._done:
                self._feed()
            # Every row but the last has its end tag parsed; all of them once the parse is over.
            rows = list(root) if self._done else list(root)[:-1]
            count = len(rows)
            batch = _typed_rows(plan, rows, self._times) if count else []
            del rows  # no proxy left, so removing the elements frees them
            if count:
                del root[:count]
            if batch:
                yield batch
            if self._done:
                return

    def collect(self) -> list[Any]:
        """Every row, in one list."""
        rows: list[Any] = []
        for batch in self.batches():
            rows.extend(batch)
        return rows


Decoded = str | int | StatusDocument | WrongPhones | list[Any] | RowStream


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
    StatusDocument, WrongPhones, or the list of typed rows of ``op.row`` (a RowStream for a
    StreamedOperation, see :func:`streamed`).
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
    stream = isinstance(op, StreamedOperation)
    if op.row is not None and (stream or len(stripped) >= _PULL_FROM):
        rows = RowStream(op, stripped, max_bytes=max_bytes)
        if rows.streaming:
            return rows if stream else rows.collect()
        assert rows.document is not None
        root = rows.document
    else:
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


# The emulator answers every call with these writers. Their fixed parts are constant (or written
# by lxml once per namespace and method) and only the text between them changes, escaped as
# libxml2 escapes text content; the output is byte for byte the lxml tree's
# (tests/test_emulator_codec.py compares them). Text that XML cannot carry takes the lxml path,
# which refuses it as it always has. A tree costs microseconds a send does not need to spend.

# What XML 1.0 text may hold (its Char production); lxml refuses anything else.
_NOT_XML_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SLOT = "fibo-text-slot"


def xml_text(text: str) -> str | None:
    """``text`` escaped as libxml2 writes text content, or None when XML cannot carry it."""
    if _NOT_XML_TEXT.search(text) is not None:
        return None
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _split_at_slot(document: bytes) -> tuple[bytes, bytes] | None:
    """The bytes around the text slot of a document written with ``_SLOT`` as its text."""
    head, slot, tail = document.partition(_SLOT.encode())
    # A namespace spelling the slot itself would make the split ambiguous: no template then.
    if not slot or _SLOT.encode() in head or _SLOT.encode() in tail:
        return None
    return head, tail


def encode_status(code: int, message: str) -> str:
    """A status document ``<SMS><Code/><Message/><Time/></SMS>``."""
    code_text = xml_text(str(code))
    message_text = xml_text(message)
    if code_text is None or message_text is None:
        return _encode_status_tree(code, message)
    return f"<SMS><Code>{code_text}</Code><Message>{message_text}</Message><Time/></SMS>"


def _encode_status_tree(code: int, message: str) -> str:
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
    return result_text(http_body_result(body, max_bytes=max_bytes))


def http_body_result(body: bytes, *, max_bytes: int = MAX_XML_BYTES) -> etree._Element | str:
    """What ``decode_http_body`` reads, before the text is taken (``result_text``): the
    ``<string>``/``<int>`` element, or the whole text of a result document at the root."""
    root = parse_xml(body, max_bytes=max_bytes)
    if local_name(root) in ("string", "int"):
        if any(isinstance(child.tag, str) for child in root):
            raise ProtocolError(
                f"<{local_name(root)}> holds elements, not text", excerpt=excerpt(body)
            )
        return root
    return etree.tostring(root, encoding="unicode")


def encode_http_body(op: Operation, value: str | int, namespace: str) -> bytes:
    """An ASMX GET/POST answer: ``<string xmlns=…>escaped text</string>`` (``<int>`` for ints)."""
    text = xml_text(str(value))
    template = _http_body_template(op.returns_int, namespace)
    if text is None or template is None:
        return _encode_http_body_tree(op.returns_int, str(value), namespace)
    return template[0] + text.encode("utf-8") + template[1]


@functools.lru_cache(maxsize=64)
def _http_body_template(returns_int: bool, namespace: str) -> tuple[bytes, bytes] | None:
    return _split_at_slot(_encode_http_body_tree(returns_int, _SLOT, namespace))


def _encode_http_body_tree(returns_int: bool, text: str, namespace: str) -> bytes:
    root = etree.Element(
        f"{{{namespace}}}{'int' if returns_int else 'string'}", nsmap=_default_ns(namespace)
    )
    root.text = text
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
    text = xml_text(str(value))
    template = _soap_response_template(op.name, version, namespace)
    if text is None or template is None:
        return _encode_soap_response_tree(op.name, str(value), version, namespace)
    return template[0] + text.encode("utf-8") + template[1]


@functools.lru_cache(maxsize=256)
def _soap_response_template(
    method: str, version: SoapVersion, namespace: str
) -> tuple[bytes, bytes] | None:
    return _split_at_slot(_encode_soap_response_tree(method, _SLOT, version, namespace))


def _encode_soap_response_tree(
    method: str, text: str, version: SoapVersion, namespace: str
) -> bytes:
    envelope, body = _envelope(version)
    response = etree.SubElement(
        body, f"{{{namespace}}}{method}Response", nsmap=_default_ns(namespace)
    )
    etree.SubElement(response, f"{{{namespace}}}{method}Result").text = text
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


class SoapRequest(NamedTuple):
    """What a SOAP request envelope asks for: the body element and its parameters.

    A NamedTuple rather than a frozen dataclass: the emulator makes one per SOAP call, and its
    __init__ costs a third of the dataclass's.
    """

    version: SoapVersion
    namespace: str
    method: str
    params: Mapping[str, str | None]


def decode_soap_request(body: bytes, *, max_bytes: int = MAX_XML_BYTES) -> SoapRequest:
    """The method and parameters of a SOAP request envelope; ProtocolError if it is not one.

    The parameters are the call element's children in its own namespace. One that is present but
    nil or empty maps to None or '' as .NET binds it; one left out is not in ``params``.
    """
    root = parse_xml(body, max_bytes=max_bytes)
    # Tags compared whole: neither envelope namespace holds a "}", so this is the namespace and
    # the local name compared apart.
    envelope = _ENVELOPES.get(root.tag)
    if envelope is None:
        raise ProtocolError("not a SOAP envelope", excerpt=excerpt(body))
    version, body_tag = envelope
    # Every SOAP call is read here, so the tree is walked the cheapest way lxml offers: plain
    # iteration, and keys() to see whether an element has attributes, where iterchildren
    # makes a filtering iterator and attrib a mapping object per element. What it finds is what
    # the iterchildren walk found (tests/test_codec.py holds the two equal).
    for soap_body in root:
        if soap_body.tag == body_tag:  # the first Body (a comment's tag is not a str)
            break
    else:
        raise ProtocolError("SOAP envelope without a Body", excerpt=excerpt(body))
    call = _only_element(soap_body)
    if call is None:
        raise ProtocolError("SOAP Body must hold exactly one element", excerpt=excerpt(body))
    # As etree.QName(call).namespace and local_name(call) split it.
    tag = call.tag
    namespace = tag[1 : tag.index("}")] if tag.startswith("{") else ""
    method = tag.rpartition("}")[2]
    # A parameter is an element in the call's own namespace, as .NET's XmlSerializer reads one
    # (the WSDL's elementFormDefault is qualified): one in another namespace, or in none, is
    # skipped as an unknown element is, and the parameter it may name stays missing.
    prefix = tag[: len(tag) - len(method)]
    params: dict[str, str | None] = {}
    for child in call:
        tag = child.tag
        if not isinstance(tag, str):
            continue  # a comment
        name = tag[len(prefix) :]
        if not tag.startswith(prefix) or name.startswith("{"):
            continue
        # No attribute, so no xsi:nil; no child node, so the text is all of it.
        plain = not child.keys() and not len(child)
        params[name] = (child.text or "") if plain else _parameter(child)
    return SoapRequest(version, namespace, method, params)


def _only_element(element: etree._Element) -> etree._Element | None:
    """The one element child of ``element``; None when it has none or several."""
    if len(element) == 1:  # nearly every Body: its call element and nothing else
        only = element[0]
        return only if isinstance(only.tag, str) else None
    elements = list(element.iterchildren(etree.Element))
    return elements[0] if len(elements) == 1 else None


def _parameter(element: etree._Element) -> str | None:
    """The value of a parameter element: None when it is nil, else its text (ProtocolError when
    it holds elements)."""
    # xsi:nil is an xs:boolean: .NET (XmlConvert.ToBoolean) takes "1" and "true", trimmed.
    nil = element.get(_XSI_NIL)
    if nil is not None and nil.strip() in ("true", "1"):
        return None
    return _text(element)


_ENVELOPES: dict[Any, tuple[SoapVersion, str]] = {
    f"{{{SOAP11_NS}}}Envelope": ("1.1", f"{{{SOAP11_NS}}}Body"),
    f"{{{SOAP12_NS}}}Envelope": ("1.2", f"{{{SOAP12_NS}}}Body"),
}
_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
