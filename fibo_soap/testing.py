"""The pytest plugin (entry point ``pytest11``): a FIBO emulator, a client for it, and VCR cassettes
that are safe to commit and stable to replay.

Fixtures:
- ``fibo_emulator``: a fresh emulator per test (temporary state, seeded account, no delivery delay),
  on a free loopback port;
- ``fibo_client``: a FiboClient of the seeded account pointed at it, making its GUIDs with
  ``seeded_guids(fibo_guid_seed)`` so that a re-recorded cassette sends the same requests;
- ``fibo_guid_seed``: 0; override it to change the GUIDs ``fibo_client`` makes;
- ``fibo_vcr_config``: the pytest-recording configuration to return from your own ``vcr_config``
  (``cassette_config()`` takes options: phone and client-number scrubbing, extra secrets).

Scrubbing happens before a request or response is written: the value of every ``clientPass``
field becomes ``***`` (query string, form body, SOAP body), so a cassette never holds the password.
Matching compares what a FIBO call means rather than its bytes: method, path, SOAPAction (or the
SOAP 1.2 ``action``), and the wire method's parameters in order with request documents compared as
XML trees. Host and port are not compared, so a cassette recorded against an emulator on any port
replays against any endpoint. The two matchers, ``fibo_action`` and ``fibo_body``, are registered
on every pytest-recording VCR by this plugin's ``pytest_recording_configure``; with VCR.py alone,
call ``register_matchers(vcr)``.

Nothing is imported from the emulator, zeep or VCR.py until it is used, so the plugin costs a test
session nothing when its fixtures are not requested. The client's transport is imported when the
plugin loads, before any cassette: it keeps http.client's own connection classes from then, and
would take VCR.py's for them if first imported while a cassette is in use.
"""

from __future__ import annotations

import functools
import os
import random
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, unquote_plus, urlsplit, urlunsplit

import pytest

# Imported now, before any cassette patches http.client: see the module's docstring.
import fibo_soap.protocols.transport  # noqa: F401
from fibo_soap import codec, logs
from fibo_soap.errors import FiboError, InvalidInputError
from fibo_soap.operations import CLIENT_NO, CLIENT_PASS, OPERATIONS

if TYPE_CHECKING:
    from lxml import etree

    from fibo_soap.client import FiboClient
    from fibo_soap.emulator import Emulator

#: What a scrubbed value is replaced with.
PLACEHOLDER: Final = logs.MASK

#: Where a replaying client can point: nothing listens there, so a request that no cassette
#: answers fails at once instead of reaching anything.
REPLAY_ENDPOINT: Final = "http://127.0.0.1:1/Service.asmx"

#: The matchers a FIBO cassette is replayed with (``fibo_action`` and ``fibo_body`` are ours).
MATCH_ON: Final = ("method", "path", "fibo_action", "fibo_body")

# A secret learned from a request (or the environment) is also scrubbed from every request and
# answer; below this length a plain replacement would mangle unrelated text (a password "1000",
# a balance 1000).
_MIN_LEARNED_SECRET = 6
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_PHONE = re.compile(r"\+?(\d{8,15})")
_PHONE_IN_TEXT = re.compile(rf"(?<!\d){_PHONE.pattern}(?!\d)")
# A number written in groups, as people write one in a message or a search key: 0909 128 628,
# 0909-128-628, +84 909.128.628.
_GROUPED_PHONE_IN_TEXT = re.compile(r"(?<![\d+])\+?\d{1,5}(?:[ .-]\d{1,5}){1,5}(?!\d)")
# What may stand between two digits of a number as a request or answer spells it: a space, a
# dot or a dash, and a space as a query or form encodes it.
_BETWEEN_DIGITS = r"(?:[ .+-]|%20)?"
# Before a number: no digit, unless it ends an escape (%20, a space; %09, a tab).
_NUMBER_START = r"(?:(?<!\d)|(?<=%20)|(?<=%09))"
_PHONE_ELEMENT = "phonenumber"
_PHONE_PARAM = "phoneNumber"
_FORM = "application/x-www-form-urlencoded"
_VOLATILE_HEADERS = frozenset({"date"})


