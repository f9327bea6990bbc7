"""FiboClient: one typed method per FIBO operation, over SOAP 1.1, SOAP 1.2, HTTP GET or POST.

The facade validates and normalizes input, builds the wire parameters from the operation table,
hands them to a protocol, and turns the decoded answer into a typed result or an exception. It
knows no protocol's details; protocols know no FIBO code.
"""

from __future__ import annotations

import copy
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from fibo_soap import codec, logs, phone, text
from fibo_soap.errors import (
    CODE_ACCEPTED,
    CODE_NO_SMS,
    CODE_OK,
    InvalidInputError,
    InvalidServiceTypeError,
    MessageTooLongError,
    ProtocolError,
    error_for_code,
)
from fibo_soap.models import (
    BatchReceipt,
    BulkReceipt,
    Estimate,
    HostingBalance,
    IncomingSms,
    IncomingStatus,
    Message,
    SenderName,
    SendReceipt,
    SentSms,
    SmsStatus,
    SmsStatusRow,
    StatusDocument,
)
from fibo_soap.operations import (
    MAX_MESSAGE_CHARS,
    TEST_SERVICE_TYPE,
    operation,
)
from fibo_soap.protocols.base import PROTOCOL_NAMES, Protocol
from fibo_soap.protocols.http import AsmxHttpProtocol
from fibo_soap.protocols.soap import SoapProtocol
from fibo_soap.protocols.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    HttpTransport,
)
from fibo_soap.resilience import Caller, Rebuild, RetryPolicy

#: FIBO's production endpoint.
DEFAULT_ENDPOINT = "http://center.fibosms.com/Service.asmx"

#: The protocols a client tries, in order, unless told otherwise.
DEFAULT_PROTOCOLS = ("soap11", "get")

#: The retry policy a client has unless told otherwise (``retry=None`` turns retries off).
DEFAULT_RETRY = RetryPolicy()

#: The sender name list sends use when the caller has no registered brand name.
NO_SENDER = "n/a"

Row = TypeVar("Row")
PhoneEntry = str | tuple[str, str]
MessageEntry = Message | tuple[str, str] | tuple[str, str, str | None]
DateLike = date | datetime


def _new_guid() -> str:
    return str(uuid.uuid4())


