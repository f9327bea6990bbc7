"""The narrow interface every protocol offers the client: one call in, the result text out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol as _Protocol

from fibo_soap.operations import Operation

#: The protocols a client may use, by the names users give them.
PROTOCOL_NAMES = ("soap11", "soap12", "get", "post")


class Protocol(_Protocol):
    """How a call travels. ``call`` returns the result text of the method (the first parse done).

    A protocol knows no FIBO code: it raises TransportError or ProtocolError, never FiboCodeError.
    """

    name: str

    def call(self, op: Operation, params: Mapping[str, str]) -> str:
        """The method's result text (``<MethodResult>`` or the ``<string>`` body)."""
        ...

    def close(self) -> None:
        """Release what the protocol holds (not the shared transport)."""
        ...


class AsyncProtocol(_Protocol):
    """``Protocol`` for AsyncFiboClient: the same call, awaited."""

    name: str

    async def call(self, op: Operation, params: Mapping[str, str]) -> str:
        """The method's result text (``<MethodResult>`` or the ``<string>`` body)."""
        ...

    async def aclose(self) -> None:
        """Release what the protocol holds (not the shared transport)."""
        ...
