"""FiboClient and AsyncFiboClient: one typed method per FIBO operation, over SOAP 1.1, SOAP 1.2,
HTTP GET or POST; the first blocks, the second is awaited.

The facade validates and normalizes input, builds the wire parameters from the operation table,
hands them to the resilience layer, and turns the decoded answer into a typed result or an
exception. It knows no protocol's details; protocols know no FIBO code.

Each operation is written once, as a flow: a generator that does all of that and yields the steps
of its wire call (``fibo_soap.resilience.Plan``: an attempt on a protocol, a wait) without doing
any I/O. The ``facade`` decorator makes each flow a method of both clients: FiboClient's Caller
runs the steps with blocking I/O (http.client), AsyncFiboClient's AsyncCaller awaits them (asyncio).
The two clients differ in their transport, their protocols, their caller and how they close.
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import os
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import date, datetime
from enum import IntEnum
from types import MethodType
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    Generic,
    ParamSpec,
    Self,
    TypeVar,
    cast,
    overload,
)

from fibo_soap import codec, phone, text
from fibo_soap.errors import (
    CODE_ACCEPTED,
    CODE_NO_SMS,
    CODE_OK,
    FiboCodeError,
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
    new_guid,
)
from fibo_soap.operations import (
    MAX_MESSAGE_CHARS,
    TEST_SERVICE_TYPE,
    operation,
)
from fibo_soap.protocols.base import PROTOCOL_NAMES
from fibo_soap.protocols.http import AsmxHttpProtocol, AsyncAsmxHttpProtocol
from fibo_soap.protocols.soap import AsyncSoapProtocol, SoapEngine, SoapName, SoapProtocol
from fibo_soap.protocols.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    HttpTransport,
)
from fibo_soap.resilience import AsyncCaller, BaseCaller, Caller, Plan, Rebuild, RetryPolicy

if TYPE_CHECKING:
    from fibo_soap.campaign import AsyncSending, Journal, Sending
    from fibo_soap.protocols.async_transport import AsyncHttpTransport

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

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C", bound=BaseCaller[Any])


class FacadeMethod(Generic[P, T]):
    """An operation of the facade, written once as a flow (a generator of resilience steps that
    returns the typed result): a blocking method of FiboClient, a coroutine method of
    AsyncFiboClient, each with the flow's name, parameters and docstring.

    ``flow`` is the generator function itself, for flows that build on another.
    """

    def __init__(self, flow: Callable[Concatenate[Any, P], Plan[T]]) -> None:
        self.flow = flow
        functools.update_wrapper(cast(Any, self), flow)

        def blocking(client: FiboClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
            return client._caller.run(flow(client, *args, **kwargs))

        async def awaited(client: AsyncFiboClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
            return await client._caller.run(flow(client, *args, **kwargs))

        # What introspection (help, inspect.signature, IDEs at run time) shows of each method:
        # the flow's name, parameters and docstring, returning what the flow's plan returns.
        signature = inspect.signature(flow)
        returns = signature.return_annotation
        if isinstance(returns, str) and returns.startswith("Plan[") and returns.endswith("]"):
            signature = signature.replace(return_annotation=returns[5:-1])
        method: Any
        for method, owner in ((blocking, "FiboClient"), (awaited, "AsyncFiboClient")):
            functools.update_wrapper(method, flow)
            del method.__wrapped__
            method.__qualname__ = f"{owner}.{flow.__name__}"
            method.__signature__ = signature
            method.__annotations__ = {**flow.__annotations__, "return": signature.return_annotation}
        self.blocking = blocking
        self.awaited = awaited

    @overload
    def __get__(
        self, client: None, owner: type[FiboClient]
    ) -> Callable[Concatenate[FiboClient, P], T]: ...

    @overload
    def __get__(
        self, client: None, owner: type[AsyncFiboClient]
    ) -> Callable[Concatenate[AsyncFiboClient, P], Coroutine[Any, Any, T]]: ...

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, client: FiboClient, owner: type[Any] | None = None) -> Callable[P, T]: ...

    @overload
    def __get__(
        self, client: AsyncFiboClient, owner: type[Any] | None = None
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, client: Any, owner: type[Any] | None = None) -> Any:
        if client is None:
            awaits = getattr(owner, "_awaits", None)
            if awaits is None:  # the shared base: the descriptor itself
                return self
            return self.awaited if awaits else self.blocking
        return MethodType(self.awaited if client._awaits else self.blocking, client)


def facade(flow: Callable[Concatenate[Any, P], Plan[T]]) -> FacadeMethod[P, T]:
    """Make the flow ``flow`` an operation of FiboClient (blocking) and AsyncFiboClient (async)."""
    return FacadeMethod(flow)


class _Client(Generic[C]):
    """What FiboClient and AsyncFiboClient share: the options (documented on FiboClient), the
    validation, the reading of results, and every operation, written once as a flow. The
    subclasses bring the I/O: their transport, protocols and caller, and how they close.
    """

    #: True for the client whose operations are awaited; set by each concrete client.
    _awaits: ClassVar[bool]
    #: The classes of the SOAP and of the ASMX GET/POST protocols: blocking or awaited.
    _soap_class: ClassVar[type[Any]]
    _form_class: ClassVar[type[Any]]
    _transport: Any
    _caller: C

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
        soap_engine: SoapEngine = "fast",
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
        if soap_engine not in ("fast", "zeep"):
            raise InvalidInputError(
                f"soap_engine must be 'fast' or 'zeep', not {soap_engine!r}", field="soap_engine"
            )
        self._soap_engine: SoapEngine = soap_engine
        self._new_guid = guid_factory or new_guid
        connect, read = (
            timeout if isinstance(timeout, tuple) else (DEFAULT_CONNECT_TIMEOUT, timeout)
        )
        self._transport = self._open_transport(
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
        get_as_post = None
        if "get" in chain:
            get_as_post = chain.get("post") or self._make_protocol("post")
        self._get_as_post = get_as_post
        self._caller = self._new_caller(
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

    # --- what each client brings ---------------------------------------------------------------

    def _open_transport(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_response_bytes: int,
        pool_size: int,
    ) -> Any:
        raise NotImplementedError

    def _make_protocol(self, name: str) -> Any:
        """The protocol ``name`` over the client's transport: of the client's SOAP class for
        soap11/soap12, of its ASMX form class for get/post."""
        if name in ("soap11", "soap12"):
            return self._soap_class(
                self._transport,
                self.endpoint,
                cast(SoapName, name),
                self._wsdl,
                engine=self._soap_engine,
            )
        return self._form_class(self._transport, self.endpoint, "get" if name == "get" else "post")

    def _new_caller(self, protocols: Sequence[Any], **options: Any) -> C:
        raise NotImplementedError

    # --- the rest is shared --------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
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

    def __repr__(self) -> str:
        # The client number only: an endpoint may carry credentials in its userinfo.
        return f"{type(self).__name__}(client_no={self.client_no!r})"

    def bind(self, **context: Any) -> Self:
        """This client with ``context`` (a request id, say) on every log event of its calls.

        The view shares the original's connections: close the original, not the view.
        """
        view = copy.copy(self)
        view._caller = self._caller.bind(**context)
        return view

    def _owned(self) -> list[Any]:
        """The protocols to close, the GET-as-POST one included."""
        owned = list(self._protocols)
        if self._get_as_post is not None:
            owned.append(self._get_as_post)
        return owned

    @property
    def service(self) -> Any:
        """zeep's service proxy for the SOAP binding: raw strings in and out, for SOAP users
        (each operation a coroutine on AsyncFiboClient).

        The password is the caller's to pass, as with any zeep service.
        """
        for proto in self._protocols:
            if proto.name in ("soap11", "soap12"):
                return proto.service
        return self._make_protocol("soap11").service

    # --- the call path -------------------------------------------------------------------------

    def _wire(
        self,
        name: str,
        params: Mapping[str, str],
        *,
        guids: Sequence[str] = (),
        rebuild: Rebuild | None = None,
    ) -> Plan[codec.Decoded]:
        """The plan of one wire call, made the safe way (fibo_soap.resilience), returning the
        decoded answer.

        ``guids`` are the messages a send carries; ``rebuild`` makes the parameters of a list send
        for a subset of them, for when only some must go out again.
        """
        return self._caller.flow(operation(name), params, guids=guids, rebuild=rebuild)

    def _streamed(
        self, name: str, params: Mapping[str, str], row: type[Row]
    ) -> Plan[Iterable[list[Row]]]:
        """The plan of a list call whose rows are decoded as they are iterated: their batches
        (fibo_soap.codec.RowStream). The call, its retries and the FIBO code are as ``_wire``'s;
        any other answer is read by ``_rows``, as the list call reads it: code 301 (no messages)
        is no rows, a refusal raises here, before any row."""
        decoded = yield from self._caller.flow(codec.streamed(operation(name)), params)
        if isinstance(decoded, codec.RowStream):
            return decoded.batches()
        return [self._rows(name, decoded, row)]

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
        prepared = text.prepare(
            message, accents=self.accents, max_parts=self.max_parts, field=field
        )
        if len(prepared) > MAX_MESSAGE_CHARS:
            raise MessageTooLongError(
                f"{field} has {len(prepared)} characters; FIBO takes at most {MAX_MESSAGE_CHARS}",
                field=field,
            )
        return prepared

    def _guid(self, guid: str | None) -> str:
        if guid is None:
            return self._new_guid()
        return text.check_guid(guid)

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
        if sender_name is None:
            return default
        if not isinstance(sender_name, str):
            raise InvalidInputError(
                f"sender_name must be text, not {type(sender_name).__name__}",
                field="sender_name",
                value=sender_name,
            )
        if not sender_name.strip():
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
        _Client._status(op, decoded, CODE_ACCEPTED)
        return BatchReceipt(accepted=tuple(guids), rejected=())

    # --- the operations, each written once as a flow -----------------------------------------

    @facade
    def about(self) -> Plan[str]:
        """FIBO's reachability text (``www.Fibovietnam.com``); wire method About."""
        result = yield from self._wire("About", {})
        assert isinstance(result, str)
        return result

    @facade
    def check_client(self) -> Plan[str]:
        """The account holder's name; wire method CheckClient. AuthenticationError if wrong."""
        decoded = yield from self._wire("CheckClient", {})
        return self._status("CheckClient", decoded, CODE_OK).message

    @facade
    def get_balance(self, service_type: str | int | None = None) -> Plan[int]:
        """Messages left on a service type; wire method GetClientBalance.

        A negative answer (the service type is wrong) raises InvalidServiceTypeError.
        """
        return (yield from self._balance(self._service_type(service_type)))

    def _balance(self, chosen: str) -> Plan[int]:
        decoded = yield from self._wire("GetClientBalance", {"serviceType": chosen})
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

    @facade
    def get_hosting_balances(self) -> Plan[list[HostingBalance]]:
        """Every hosting service of the account with its balance;
        wire method GetListSMSHostingWithBalance."""
        op = "GetListSMSHostingWithBalance"
        return self._rows(op, (yield from self._wire(op, {})), HostingBalance)

    @facade
    def get_sender_names(self) -> Plan[list[SenderName]]:
        """The account's registered sender (brand) names; wire method GetClientSenderNameList."""
        op = "GetClientSenderNameList"
        return self._rows(op, (yield from self._wire(op, {})), SenderName)

    @facade
    def send_sms(
        self,
        phone: str,
        message: str,
        *,
        guid: str | None = None,
        service_type: str | int | None = None,
    ) -> Plan[SendReceipt]:
        """A receipt with the message's GUID once the gateway took it; wire method SendSMS."""
        return (yield from self._send_sms(phone, message, guid, service_type))

    def _send_sms(
        self, phone: str, message: str, guid: str | None, service_type: str | int | None
    ) -> Plan[SendReceipt]:
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
        decoded = yield from self._wire("SendSMS", params, guids=(guid,))
        status = self._status("SendSMS", decoded, CODE_ACCEPTED)
        return SendReceipt(guid, status.code, status.message)

    @facade
    def send_test_sms(
        self, phone: str, message: str, *, guid: str | None = None
    ) -> Plan[SendReceipt]:
        """A receipt from FIBO's free test channel (stored, never delivered);
        wire method SendSMS with serviceType 3."""
        return (yield from self._send_sms(phone, message, guid, TEST_SERVICE_TYPE))

    @facade
    def send_masked_sms(
        self,
        phone: str,
        message: str,
        *,
        sender_name: str = "",
        guid: str | None = None,
        service_type: str | int | None = None,
    ) -> Plan[SendReceipt]:
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
        decoded = yield from self._wire(op, params, guids=(guid,))
        status = self._status(op, decoded, CODE_ACCEPTED)
        return SendReceipt(guid, status.code, status.message)

    @facade
    def send_bulk_sms(
        self, messages: Iterable[MessageEntry], *, service_type: str | int | None = None
    ) -> Plan[BulkReceipt]:
        """How many messages the gateway took; wire method SendBulkSMS.

        SendBulkSMS carries no GUIDs: its messages cannot be looked up, and a failure after the
        request went out cannot be resolved. Prefer send_multi_message.
        """
        items = [_message(entry) for entry in _many(messages, "messages")]
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
        status = self._status(op, (yield from self._wire(op, params)), CODE_ACCEPTED)
        return BulkReceipt(len(items), status.code, status.message)

    @facade
    def send_to_list(
        self,
        phones: Iterable[PhoneEntry],
        content: str,
        *,
        sender_name: str | None = None,
        service_type: str | int | None = None,
    ) -> Plan[BatchReceipt]:
        """The GUIDs accepted and rejected for one text to many phones;
        wire method SendSMSToListMobilePhone. ``phones`` are numbers or ``(number, guid)``."""
        entries = [_phone_entry(p) for p in _many(phones, "phones")]
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

        decoded = yield from self._wire(op, params_for(guids), guids=guids, rebuild=params_for)
        return self._batch(op, decoded, guids)

    @facade
    def send_multi_message(
        self,
        messages: Iterable[MessageEntry],
        *,
        sender_name: str | None = None,
        service_type: str | int | None = None,
    ) -> Plan[BatchReceipt]:
        """The GUIDs accepted and rejected for a text of its own to each phone;
        wire method SendSMSWithMultiMessage."""
        items = [_message(entry) for entry in _many(messages, "messages")]
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

        decoded = yield from self._wire(op, params_for(guids), guids=guids, rebuild=params_for)
        return self._batch(op, decoded, guids)

    @facade
    def get_sms_status(self, guids: Iterable[str]) -> Plan[list[SmsStatusRow]]:
        """The delivery state of each message FIBO knows by GUID; wire method GetSMSStatus.

        Unknown GUIDs are simply absent from the list.
        """
        wanted = [text.check_guid(guid, field="guids") for guid in _many(guids, "guids")]
        if not wanted:
            raise InvalidInputError("no GUIDs to look up", field="guids")
        op = "GetSMSStatus"
        document = codec.encode_document(operation(op).document("smsList"), wanted)  # type: ignore[arg-type]
        decoded = yield from self._wire(op, {"smsList": document})
        return self._rows(op, decoded, SmsStatusRow)

    @facade
    def get_sent_list(self, minutes: int) -> Plan[list[SentSms]]:
        """Messages sent in the last ``minutes``; wire method GetSMSSentList."""
        op = "GetSMSSentList"
        params = {"minutes": str(_positive(minutes, "minutes"))}
        return self._rows(op, (yield from self._wire(op, params)), SentSms)

    @facade
    def get_sent_page(
        self,
        page: int,
        *,
        from_date: DateLike | None = None,
        to_date: DateLike | None = None,
        status: SmsStatus | int | None = None,
        service_type: str | int | None = None,
        key: str = "",
    ) -> Plan[list[SentSms]]:
        """One page (20 rows) of sent messages, filtered; wire method GetClientSMSListOfPage."""
        op = "GetClientSMSListOfPage"
        params = {
            "pageNO": str(_positive(page, "page")),
            **_date_range(from_date, to_date),
            "smsStatus": _status_filter(status, SmsStatus),
            "serviceTypeID": "" if service_type is None else _service_type(service_type),
            "key": self._key(key),
        }
        return self._rows(op, (yield from self._wire(op, params)), SentSms)

    @facade
    def get_total_pages(self, key: str = "") -> Plan[int]:
        """How many pages of 20 the sent messages fill; wire method GetTotalPageOfClientSMS."""
        op = "GetTotalPageOfClientSMS"
        pages = yield from self._wire(op, {"key": self._key(key)})
        if not isinstance(pages, int):
            raise ProtocolError(f"{op}: expected an integer", operation=op)
        if pages < 0:
            # FIBO documents only "<0: wrong parameters": the account or the key.
            raise FiboCodeError(
                f"FIBO refused the call (answer {pages}): wrong parameters, the account or the key",
                operation=op,
                code=pages,
            )
        return pages

    @facade
    def get_incoming_list(self, minutes: int) -> Plan[list[IncomingSms]]:
        """Messages received in the last ``minutes``; wire method GetCommingSMSList."""
        op = "GetCommingSMSList"
        params = {"minutes": str(_positive(minutes, "minutes"))}
        return self._rows(op, (yield from self._wire(op, params)), IncomingSms)

    @facade
    def get_incoming(
        self,
        from_date: DateLike,
        to_date: DateLike,
        *,
        status: IncomingStatus | int | None = None,
        service_type: str | int | None = None,
        key: str = "",
    ) -> Plan[list[IncomingSms]]:
        """Messages received between two dates (inclusive); an empty list when none (code 301);
        wire method GetClientCommingSMSNotDividePage."""
        op = "GetClientCommingSMSNotDividePage"
        params = self._incoming_params(from_date, to_date, status, service_type, key)
        return self._rows(op, (yield from self._wire(op, params)), IncomingSms)

    def _incoming_params(
        self,
        from_date: DateLike,
        to_date: DateLike,
        status: IncomingStatus | int | None,
        service_type: str | int | None,
        key: str,
    ) -> dict[str, str]:
        """The checked wire parameters of get_incoming and iter_incoming; InvalidInputError when
        the range or a filter is wrong, before anything is sent."""
        return {
            **_date_range(from_date, to_date),
            "smsStatus": _status_filter(status, IncomingStatus),
            "serviceTypeID": "" if service_type is None else _service_type(service_type),
            "key": self._key(key),
        }

    @facade
    def estimate(
        self,
        messages: Iterable[MessageEntry | str],
        *,
        service_type: str | int | None = None,
        check_balance: bool = True,
    ) -> Plan[Estimate]:
        """The parts each message will take and their total, against the service type's balance
        (wire method GetClientBalance, unless ``check_balance`` is False). Nothing is sent.

        Messages are validated and prepared exactly as a send would (accents option, part limit),
        so an estimate that succeeds describes what a send will do.
        """
        items = [
            Message("", entry) if isinstance(entry, str) else _message(entry)
            for entry in _many(messages, "messages")
        ]
        chosen = self._service_type(service_type)
        phones = [item.phone for item in items if item.phone]
        if phones:
            self._phones(phones)
        parts = tuple(text.segments(self._text(item.text)) for item in items)
        balance = (yield from self._balance(chosen)) if check_balance else None
        return Estimate(
            messages=parts,
            total_parts=sum(segment.parts for segment in parts),
            service_type=chosen,
            balance=balance,
        )

    @staticmethod
    def _key(key: str) -> str:
        if key:
            text.check_text(key, field="key")
        return key