def seeded_guids(seed: int = 0) -> Callable[[], str]:
    """A GUID factory for ``FiboClient(guid_factory=...)``: version-4 GUIDs, the same sequence for
    the same seed, so that a re-recorded cassette holds the same requests."""
    rng = random.Random(seed)

    def new_guid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    return new_guid


# --- what a request means -------------------------------------------------------------------


def _body_bytes(body: object) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, Iterable):
        # VCR.py hands back a fresh iterator over the recorded chunks on every access.
        return b"".join(
            chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk) for chunk in body
        )
    # A file body and the like: FIBO's requests are plain bytes, so this is never one of ours.
    return repr(body).encode("utf-8")


def _header(request: Any, name: str) -> str:
    value = request.headers.get(name) if request.headers is not None else None
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return "" if value is None else str(value)


def _media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def _wire_method(path: str) -> str:
    return path.rstrip("/").rpartition("/")[2]


class _Call:
    """A FIBO call as it travelled: SOAP (``soap1.1``/``soap1.2``), ``query`` or ``form`` fields."""

    __slots__ = ("kind", "method", "namespace", "params")

    def __init__(
        self,
        kind: str,
        method: str,
        params: list[tuple[str, str | None]],
        namespace: str = "",
    ) -> None:
        self.kind = kind
        self.method = method
        self.params = params
        self.namespace = namespace


def _fibo_call(request: Any) -> _Call | None:
    """The FIBO call a VCR request carries; None for anything else (another API, a WSDL fetch)."""
    parts = urlsplit(request.uri)
    body = _body_bytes(request.body)
    if request.method == "GET":
        method = _wire_method(parts.path)
        if method not in OPERATIONS:
            return None
        return _Call("query", method, parse_qsl(parts.query, keep_blank_values=True))
    if request.method != "POST":
        return None
    if _media_type(_header(request, "Content-Type")) == _FORM:
        method = _wire_method(parts.path)
        if method not in OPERATIONS:
            return None
        fields = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
        return _Call("form", method, list(fields))
    if not body.lstrip().startswith((b"<", b"\xef\xbb\xbf")):
        return None
    try:
        soap = codec.decode_soap_request(body)
    except FiboError:
        return None
    if soap.method not in OPERATIONS:
        return None
    return _Call(f"soap{soap.version}", soap.method, list(soap.params.items()), soap.namespace)


def _inner_document(value: str | None) -> etree._Element | None:
    if value is None or not value.lstrip().startswith("<"):
        return None
    try:
        return codec.parse_xml(value)
    except FiboError:
        return None


def _tree(element: etree._Element) -> tuple[Any, ...]:
    """An element as a comparable value: attribute order, namespace prefixes and indentation
    do not count; text does."""
    children = tuple(
        (*_tree(child), (child.tail or "").strip())
        for child in element
        if isinstance(child.tag, str)
    )
    text = element.text or ""
    if children and not text.strip():
        text = ""
    return (element.tag, tuple(sorted(element.attrib.items())), text, children)


def _canonical_value(name: str, value: str | None) -> Any:
    if name == CLIENT_PASS:
        return PLACEHOLDER
    document = _inner_document(value)
    return value if document is None else ("document", _tree(document))


def canonical_request(request: Any) -> tuple[Any, ...]:
    """What ``fibo_body`` compares: for a FIBO call, its protocol, wire method and parameters (in
    wire order for SOAP, by name for GET/POST), the password left out and request documents as XML
    trees; for anything else, the URI and the body bytes."""
    call = _fibo_call(request)
    if call is None:
        return ("other", request.uri, _body_bytes(request.body))
    params = [(name, _canonical_value(name, value)) for name, value in call.params]
    if not call.kind.startswith("soap"):
        # ASMX binds GET and POST fields by name; SOAP elements bind in order.
        params.sort(key=lambda pair: pair[0])
    return (call.kind, call.namespace, call.method, tuple(params))