class FiboClient:
    """A client of one FIBO account.

    ``service_type`` is the default for sends and balances. ``protocols`` is the ordered list of
    protocols a call tries (``soap11``, ``soap12``, ``get``, ``post``; default ``("soap11",
    "get")``); a call that fails on one for a transport or protocol reason goes out on the next,
    under the send-safety rules of ``fibo_soap.resilience``. ``protocol`` is the older spelling
    of a single protocol (or a comma-separated list). ``retry`` is the RetryPolicy of every call
    (None: no retries, no status look-ups). ``log_text`` puts message texts in log events and
    ``mask_phones=False`` full phone numbers; both are off by default. ``endpoint`` overrides the
    WSDL's address;
    ``wsdl`` replaces the bundled WSDL (a path or a ``?WSDL`` URL). ``timeout`` is the read timeout
    in seconds (or a ``(connect, read)`` pair); ``max_response_bytes`` bounds every answer.
    ``region`` and ``wire_format`` govern phone normalization, ``accents`` and ``max_parts`` the
    message text; ``guid_factory`` makes the GUIDs of messages the caller gives none for.
    """

    def __init__(
        self,
        client_no: str,
        client_pass: str,
        *,
        service_type: str | int | None = None,
        endpoint: str | None = None,
        protocol: str | None = None,
        protocols: str | Sequence[str] | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        log_text: bool = False,
        mask_phones: bool = True,
        wsdl: str | os.PathLike[str] | None = None,
        timeout: float | tuple[float, float] = DEFAULT_READ_TIMEOUT,
        max_response_bytes: int = codec.MAX_XML_BYTES,
        pool_size: int = 10,
        region: str = "VN",
        wire_format: phone.WireFormat | str = phone.WireFormat.NATIONAL,
        accents: text.Accents | str = text.Accents.KEEP,
        max_parts: int = 5,
        guid_factory: Callable[[], str] | None = None,
    ) -> None:
        if not client_no or not client_no.strip():
            raise InvalidInputError("client_no is empty", field="client_no")
        if protocol is not None and protocols is not None:
            raise InvalidInputError("pass protocol or protocols, not both", field="protocols")
        names = protocol_list(protocols if protocol is None else protocol)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidInputError("retry must be a RetryPolicy or None", field="retry")
        self.client_no = client_no.strip()
        self._password = client_pass
        self.service_type = None if service_type is None else _service_type(service_type)
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.region = region
        self.wire_format = phone.WireFormat(wire_format)
        self.accents = text.Accents(accents)
        self.max_parts = max_parts
        self.max_response_bytes = max_response_bytes
        self._wsdl = wsdl
        self._new_guid = guid_factory or _new_guid
        connect, read = (
            timeout if isinstance(timeout, tuple) else (DEFAULT_CONNECT_TIMEOUT, timeout)
        )
        self._transport = HttpTransport(
            connect_timeout=connect,
            read_timeout=read,
            max_response_bytes=max_response_bytes,
            pool_size=pool_size,
        )
        #: The protocols calls try, in order; ``protocol`` is the first.
        self.protocols = names
        self.protocol = names[0]
        self.retry = retry
        chain = {name: self._make_protocol(name) for name in names}
        self._protocols = tuple(chain.values())
        self._protocol = self._protocols[0]
        get_as_post: Protocol | None = None
        if "get" in chain:
            get_as_post = chain.get("post") or self._make_protocol("post")
            logs.guard_urllib3()
        self._get_as_post = get_as_post
        self._caller = Caller(
            self._protocols,
            client_no=self.client_no,
            client_pass=client_pass,
            policy=retry,
            max_bytes=max_response_bytes,
            get_as_post=get_as_post,
            request_limit=self._transport.longest,
            log_context={"client_no": self.client_no},
            log_text=log_text,
            mask_phones=mask_phones,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> FiboClient:
        """A client configured from FIBO_CLIENT_NO, FIBO_CLIENT_PASS, FIBO_ENDPOINT,
        FIBO_SERVICE_TYPE and FIBO_PROTOCOL (one name or a comma-separated list, in order);
        keyword arguments win over the environment."""
        env = os.environ if environ is None else environ
        missing = [name for name in ("FIBO_CLIENT_NO", "FIBO_CLIENT_PASS") if not env.get(name)]
        if missing and not all(k in overrides for k in ("client_no", "client_pass")):
            raise InvalidInputError(
                f"set {' and '.join(missing)} in the environment", field=missing[0]
            )
        options: dict[str, Any] = {
            "client_no": env.get("FIBO_CLIENT_NO", ""),
            "client_pass": env.get("FIBO_CLIENT_PASS", ""),
        }
        for name, key in (
            ("FIBO_ENDPOINT", "endpoint"),
            ("FIBO_SERVICE_TYPE", "service_type"),
            ("FIBO_PROTOCOL", "protocols"),
        ):
            if env.get(name):
                options[key] = env[name]
        if "protocol" in overrides or "protocols" in overrides:
            options.pop("protocols", None)
        options.update(overrides)
        client_no = options.pop("client_no")
        client_pass = options.pop("client_pass")
        return cls(client_no, client_pass, **options)

    def _make_protocol(self, name: str) -> Protocol:
        if name in ("soap11", "soap12"):
            return SoapProtocol(self._transport, self.endpoint, name, self._wsdl)  # type: ignore[arg-type]
        return AsmxHttpProtocol(self._transport, self.endpoint, name)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"FiboClient(client_no={self.client_no!r}, endpoint={self.endpoint!r}, "
            f"protocols={self.protocols!r})"
        )

    def bind(self, **context: Any) -> FiboClient:
        """This client with ``context`` (a request id, say) on every log event of its calls.

        The view shares the original's connections: close the original, not the view.
        """
        view = copy.copy(self)
        view._caller = self._caller.bind(**context)
        return view

    def __enter__(self) -> FiboClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        for proto in self._protocols:
            proto.close()
        if self._get_as_post is not None:
            self._get_as_post.close()
        self._transport.close()

    @property
    def service(self) -> Any:
        """zeep's service proxy for the SOAP binding: raw strings in and out, for SOAP users.

        The password is the caller's to pass, as with any zeep service.
        """
        for proto in self._protocols:
            if isinstance(proto, SoapProtocol):
                return proto.service
        return SoapProtocol(self._transport, self.endpoint, "soap11", self._wsdl).service

    # --- the call path -------------------------------------------------------------------------

    def _call(
        self,
        name: str,
        params: Mapping[str, str],
        *,
        guids: Sequence[str] = (),
        rebuild: Rebuild | None = None,
    ) -> codec.Decoded:
        """The decoded answer of one wire call, made the safe way (fibo_soap.resilience).

        ``guids`` are the messages a send carries; ``rebuild`` makes the parameters of a list send
        for a subset of them, for when only some must go out again.
        """
        return self._caller.call(operation(name), params, guids=guids, rebuild=rebuild)

    def _service_type(self, service_type: str | int | None) -> str:
        chosen = self.service_type if service_type is None else _service_type(service_type)
        if chosen is None:
            raise InvalidInputError(
                "service_type is not set: pass service_type= to the call or the client",
                field="service_type",
            )
        return chosen

    # --- validation ----------------------------------------------------------------------------

    def _phone(self, number: str) -> str:
        return phone.normalize(number, region=self.region, wire=self.wire_format)

    def _phones(self, numbers: Sequence[str]) -> list[str]:
        if not numbers:
            raise InvalidInputError("the recipient list is empty", field="phones")
        return phone.normalize_many(numbers, region=self.region, wire=self.wire_format)

    def _text(self, message: str, field: str = "message") -> str:
        if not isinstance(message, str):
            raise InvalidInputError(f"{field} must be text", field=field, value=message)
        prepared = text.prepare(message, accents=self.accents, max_parts=self.max_parts)
        if len(prepared) > MAX_MESSAGE_CHARS:
            raise MessageTooLongError(
                f"{field} has {len(prepared)} characters; FIBO takes at most {MAX_MESSAGE_CHARS}",
                field=field,
            )
        return prepared

    def _guid(self, guid: str | None) -> str:
        if guid is None:
            return self._new_guid()
        if not guid.strip():
            raise InvalidInputError("guid is empty", field="guid")
        text.check_text(guid, field="guid")
        return guid

    def _guids(self, guids: Iterable[str | None]) -> list[str]:
        made = [self._guid(guid) for guid in guids]
        duplicates = sorted(guid for guid, count in Counter(made).items() if count > 1)
        if duplicates:
            raise InvalidInputError(
                f"duplicate GUIDs in one batch: {', '.join(duplicates[:5])}",
                field="guid",
                value=duplicates,
            )
        return made

    def _sender(self, sender_name: str | None, default: str) -> str:
        if sender_name is None or not sender_name.strip():
            return default
        text.check_text(sender_name, field="sender_name")
        return sender_name.strip()

    # --- results -------------------------------------------------------------------------------

    @staticmethod
    def _status(op: str, decoded: codec.Decoded, ok: int) -> StatusDocument:
        if isinstance(decoded, StatusDocument):
            if decoded.code == ok:
                return decoded
            raise error_for_code(decoded.code, decoded.message, operation=op)
        raise ProtocolError(f"{op}: expected a status document", operation=op)

    @staticmethod
    def _rows(op: str, decoded: codec.Decoded, row: type[Row]) -> list[Row]:
        if isinstance(decoded, list):
            return decoded
        if isinstance(decoded, StatusDocument):
            if decoded.code == CODE_NO_SMS:
                return []
            raise error_for_code(decoded.code, decoded.message, operation=op)
        raise ProtocolError(f"{op}: expected a list of {row.__name__}", operation=op)

    @staticmethod
    def _batch(op: str, decoded: codec.Decoded, guids: Sequence[str]) -> BatchReceipt:
        if isinstance(decoded, codec.WrongPhones):
            rejected = set(decoded.guids)
            return BatchReceipt(
                accepted=tuple(g for g in guids if g not in rejected),
                rejected=tuple(g for g in guids if g in rejected)
                + tuple(g for g in decoded.guids if g not in set(guids)),
            )
        FiboClient._status(op, decoded, CODE_ACCEPTED)
        return BatchReceipt(accepted=tuple(guids), rejected=())

    # --- the operations ------------------------------------------------------------------------

    def about(self) -> str:
        """FIBO's reachability text (``www.Fibovietnam.com``); wire method About."""
        result = self._call("About", {})
        assert isinstance(result, str)
        return result

    def check_client(self) -> str:
        """The account holder's name; wire method CheckClient. AuthenticationError if wrong."""
        return self._status("CheckClient", self._call("CheckClient", {}), CODE_OK).message

    def get_balance(self, service_type: str | int | None = None) -> int:
        """Messages left on a service type; wire method GetClientBalance.

        A negative answer (the service type is wrong) raises InvalidServiceTypeError.
        """
        chosen = self._service_type(service_type)
        decoded = self._call("GetClientBalance", {"serviceType": chosen})
        if isinstance(decoded, int):
            if decoded < 0:
                raise InvalidServiceTypeError(
                    f"service type {chosen} is wrong (balance {decoded})",
                    operation="GetClientBalance",
                    code=decoded,
                )
            return decoded
        self._status("GetClientBalance", decoded, CODE_OK)
        raise ProtocolError("GetClientBalance: unexpected answer", operation="GetClientBalance")

    def get_hosting_balances(self) -> list[HostingBalance]:
        """Every hosting service of the account with its balance;
        wire method GetListSMSHostingWithBalance."""
        op = "GetListSMSHostingWithBalance"
        return self._rows(op, self._call(op, {}), HostingBalance)

    def get_sender_names(self) -> list[SenderName]:
        """The account's registered sender (brand) names; wire method GetClientSenderNameList."""
        op = "GetClientSenderNameList"
        return self._rows(op, self._call(op, {}), SenderName)

    def send_sms(
        self,
        phone: str,
        message: str,
        *,
        guid: str | None = None,
        service_type: str | int | None = None,
    ) -> SendReceipt:
        """A receipt with the message's GUID once the gateway took it; wire method SendSMS."""
        number = self._phone(phone)
        body = self._text(message)
        chosen = self._service_type(service_type)
        guid = self._guid(guid)
        params = {
            "phoneNumber": number,
            "smsMessage": body,
            "smsGUID": guid,
            "serviceType": chosen,
        }
        status = self._status(
            "SendSMS", self._call("SendSMS", params, guids=(guid,)), CODE_ACCEPTED
        )
        return SendReceipt(guid, status.code, status.message)

    def send_test_sms(self, phone: str, message: str, *, guid: str | None = None) -> SendReceipt:
        """A receipt from FIBO's free test channel (stored, never delivered);
        wire method SendSMS with serviceType 3."""
        return self.send_sms(phone, message, guid=guid, service_type=TEST_SERVICE_TYPE)

    def send_masked_sms(
        self,
        phone: str,
        message: str,
        *,
        sender_name: str = "",
        guid: str | None = None,
        service_type: str | int | None = None,
    ) -> SendReceipt:
        """A receipt for one message sent as a brand name; wire method SendMaskedSMS."""
        number = self._phone(phone)
        body = self._text(message)
        chosen = self._service_type(service_type)
        guid = self._guid(guid)
        params = {
            "senderName": self._sender(sender_name, ""),
            "phoneNumber": number,
            "smsMessage": body,
            "smsGUID": guid,
            "serviceType": chosen,
        }
        op = "SendMaskedSMS"
        status = self._status(op, self._call(op, params, guids=(guid,)), CODE_ACCEPTED)
        return SendReceipt(guid, status.code, status.message)

    def send_bulk_sms(
        self, messages: Iterable[MessageEntry], *, service_type: str | int | None = None
    ) -> BulkReceipt:
        """How many messages the gateway took; wire method SendBulkSMS.

        SendBulkSMS carries no GUIDs: its messages cannot be looked up, and a failure after the
        request went out cannot be resolved. Prefer send_multi_message.
        """
        items = [_message(entry) for entry in messages]
        if not items:
            raise InvalidInputError("the message list is empty", field="messages")
        numbers = self._phones([item.phone for item in items])
        bodies = [self._text(item.text) for item in items]
        chosen = self._service_type(service_type)
        document = codec.encode_document(
            operation("SendBulkSMS").document("smsList"),  # type: ignore[arg-type]
            zip(numbers, bodies, strict=True),
        )
        op = "SendBulkSMS"
        params = {"smsList": document, "serviceType": chosen}
        status = self._status(op, self._call(op, params), CODE_ACCEPTED)
        return BulkReceipt(len(items), status.code, status.message)

    def send_to_list(
        self,
        phones: Iterable[PhoneEntry],
        content: str,
        *,
        sender_name: str | None = None,
        service_type: str | int | None = None,
    ) -> BatchReceipt:
        """The GUIDs accepted and rejected for one text to many phones;
        wire method SendSMSToListMobilePhone. ``phones`` are numbers or ``(number, guid)``."""
        entries = [(p, None) if isinstance(p, str) else (p[0], p[1]) for p in phones]
        numbers = self._phones([number for number, _ in entries])
        guids = self._guids(guid for _, guid in entries)
        body = self._text(content, "content")
        chosen = self._service_type(service_type)
        op = "SendSMSToListMobilePhone"
        shape = operation(op).document("listPhoneNumber")
        assert shape is not None
        number_of = dict(zip(guids, numbers, strict=True))
        sender = self._sender(sender_name, NO_SENDER)

        def params_for(subset: Sequence[str]) -> dict[str, str]:
            document = codec.encode_document(shape, [(number_of[g], g) for g in subset])
            return {
                "senderName": sender,
                "smsContent": body,
                "listPhoneNumber": document,
                "serviceType": chosen,
            }

        decoded = self._call(op, params_for(guids), guids=guids, rebuild=params_for)
        return self._batch(op, decoded, guids)

    def send_multi_message(
        self,
        messages: Iterable[MessageEntry],
        *,
        sender_name: str | None = None,
        service_type: str | int | None = None,
    ) -> BatchReceipt:
        """The GUIDs accepted and rejected for a text of its own to each phone;
        wire method SendSMSWithMultiMessage."""
        items = [_message(entry) for entry in messages]
        if not items:
            raise InvalidInputError("the message list is empty", field="messages")
        numbers = self._phones([item.phone for item in items])
        guids = self._guids(item.guid for item in items)
        bodies = [self._text(item.text) for item in items]
        chosen = self._service_type(service_type)
        op = "SendSMSWithMultiMessage"
        shape = operation(op).document("smsMessage")
        assert shape is not None
        row_of = {g: (n, g, b) for n, g, b in zip(numbers, guids, bodies, strict=True)}
        sender = self._sender(sender_name, NO_SENDER)

        def params_for(subset: Sequence[str]) -> dict[str, str]:
            document = codec.encode_document(shape, [row_of[g] for g in subset])
            return {"senderName": sender, "smsMessage": document, "serviceType": chosen}

        decoded = self._call(op, params_for(guids), guids=guids, rebuild=params_for)
        return self._batch(op, decoded, guids)

    def get_sms_status(self, guids: Iterable[str]) -> list[SmsStatusRow]:
        """The delivery state of each message FIBO knows by GUID; wire method GetSMSStatus.

        Unknown GUIDs are simply absent from the list.
        """
        wanted = list(guids)
        if not wanted:
            raise InvalidInputError("no GUIDs to look up", field="guids")
        for guid in wanted:
            self._guid(guid)
        op = "GetSMSStatus"
        document = codec.encode_document(operation(op).document("smsList"), wanted)  # type: ignore[arg-type]
        return self._rows(op, self._call(op, {"smsList": document}), SmsStatusRow)

    def get_sent_list(self, minutes: int) -> list[SentSms]:
        """Messages sent in the last ``minutes``; wire method GetSMSSentList."""
        op = "GetSMSSentList"
        params = {"minutes": str(_positive(minutes, "minutes"))}
        return self._rows(op, self._call(op, params), SentSms)

    def get_sent_page(
        self,
        page: int,
        *,
        from_date: DateLike | None = None,
        to_date: DateLike | None = None,
        status: SmsStatus | int | None = None,
        service_type: str | int | None = None,
        key: str = "",
    ) -> list[SentSms]:
        """One page (20 rows) of sent messages, filtered; wire method GetClientSMSListOfPage."""
        op = "GetClientSMSListOfPage"
        params = {
            "pageNO": str(_positive(page, "page")),
            "fromDate": codec.request_date(from_date),
            "toDate": codec.request_date(to_date),
            "smsStatus": "" if status is None else str(int(status)),
            "serviceTypeID": "" if service_type is None else _service_type(service_type),
            "key": self._key(key),
        }
        return self._rows(op, self._call(op, params), SentSms)

    def get_total_pages(self, key: str = "") -> int:
        """How many pages of 20 the sent messages fill; wire method GetTotalPageOfClientSMS."""
        op = "GetTotalPageOfClientSMS"
        pages = self._call(op, {"key": self._key(key)})
        if not isinstance(pages, int):
            raise ProtocolError(f"{op}: expected an integer", operation=op)
        if pages < 0:
            raise InvalidInputError(
                f"FIBO refused the parameters (answer {pages})", field="key", operation=op
            )
        return pages

    def get_incoming_list(self, minutes: int) -> list[IncomingSms]:
        """Messages received in the last ``minutes``; wire method GetCommingSMSList."""
        op = "GetCommingSMSList"
        params = {"minutes": str(_positive(minutes, "minutes"))}
        return self._rows(op, self._call(op, params), IncomingSms)

    def get_incoming(
        self,
        from_date: DateLike,
        to_date: DateLike,
        *,
        status: IncomingStatus | int | None = None,
        service_type: str | int | None = None,
        key: str = "",
    ) -> list[IncomingSms]:
        """Messages received between two dates (inclusive); an empty list when none (code 301);
        wire method GetClientCommingSMSNotDividePage."""
        if _day(from_date) > _day(to_date):
            raise InvalidInputError("from_date is after to_date", field="from_date")
        op = "GetClientCommingSMSNotDividePage"
        params = {
            "fromDate": codec.request_date(from_date),
            "toDate": codec.request_date(to_date),
            "smsStatus": "" if status is None else str(int(status)),
            "serviceTypeID": "" if service_type is None else _service_type(service_type),
            "key": self._key(key),
        }
        return self._rows(op, self._call(op, params), IncomingSms)

    def estimate(
        self,
        messages: Iterable[MessageEntry | str],
        *,
        service_type: str | int | None = None,
        check_balance: bool = True,
    ) -> Estimate:
        """The parts each message will take and their total, against the service type's balance
        (wire method GetClientBalance, unless ``check_balance`` is False). Nothing is sent.

        Messages are validated and prepared exactly as a send would (accents option, part limit),
        so an estimate that succeeds describes what a send will do.
        """
        items = [
            Message("", entry) if isinstance(entry, str) else _message(entry) for entry in messages
        ]
        chosen = self._service_type(service_type)
        phones = [item.phone for item in items if item.phone]
        if phones:
            self._phones(phones)
        parts = tuple(text.segments(self._text(item.text)) for item in items)
        return Estimate(
            messages=parts,
            total_parts=sum(segment.parts for segment in parts),
            service_type=chosen,
            balance=self.get_balance(chosen) if check_balance else None,
        )

    @staticmethod
    def _key(key: str) -> str:
        if key:
            text.check_text(key, field="key")
        return key


