"""fibo-soap: a typed, safe client for the FIBO SMS gateway (SOAP 1.1/1.2, HTTP GET/POST).

The public names, nothing else; each module behind them is importable for the rest. A name is
imported on first use (``fibo_soap.FiboClient``), so that ``import fibo_soap`` loads no XML, SOAP,
HTTP or phone-number library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fibo_soap.client import AsyncFiboClient, FiboClient
    from fibo_soap.errors import (
        AmbiguousSendError,
        AsmxError,
        AuthenticationError,
        BalanceError,
        ConnectError,
        FiboCodeError,
        FiboError,
        GatewayError,
        HttpStatusError,
        InsufficientBalanceError,
        InvalidInputError,
        InvalidPhoneNumberError,
        InvalidServiceTypeError,
        MessageTooLongError,
        ProtocolError,
        ResponseTooLargeError,
        SoapFaultError,
        TimeoutError,
        TransportError,
        UnexpectedCodeError,
        ZeroBalanceError,
    )
    from fibo_soap.models import (
        BatchReceipt,
        BulkReceipt,
        HostingBalance,
        IncomingSms,
        IncomingStatus,
        Message,
        SenderName,
        SendReceipt,
        SentSms,
        SmsStatus,
        SmsStatusRow,
    )
    from fibo_soap.resilience import RetryPolicy

#: The module each public name lives in.
_HOMES = {
    "AsyncFiboClient": "fibo_soap.client",
    "FiboClient": "fibo_soap.client",
    "RetryPolicy": "fibo_soap.resilience",
    **dict.fromkeys(
        (
            "AmbiguousSendError",
            "AsmxError",
            "AuthenticationError",
            "BalanceError",
            "ConnectError",
            "FiboCodeError",
            "FiboError",
            "GatewayError",
            "HttpStatusError",
            "InsufficientBalanceError",
            "InvalidInputError",
            "InvalidPhoneNumberError",
            "InvalidServiceTypeError",
            "MessageTooLongError",
            "ProtocolError",
            "ResponseTooLargeError",
            "SoapFaultError",
            "TimeoutError",
            "TransportError",
            "UnexpectedCodeError",
            "ZeroBalanceError",
        ),
        "fibo_soap.errors",
    ),
    **dict.fromkeys(
        (
            "BatchReceipt",
            "BulkReceipt",
            "HostingBalance",
            "IncomingSms",
            "IncomingStatus",
            "Message",
            "SenderName",
            "SendReceipt",
            "SentSms",
            "SmsStatus",
            "SmsStatusRow",
        ),
        "fibo_soap.models",
    ),
}

__all__ = [
    "AmbiguousSendError",
    "AsmxError",
    "AsyncFiboClient",
    "AuthenticationError",
    "BalanceError",
    "BatchReceipt",
    "BulkReceipt",
    "ConnectError",
    "FiboClient",
    "FiboCodeError",
    "FiboError",
    "GatewayError",
    "HostingBalance",
    "HttpStatusError",
    "IncomingSms",
    "IncomingStatus",
    "InsufficientBalanceError",
    "InvalidInputError",
    "InvalidPhoneNumberError",
    "InvalidServiceTypeError",
    "Message",
    "MessageTooLongError",
    "ProtocolError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "SendReceipt",
    "SenderName",
    "SentSms",
    "SmsStatus",
    "SmsStatusRow",
    "SoapFaultError",
    "TimeoutError",
    "TransportError",
    "UnexpectedCodeError",
    "ZeroBalanceError",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'fibo_soap' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