def soap_action(request: Any) -> tuple[str, str, str]:
    """What ``fibo_action`` compares: the media type, the SOAPAction header (SOAP 1.1) and the
    ``action`` parameter of the Content-Type (SOAP 1.2); '' where a request has none."""
    content_type = _header(request, "Content-Type")
    header = _header(request, "SOAPAction").strip().strip('"')
    parameter = ""
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "action":
            parameter = value.strip().strip('"')
    return _media_type(content_type), header, parameter


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _difference(sent: tuple[Any, ...], recorded: tuple[Any, ...]) -> str:
    if "other" in (sent[0], recorded[0]):
        return f"{_short(sent[:3])} != {_short(recorded[:3])}"
    for label, index in (("protocol", 0), ("namespace", 1), ("wire method", 2)):
        if sent[index] != recorded[index]:
            return f"{label}: sent {sent[index]!r}, the cassette has {recorded[index]!r}"
    sent_params, recorded_params = sent[3], recorded[3]
    for (name, value), (old_name, old_value) in zip(sent_params, recorded_params, strict=False):
        if name != old_name:
            return f"parameter order: sent {name!r} where the cassette has {old_name!r}"
        if value != old_value:
            return f"{name}: sent {_short(value)}, the cassette has {_short(old_value)}"
    return (
        f"parameters: sent {[n for n, _ in sent_params]}, "
        f"the cassette has {[n for n, _ in recorded_params]}"
    )


def fibo_body(sent: Any, recorded: Any) -> None:
    """VCR.py matcher ``fibo_body``: the canonical requests are equal (AssertionError says where
    they differ)."""
    mine, theirs = canonical_request(sent), canonical_request(recorded)
    if mine != theirs:
        raise AssertionError(_difference(mine, theirs))


def fibo_action(sent: Any, recorded: Any) -> None:
    """VCR.py matcher ``fibo_action``: same media type and SOAP action."""
    mine, theirs = soap_action(sent), soap_action(recorded)
    if mine != theirs:
        raise AssertionError(f"{mine} != {theirs}")


def register_matchers(vcr: Any) -> None:
    """Register ``fibo_action`` and ``fibo_body`` on a ``vcr.VCR`` (pytest-recording: automatic)."""
    vcr.register_matcher("fibo_action", fibo_action)
    vcr.register_matcher("fibo_body", fibo_body)


@pytest.hookimpl(optionalhook=True)
def pytest_recording_configure(config: pytest.Config, vcr: Any) -> None:
    """pytest-recording's hook, called with each test's VCR: registers the FIBO matchers."""
    register_matchers(vcr)


# --- scrubbing ------------------------------------------------------------------------------


def mask_digits(number: str) -> str:
    """A phone number as a cassette keeps it: the first four and last three digits
    (``0909***628``); a leading ``+`` stays."""
    plus = "+" if number.startswith("+") else ""
    digits = number.removeprefix("+")
    return f"{plus}{digits[:4]}{PLACEHOLDER}{digits[-3:]}"


def _phones_in(values: Iterable[tuple[str, str | None]]) -> set[str]:
    """The digits of every phone number in a call's parameters and request documents: the
    phone fields, and the numbers written in free text (a search ``key``, a message)."""
    found: set[str] = set()
    for name, value in values:
        if value is None or name in (CLIENT_PASS, CLIENT_NO):
            continue
        document = _inner_document(value)
        if document is not None:
            found.update(_phones_in_tree(document, free_text=True))
        elif name == _PHONE_PARAM:
            match = _PHONE.fullmatch(value.strip())
            if match:
                found.add(match.group(1))
        else:
            found.update(_phones_in_text(value))
    return found