class FiboClient(_Client[Caller]):
    """A client of one FIBO account; every operation blocks until it is done.

    ``service_type`` is the default for sends and balances. ``protocols`` is the ordered list of
    protocols a call tries (``soap11``, ``soap12``, ``get``, ``post``; default ``("soap11",
    "get")``); a call that fails on one for a transport or protocol reason goes out on the next,
    under the send-safety rules of ``fibo_soap.resilience``. ``protocol`` is the older spelling
    of a single protocol (or a comma-separated list). ``retry`` is the RetryPolicy of every call
    (None: no retries, no status look-ups). ``log_text`` puts message texts in log events and
    ``mask_phones=False`` full phone numbers; both are off by default. ``endpoint`` overrides the
    WSDL's address;
    ``wsdl`` replaces the bundled WSDL (a path or a ``?WSDL`` URL). ``soap_engine`` chooses how
    SOAP envelopes are written and answers read: ``"fast"`` (built from the WSDL, the default) or
    ``"zeep"`` (zeep's serializer). ``timeout`` is the read timeout
    in seconds (or a ``(connect, read)`` pair); ``max_response_bytes`` bounds every answer.
    ``region`` and ``wire_format`` govern phone normalization, ``accents`` and ``max_parts`` the
    message text; ``guid_factory`` makes the GUIDs of messages the caller gives none for.
    ``pool_size`` is the number of connections kept: as many as threads that share the client.
    """

    _awaits = False
    _transport: HttpTransport
    _soap_class = SoapProtocol
    _form_class = AsmxHttpProtocol

    def _open_transport(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_response_bytes: int,
        pool_size: int,
    ) -> HttpTransport:
        return HttpTransport(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_response_bytes=max_response_bytes,
            pool_size=pool_size,
        )

    def _new_caller(self, protocols: Sequence[Any], **options: Any) -> Caller:
        return Caller(protocols, **options)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        for proto in self._owned():
            proto.close()
        self._transport.close()

    def send_many(
        self,
        messages: Iterable[Any],
        *,
        chunk_size: int = 500,
        concurrency: int = 4,
        journal: Journal | str | os.PathLike[str] | None = None,
        campaign_id: str | None = None,
        service_type: str | int | None = None,
        sender_name: str | None = None,
        bulk: bool = False,
        check_balance: bool = True,
        settle: float = 2.0,
    ) -> Sending:
        """Send ``messages`` as a campaign: chunks of ``chunk_size`` through
        SendSMSWithMultiMessage (SendBulkSMS with ``bulk``), ``concurrency`` at a time, with an
        optional crash-safe ``journal``; iterate the result for one Outcome per message.
        See ``fibo_soap.campaign.send_many``."""
        from fibo_soap.campaign import send_many

        return send_many(
            self,
            messages,
            chunk_size=chunk_size,
            concurrency=concurrency,
            journal=journal,
            campaign_id=campaign_id,
            service_type=service_type,
            sender_name=sender_name,
            bulk=bulk,
            check_balance=check_balance,
            settle=settle,
        )

    def iter_sent_list(self, minutes: int) -> Iterator[SentSms]:
        """The rows of get_sent_list one at a time, decoded as they are taken, so that a large
        answer is never held as a whole list or tree; wire method GetSMSSentList.

        The call is made here, with get_sent_list's retries, fallback, log events and errors;
        the answer is parsed as the loop takes rows. A fault found part way through it
        (malformed XML, a bad value) raises ProtocolError from the loop, after the rows before
        it, and is not retried.
        """
        params = {"minutes": str(_positive(minutes, "minutes"))}
        return itertools.chain.from_iterable(
            self._caller.run(self._streamed("GetSMSSentList", params, SentSms))
        )

    def iter_incoming_list(self, minutes: int) -> Iterator[IncomingSms]:
        """The rows of get_incoming_list one at a time, as iter_sent_list;
        wire method GetCommingSMSList."""
        params = {"minutes": str(_positive(minutes, "minutes"))}
        return itertools.chain.from_iterable(
            self._caller.run(self._streamed("GetCommingSMSList", params, IncomingSms))
        )

    def iter_incoming(
        self,
        from_date: DateLike,
        to_date: DateLike,
        *,
        status: IncomingStatus | int | None = None,
        service_type: str | int | None = None,
        key: str = "",
    ) -> Iterator[IncomingSms]:
        """The rows of get_incoming one at a time, as iter_sent_list: the same checks (made here,
        before anything is sent), filters and errors, and no rows when there are none (code 301);
        wire method GetClientCommingSMSNotDividePage."""
        params = self._incoming_params(from_date, to_date, status, service_type, key)
        return itertools.chain.from_iterable(
            self._caller.run(
                self._streamed("GetClientCommingSMSNotDividePage", params, IncomingSms)
            )
        )

    def _call(
        self,
        name: str,
        params: Mapping[str, str],
        *,
        guids: Sequence[str] = (),
        rebuild: Rebuild | None = None,
    ) -> codec.Decoded:
        """The decoded answer of one wire call, made the safe way (fibo_soap.resilience)."""
        return self._caller.run(self._wire(name, params, guids=guids, rebuild=rebuild))