def protocol_list(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """The protocols a client tries, in order, from a name, a comma-separated list or a sequence.

    POST is moved ahead of GET when both are listed: GET puts the password in the URL.
    """
    if value is None:
        return DEFAULT_PROTOCOLS
    raw = value.split(",") if isinstance(value, str) else list(value)
    names = [str(name).strip().lower() for name in raw]
    names = [name for name in names if name]
    for name in names:
        if name not in PROTOCOL_NAMES:
            raise InvalidInputError(
                f"unknown protocol {name!r}: use one of {', '.join(PROTOCOL_NAMES)}",
                field="protocol",
                value=name,
            )
    if not names:
        raise InvalidInputError("no protocol given", field="protocols", value=value)
    if len(set(names)) != len(names):
        raise InvalidInputError("a protocol is listed twice", field="protocols", value=value)
    if "get" in names and "post" in names and names.index("get") < names.index("post"):
        names.remove("post")
        names.insert(names.index("get"), "post")
    return tuple(names)


def _service_type(value: str | int) -> str:
    chosen = str(value).strip()
    if not chosen.lstrip("-").isdigit():
        raise InvalidInputError(
            f"service_type must be a number, got {value!r}", field="service_type", value=value
        )
    return chosen


def _day(value: DateLike) -> date:
    return value.date() if isinstance(value, datetime) else value


def _positive(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{field} must be a whole number ≥ 1", field=field, value=value)
    return value


def _message(entry: MessageEntry) -> Message:
    if isinstance(entry, Message):
        return entry
    if isinstance(entry, tuple) and len(entry) in (2, 3):
        return Message(*entry)
    raise InvalidInputError(
        "a message is Message(phone, text, guid) or a (phone, text[, guid]) tuple",
        field="messages",
    )