def _phones_in_tree(root: etree._Element, *, free_text: bool = False) -> set[str]:
    """The digits of the numbers in a document's phone elements, and with ``free_text`` (a
    request's document) those its other texts hold."""
    found: set[str] = set()
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        text = (element.text or "").strip()
        if codec.local_name(element).lower() == _PHONE_ELEMENT:
            match = _PHONE.fullmatch(text)
            if match:
                found.add(match.group(1))
        elif text.startswith("<"):
            inner = _inner_document(text)
            if inner is not None:
                found.update(_phones_in_tree(inner, free_text=free_text))
        elif free_text:
            found.update(_phones_in_text(text))
    return found


def _phones_in_text(text: str) -> set[str]:
    """The digits of the phone numbers free text holds: 8 to 15 digits, in one run or in groups,
    that fibo_soap.phone takes for a mobile number (an amount or an order number is none)."""
    from fibo_soap import phone

    def digits(number: str) -> str | None:
        """The number's digits when it is one: 8 to 15 of them, a valid mobile number."""
        found = re.sub(r"\D", "", number)
        if not 8 <= len(found) <= 15:
            return None
        try:
            phone.normalize(number)
        except InvalidInputError:
            return None
        return found

    found = {m.group(1) for m in _PHONE_IN_TEXT.finditer(text) if digits(m.group())}
    for match in _GROUPED_PHONE_IN_TEXT.finditer(text):
        found.update(_numbers_in_groups(re.findall(r"\+?\d+", match.group()), digits))
    return found


def _numbers_in_groups(groups: list[str], digits: Callable[[str], str | None]) -> list[str]:
    """The digits of the numbers that runs of consecutive ``groups`` spell (``digits`` says
    which runs are numbers): the most digits such numbers cover, a group left out where none
    takes it. Two numbers written one after the other (``0909 128 628 0912 345 678``) are then
    two, not one invalid run of 20.
    """

    @functools.cache
    def best(start: int) -> tuple[int, tuple[str, ...]]:
        if start == len(groups):
            return 0, ()
        covered, numbers = best(start + 1)  # the group at start left out
        for end in range(start + 1, len(groups) + 1):
            number = digits(" ".join(groups[start:end]))
            if number is not None:
                rest, after = best(end)
                if len(number) + rest > covered:
                    covered, numbers = len(number) + rest, (number, *after)
        return covered, numbers

    return list(best(0)[1])


def _mask_phones(text: str, phones: Iterable[str]) -> str:
    """``text`` with each of ``phones`` (digits) masked, however it is spelled there: in one run,
    or in groups (the masked form is one run)."""
    for digits in sorted(phones, key=len, reverse=True):
        spelled = _BETWEEN_DIGITS.join(digits)
        text = re.sub(rf"{_NUMBER_START}{spelled}(?!\d)", mask_digits(digits), text)
    return text


def _redact(text: str, secrets: Iterable[str]) -> str:
    return logs.redact(text, [s for s in secrets if s and s != PLACEHOLDER], phones=False)


def _element_pattern(name: str) -> re.Pattern[str]:
    prefix = r"(?:[A-Za-z_][\w.\-]*:)?"
    return re.compile(
        rf"(<{prefix}{name}(?:\s[^>]*?)?(?<!/)>)([^<]+)(</{prefix}{name}\s*>)",
    )


_SOAP_FIELDS = {name: _element_pattern(name) for name in (CLIENT_PASS, CLIENT_NO)}