class AsyncFiboClient(_Client[AsyncCaller]):
    """A client of one FIBO account whose operations are awaited: the facade of FiboClient, with
    the same options, results, errors, retries, send safety and log events.

    Every protocol sends through one ``AsyncHttpTransport`` per client: asyncio connections read
    by httptools (as FiboClient's are), pooled and kept alive. The
    SOAP engines are FiboClient's (``soap_engine="zeep"`` uses zeep's AsyncClient). Use it as
    ``async with AsyncFiboClient(...) as client:``, or ``await client.aclose()`` when done, and
    within one event loop; tasks of that loop may share it (``pool_size`` connections are kept).
    """

    _awaits = True
    _transport: AsyncHttpTransport
    _soap_class = AsyncSoapProtocol
    _form_class = AsyncAsmxHttpProtocol

    def _open_transport(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_response_bytes: int,
        pool_size: int,
    ) -> AsyncHttpTransport:
        from fibo_soap.protocols.async_transport import AsyncHttpTransport

        return AsyncHttpTransport(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_response_bytes=max_response_bytes,
            pool_size=pool_size,
        )

    def _new_caller(self, protocols: Sequence[Any], **options: Any) -> AsyncCaller:
        return AsyncCaller(protocols, **options)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        for proto in self._owned():
            await proto.aclose()
        await self._transport.aclose()

    def send_many(
        self,
        messages: Iterable[Any],
        *,
        chunk_size: int = 500,
        concurrency: int = 4,
        journal: Journal | str | os.PathLike[str] | None = None,
        campaign_id: str | None = None,
        service_type: str | int | None = None,
        sender_name: str | None = None,
        bulk: bool = False,
        check_balance: bool = True,
        settle: float = 2.0,
    ) -> AsyncSending:
        """Send ``messages`` as a campaign: chunks of ``chunk_size`` through
        SendSMSWithMultiMessage (SendBulkSMS with ``bulk``), ``concurrency`` at a time, with an
        optional crash-safe ``journal``; ``async for`` the result for one Outcome per message
        (it is not awaited itself; ``await result.run()`` gives the summary). The requests go
        out as tasks of the running loop. See ``fibo_soap.campaign.send_many``."""
        from fibo_soap.campaign import send_many_async

        return send_many_async(
            self,
            messages,
            chunk_size=chunk_size,
            concurrency=concurrency,
            journal=journal,
            campaign_id=campaign_id,
            service_type=service_type,
            sender_name=sender_name,
            bulk=bulk,
            check_balance=check_balance,
            settle=settle,
        )

    def iter_sent_list(self, minutes: int) -> AsyncIterator[SentSms]:
        """The rows of get_sent_list one at a time, decoded as they are taken:
        ``async for row in client.iter_sent_list(5)``; wire method GetSMSSentList.

        ``minutes`` is checked here; the call is made when the loop starts, with get_sent_list's
        retries, fallback, log events and errors. The answer is parsed a slice at a time, and
        the event loop runs other tasks between slices. A fault found part way through it
        raises ProtocolError from the loop, after the rows before it, and is not retried.
        """
        params = {"minutes": str(_positive(minutes, "minutes"))}
        return self._rows_of(self._streamed("GetSMSSentList", params, SentSms))

    def iter_incoming_list(self, minutes: int) -> AsyncIterator[IncomingSms]:
        """The rows of get_incoming_list one at a time, as iter_sent_list;
        wire method GetCommingSMSList."""
        params = {"minutes": str(_positive(minutes, "minutes"))}
        return self._rows_of(self._streamed("GetCommingSMSList", params, IncomingSms))

    def iter_incoming(
        self,
        from_date: DateLike,
        to_date: DateLike,
        *,
        status: IncomingStatus | int | None = None,
        service_type: str | int | None = None,
        key: str = "",
    ) -> AsyncIterator[IncomingSms]:
        """FiboClient.iter_incoming's rows, for ``async for``: checked here, when called; the call
        is made when the loop starts."""
        params = self._incoming_params(from_date, to_date, status, service_type, key)
        return self._rows_of(
            self._streamed("GetClientCommingSMSNotDividePage", params, IncomingSms)
        )

    async def _rows_of(self, plan: Plan[Iterable[list[Row]]]) -> AsyncIterator[Row]:
        import asyncio

        for batch in await self._caller.run(plan):
            for row in batch:
                yield row
            await asyncio.sleep(0)  # a large answer must not hold the loop for its whole parse

    async def _call(
        self,
        name: str,
        params: Mapping[str, str],
        *,
        guids: Sequence[str] = (),
        rebuild: Rebuild | None = None,
    ) -> codec.Decoded:
        """The decoded answer of one wire call, made the safe way (fibo_soap.resilience)."""
        return await self._caller.run(self._wire(name, params, guids=guids, rebuild=rebuild))


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
    # ASCII digits only: isdigit() also takes "²" and "１", which FIBO would not read as numbers.
    digits = chosen.removeprefix("-")
    if not (digits.isascii() and digits.isdecimal()):
        raise InvalidInputError(
            f"service_type must be a number, got {value!r}", field="service_type", value=value
        )
    return chosen


