"""The exception tree: where a call went wrong, and FIBO's result code when FIBO answered.

FiboError
├── InvalidInputError (also ValueError)   bad input, refused before anything is sent
│   ├── InvalidPhoneNumberError            (also FIBO code 101)
│   └── MessageTooLongError
├── FiboCodeError                           FIBO answered with a result code that is not success
│   ├── AuthenticationError        100
│   ├── InvalidPhoneNumberError    101
│   ├── BalanceError
│   │   ├── ZeroBalanceError       102
│   │   └── InsufficientBalanceError 104
│   ├── InvalidServiceTypeError    103 (or a negative balance)
│   ├── GatewayError               202
│   └── UnexpectedCodeError        any other code
├── TransportError                          the bytes did not make the round trip
│   ├── ConnectError               nothing was sent
│   ├── TimeoutError
│   └── HttpStatusError            an HTTP error status with no ASMX answer in it
├── ProtocolError                           an answer came, but not one we can use
│   ├── SoapFaultError             a soap:Fault (fault_code "Client" or "Server")
│   ├── AsmxError                  ASMX's plain-text HTTP 500 over GET/POST
│   └── ResponseTooLargeError
└── AmbiguousSendError                      a send may or may not have reached the gateway
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence

#: FIBO result codes (FIBO-API.md, "Codes").
CODE_OK = 0
CODE_AUTH = 100
CODE_PHONE = 101
CODE_ZERO_BALANCE = 102
CODE_SERVICE_TYPE = 103
CODE_OVER_BALANCE = 104
CODE_ACCEPTED = 200
CODE_ERROR = 202
CODE_NO_SMS = 301


class FiboError(Exception):
    """Base of every error this library raises.

    ``operation`` is the wire method (``SendSMS``), ``code`` the FIBO result code when FIBO
    answered, ``detail`` the trimmed, redacted reason. No attribute ever holds the password.
    """

    def __init__(
        self,
        detail: str,
        *,
        operation: str | None = None,
        code: int | None = None,
        protocol: str | None = None,
    ) -> None:
        self.detail = detail
        self.operation = operation
        self.code = code
        self.protocol = protocol
        super().__init__(detail)

    def __str__(self) -> str:
        where = []
        if self.operation:
            where.append(self.operation)
        if self.protocol:
            where.append(f"over {self.protocol}")
        if self.code is not None:
            where.append(f"code {self.code}")
        prefix = f"[{' '.join(where)}] " if where else ""
        return f"{prefix}{self.detail}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.detail!r}, operation={self.operation!r}, "
            f"code={self.code!r}, protocol={self.protocol!r})"
        )


class InvalidInputError(FiboError, ValueError):
    """Input refused before any request: ``field`` names the argument, ``value`` what was passed."""

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        value: object = None,
        operation: str | None = None,
        code: int | None = None,
    ) -> None:
        self.field = field
        self.value = value
        super().__init__(detail, operation=operation, code=code)


class MessageTooLongError(InvalidInputError):
    """The text is longer than FIBO or the configured part limit allows."""


class FiboCodeError(FiboError):
    """FIBO answered, with a result code that is not success; ``detail`` is its trimmed message."""


class AuthenticationError(FiboCodeError):
    """Code 100: wrong clientNo or clientPass."""


class InvalidPhoneNumberError(InvalidInputError, FiboCodeError):
    """A phone number that is not valid: refused locally, or code 101 from FIBO.

    ``phone`` is the number as the caller wrote it (or as FIBO reported it); ``reason`` says why.
    A batch reports every bad number at once in ``invalid`` as ``(phone, reason)`` pairs.
    """

    def __init__(
        self,
        detail: str,
        *,
        phone: str | None = None,
        reason: str | None = None,
        invalid: Sequence[tuple[str, str]] = (),
        operation: str | None = None,
        code: int | None = None,
    ) -> None:
        self.phone = phone
        self.reason = reason
        self.invalid = tuple(invalid)
        super().__init__(detail, field="phone", value=phone, operation=operation, code=code)


class BalanceError(FiboCodeError):
    """The account cannot pay for the send (102 or 104)."""


class ZeroBalanceError(BalanceError):
    """Code 102: the balance of the service type is zero."""


class InsufficientBalanceError(BalanceError):
    """Code 104: more messages than the balance allows; nothing was sent."""


class InvalidServiceTypeError(FiboCodeError):
    """Code 103, or a negative balance from GetClientBalance: the service type is wrong."""


class GatewayError(FiboCodeError):
    """Code 202: FIBO reports an error of its own, described in ``detail``."""


class UnexpectedCodeError(FiboCodeError):
    """A result code this operation is not documented to return."""


class TransportError(FiboError):
    """The request or its answer did not make the round trip.

    ``request_sent`` is False only when it is certain no byte of the request reached the server
    (the connection was refused or never made); a send is safe to repeat only then.
    """

    request_sent: bool = True

    def __init__(
        self,
        detail: str,
        *,
        operation: str | None = None,
        protocol: str | None = None,
        request_sent: bool = True,
    ) -> None:
        self.request_sent = request_sent
        super().__init__(detail, operation=operation, protocol=protocol)


class ConnectError(TransportError):
    """The connection could not be made: nothing was sent."""

    def __init__(
        self, detail: str, *, operation: str | None = None, protocol: str | None = None
    ) -> None:
        super().__init__(detail, operation=operation, protocol=protocol, request_sent=False)


class TimeoutError(TransportError, builtins.TimeoutError):
    """Connect or read timeout."""


class HttpStatusError(TransportError):
    """An HTTP error status without an ASMX answer in it (a proxy, a load balancer, a dead host)."""

    def __init__(
        self,
        detail: str,
        *,
        status: int,
        operation: str | None = None,
        protocol: str | None = None,
    ) -> None:
        self.status = status
        super().__init__(detail, operation=operation, protocol=protocol)


class ProtocolError(FiboError):
    """An answer arrived that cannot be used: not the shape FIBO answers with.

    ``excerpt`` is the start of the offending body, with secrets and phone numbers masked.
    """

    def __init__(
        self,
        detail: str,
        *,
        excerpt: str = "",
        status: int | None = None,
        operation: str | None = None,
        protocol: str | None = None,
    ) -> None:
        self.excerpt = excerpt
        self.status = status
        super().__init__(detail, operation=operation, protocol=protocol)

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (excerpt: {self.excerpt!r})" if self.excerpt else base


class SoapFaultError(ProtocolError):
    """The service answered with a SOAP fault; ``fault_code`` is ``Client`` or ``Server``."""

    def __init__(
        self,
        detail: str,
        *,
        fault_code: str,
        status: int | None = None,
        operation: str | None = None,
        protocol: str | None = None,
    ) -> None:
        self.fault_code = fault_code
        super().__init__(detail, status=status, operation=operation, protocol=protocol)


class AsmxError(ProtocolError):
    """ASMX refused a GET/POST call (HTTP 500, plain-text reason): unknown method, missing
    parameter, request validation."""


class ResponseTooLargeError(ProtocolError):
    """The answer is larger than the configured response bound."""


class AmbiguousSendError(FiboError):
    """A send failed after the request went out: the gateway may or may not have taken it.

    ``guids`` are the messages not known to have been taken (empty for SendBulkSMS, which carries
    none): look them up (get_sms_status) before sending them again. ``unsent`` is the part of them
    that certainly was not taken (GetSMSStatus did not find them, and they were not sent again):
    safe to send again as they are. ``accepted`` are the messages of the call that GetSMSStatus
    found at the gateway. Its ``__cause__`` is the failure seen.
    """

    def __init__(
        self,
        detail: str,
        *,
        guids: Sequence[str] = (),
        accepted: Sequence[str] = (),
        unsent: Sequence[str] = (),
        operation: str | None = None,
        protocol: str | None = None,
    ) -> None:
        self.guids = tuple(guids)
        self.accepted = tuple(accepted)
        self.unsent = tuple(unsent)
        super().__init__(detail, operation=operation, protocol=protocol)

    @property
    def unknown(self) -> tuple[str, ...]:
        """The messages whose fate is unknown: ``guids`` less ``unsent``."""
        unsent = set(self.unsent)
        return tuple(guid for guid in self.guids if guid not in unsent)


_BY_CODE: dict[int, type[FiboCodeError]] = {
    CODE_AUTH: AuthenticationError,
    CODE_PHONE: InvalidPhoneNumberError,
    CODE_ZERO_BALANCE: ZeroBalanceError,
    CODE_SERVICE_TYPE: InvalidServiceTypeError,
    CODE_OVER_BALANCE: InsufficientBalanceError,
    CODE_ERROR: GatewayError,
}


def error_for_code(code: int, message: str, *, operation: str) -> FiboCodeError:
    """The exception for a FIBO result code; ``message`` is FIBO's text, trimmed here."""
    cls = _BY_CODE.get(code, UnexpectedCodeError)
    detail = message.strip() or f"FIBO answered code {code}"
    return cls(detail, operation=operation, code=code)