class CassetteScrubber:
    """``before_record_request`` and ``before_record_response`` for FIBO cassettes.

    VCR.py also runs ``before_record_request`` on every request it looks up, so the scrubbed form
    of a replayed request is what is matched: a request is scrubbed the same way whatever came
    before it. Answers are scrubbed of the secrets and phone numbers seen in the requests of the
    same cassette, and of the phone numbers they list themselves.
    """

    def __init__(
        self,
        *,
        secrets: Iterable[str] = (),
        phones: bool = False,
        client_numbers: bool = False,
        loopback_origin: str | None = "http://127.0.0.1:1",
    ) -> None:
        self.secrets = {s for s in secrets if s}
        self.phones = phones
        self.client_numbers = client_numbers
        self.loopback_origin = loopback_origin
        self._seen_secrets: set[str] = set()
        self._seen_phones: set[str] = set()

    # -- requests

    def request(self, request: Any) -> Any:
        """The request as a cassette may hold it (VCR.py hands a copy)."""
        call = _fibo_call(request)
        if call is not None:
            self._learn(call)
            self._stable_origin(request)
            if call.kind == "query":
                parts = urlsplit(request.uri)
                request.uri = urlunsplit(parts._replace(query=self._scrub_fields(parts.query)))
            elif call.kind == "form":
                form = _body_bytes(request.body).decode("latin-1")
                request.body = self._scrub_fields(form).encode("latin-1")
            else:
                soap = _body_bytes(request.body).decode("utf-8", "surrogateescape")
                request.body = self._scrub_soap(soap, call)
        # The secrets given, and those learned from this cassette's requests (this one's too):
        # a message or a key that quotes the password loses it as the answers do.
        secrets = self.secrets | self._seen_secrets
        request.uri = _redact(request.uri, secrets)
        body = request.body
        if isinstance(body, bytes | str) and secrets:
            text = body.decode("utf-8", "surrogateescape") if isinstance(body, bytes) else body
            request.body = _redact(text, secrets).encode("utf-8", "surrogateescape")
        if call is not None and self.phones:
            phones = _phones_in(call.params)
            request.uri = _mask_phones(request.uri, phones)
            if request.body:
                text = _body_bytes(request.body).decode("utf-8", "surrogateescape")
                request.body = _mask_phones(text, phones).encode("utf-8", "surrogateescape")
        return request

    def _learn(self, call: _Call) -> None:
        params = dict(call.params)
        password = params.get(CLIENT_PASS) or ""
        if len(password) >= _MIN_LEARNED_SECRET and password != PLACEHOLDER:
            self._seen_secrets.add(password)
        client_no = params.get(CLIENT_NO) or ""
        if self.client_numbers and len(client_no) >= 4 and client_no != PLACEHOLDER:
            self._seen_secrets.add(client_no)
        if self.phones:
            self._seen_phones.update(_phones_in(call.params))

    def _stable_origin(self, request: Any) -> None:
        # An emulator listens on whatever port was free; the cassette names one fixed origin.
        parts = urlsplit(request.uri)
        if self.loopback_origin and parts.hostname in _LOOPBACK:
            origin = urlsplit(self.loopback_origin)
            request.uri = urlunsplit(parts._replace(scheme=origin.scheme, netloc=origin.netloc))

    def _scrubbed_names(self) -> tuple[str, ...]:
        return (CLIENT_PASS, CLIENT_NO) if self.client_numbers else (CLIENT_PASS,)

    def _scrub_fields(self, encoded: str) -> str:
        names = self._scrubbed_names()
        pairs = encoded.split("&") if encoded else []
        for index, pair in enumerate(pairs):
            key, sep, value = pair.partition("=")
            if unquote_plus(key) in names and value:
                pairs[index] = f"{key}{sep}{PLACEHOLDER}"
        return "&".join(pairs)

    def _scrub_soap(self, body: str, call: _Call) -> bytes:
        values = dict(call.params)
        for name in self._scrubbed_names():
            body = _SOAP_FIELDS[name].sub(rf"\g<1>{PLACEHOLDER}\g<3>", body)
            original = values.get(name) or ""
            if original and original != PLACEHOLDER:
                # A spelling the element pattern does not cover (CDATA, an entity): every form
                # of the value goes, wherever it stands.
                try:
                    scrubbed = body.encode("utf-8", "surrogateescape")
                    left = codec.decode_soap_request(scrubbed).params.get(name)
                except FiboError:
                    left = original
                if left not in (None, "", PLACEHOLDER):
                    body = logs.redact(body, [original], phones=False)
        return body.encode("utf-8", "surrogateescape")

    # -- responses

    def response(self, response: dict[str, Any]) -> dict[str, Any]:
        """The answer as a cassette may hold it: no secret, optionally no phone number, no Date."""
        headers: dict[str, Any] = response.get("headers") or {}
        content_type = _header_value(headers, "content-type")
        fibo_like = "xml" in content_type or content_type.startswith("text/plain")
        if fibo_like:
            for name in [n for n in headers if n.lower() in _VOLATILE_HEADERS]:
                del headers[name]
        body_holder = response.get("body") or {}
        body = body_holder.get("string")
        if not isinstance(body, bytes | str) or not body:
            return response
        text = body.decode("utf-8", "surrogateescape") if isinstance(body, bytes) else body
        scrubbed = _redact(text, self.secrets | self._seen_secrets)
        if self.phones:
            scrubbed = _mask_phones(scrubbed, self._seen_phones | _phones_in_answer(text))
        if scrubbed != text:
            encoded = scrubbed.encode("utf-8", "surrogateescape")
            body_holder["string"] = encoded if isinstance(body, bytes) else scrubbed
            for name in headers:
                if name.lower() == "content-length":
                    headers[name] = [str(len(encoded))]
        return response