def _date_range(from_date: DateLike | None, to_date: DateLike | None) -> dict[str, str]:
    """The wire fields of a date range (None: no bound), each a date or datetime, the first not
    after the second as FIBO reads them (the days in Vietnam time); InvalidInputError if not."""
    first = None if from_date is None else codec.request_day(from_date, "from_date")
    last = None if to_date is None else codec.request_day(to_date, "to_date")
    if first is not None and last is not None and first > last:
        raise InvalidInputError(
            f"from_date is after to_date ({first} > {last}, as days in Vietnam)",
            field="from_date",
            value=from_date,
        )
    return {"fromDate": codec.request_date(first), "toDate": codec.request_date(last)}


def _status_filter(status: IntEnum | int | None, kind: type[IntEnum]) -> str:
    """The wire field of a status filter: '' for None, else the number of one of ``kind``'s
    statuses; InvalidInputError for anything else (a name, a bool, a number FIBO has not, a
    status of the other kind: an SmsStatus given for incoming messages)."""
    if status is None:
        return ""
    try:
        if isinstance(status, bool) or not isinstance(status, int):
            raise ValueError
        if isinstance(status, IntEnum) and not isinstance(status, kind):
            raise ValueError
        return str(int(kind(status)))
    except ValueError:
        known = ", ".join(f"{member.name} ({member.value})" for member in kind)
        raise InvalidInputError(
            f"status must be an {kind.__name__} member or its number, not {status!r}: {known}",
            field="status",
            value=status,
        ) from None


def _positive(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{field} must be a whole number ≥ 1", field=field, value=value)
    return value


def _many(entries: Iterable[Any], field: str) -> Iterable[Any]:
    """``entries``, refused when it is one item where a collection of them belongs: a str (its
    characters would each be taken for an item) or a single Message."""
    if isinstance(entries, str | bytes | Message):
        raise InvalidInputError(
            f"{field} must be a collection (a list, say), not one {type(entries).__name__}: "
            f"pass [{field[:-1] if field.endswith('s') else field}]",
            field=field,
            value=entries,
        )
    return entries


def _phone_entry(entry: PhoneEntry) -> tuple[str, str | None]:
    if isinstance(entry, str):
        return entry, None
    if isinstance(entry, tuple) and len(entry) == 2:
        return entry[0], entry[1]
    raise InvalidInputError(
        "a recipient is a phone number or a (phone, guid) tuple", field="phones", value=entry
    )


def _message(entry: MessageEntry) -> Message:
    if isinstance(entry, Message):
        return entry
    if isinstance(entry, tuple) and len(entry) in (2, 3):
        return Message(*entry)
    raise InvalidInputError(
        "a message is Message(phone, text, guid) or a (phone, text[, guid]) tuple",
        field="messages",
    )