def _header_value(headers: Mapping[str, Any], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            first = value[0] if isinstance(value, list | tuple) and value else value
            return str(first or "").lower()
    return ""


def _phones_in_answer(text: str) -> set[str]:
    if not text.lstrip().startswith("<"):
        return set()
    try:
        return _phones_in_tree(codec.parse_xml(text))
    except FiboError:
        return set()


def cassette_config(
    *,
    secrets: Iterable[str] = (),
    phones: bool = False,
    client_numbers: bool = False,
    loopback_origin: str | None = "http://127.0.0.1:1",
) -> dict[str, Any]:
    """A pytest-recording ``vcr_config`` (or ``vcr.use_cassette`` keywords) for FIBO cassettes.

    Every ``clientPass`` value is replaced with ``***``; ``secrets`` are removed in every spelling
    (plain, URL-encoded, XML-escaped) from requests and answers. ``phones`` masks phone numbers
    (``0909***628``) in phone fields, request documents, the free text of requests (a search
    ``key``, a message) and list answers, and wherever an answer repeats one a request held;
    ``client_numbers`` replaces ``clientNo`` too (a cassette then replays for any account). A
    FIBO request to a loopback address is recorded as made to ``loopback_origin`` (None: as it
    was), so that an emulator's random port does not change the cassette.
    """
    scrubber = CassetteScrubber(
        secrets=secrets,
        phones=phones,
        client_numbers=client_numbers,
        loopback_origin=loopback_origin,
    )
    return {
        "before_record_request": scrubber.request,
        "before_record_response": scrubber.response,
        "match_on": MATCH_ON,
        "decode_compressed_response": True,
    }


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def fibo_emulator() -> Iterator[Emulator]:
    """A running emulator with fresh state, delivering at once (advance its clock for delays)."""
    from fibo_soap.emulator import run_emulator

    with run_emulator(delivery_delay=0) as emulator:
        yield emulator


@pytest.fixture
def fibo_guid_seed() -> int:
    """The seed of the GUIDs ``fibo_client`` makes; override to change them."""
    return 0


@pytest.fixture
def fibo_client(fibo_emulator: Emulator, fibo_guid_seed: int) -> Iterator[FiboClient]:
    """A client of the emulator's seeded account, service type 1, over SOAP 1.1, with seeded
    GUIDs."""
    client: FiboClient = fibo_emulator.client(guid_factory=seeded_guids(fibo_guid_seed))
    with client:
        yield client


@pytest.fixture
def fibo_vcr_config() -> dict[str, Any]:
    """``cassette_config()`` with ``FIBO_CLIENT_PASS`` from the environment among the secrets:
    return it from your ``vcr_config`` fixture."""
    password = os.environ.get("FIBO_CLIENT_PASS", "")
    return cassette_config(secrets=[password] if len(password) >= _MIN_LEARNED_SECRET else [])
