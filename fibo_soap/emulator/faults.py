"""Faults on demand: deterministic failures scoped per method and protocol.

A fault matches calls by wire method and protocol (``*`` for any) and fires on the next ``times``
matching calls (None: on every one). Faults are set from Python, from the CLI, or through the
admin endpoint, all of which land here.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from fibo_soap.operations import OPERATIONS
from fibo_soap.protocols.base import PROTOCOL_NAMES


class FaultKind(StrEnum):
    """What goes wrong."""

    LATENCY = "latency"  # the answer comes ``seconds`` late, otherwise intact
    HTTP_500 = "http_500"  # HTTP 500 with a plain-text body, before the method runs
    SOAP_FAULT = "soap_fault"  # a soap:Server fault (HTTP 500) before the method runs
    CLOSE_BEFORE = "close_before"  # the connection is dropped before the method runs
    CLOSE_AFTER = "close_after"  # the method runs (a send is stored), then the connection drops
    TRUNCATE = "truncate"  # the method runs; the answer is cut off half way
    BAD_INNER_XML = "bad_inner_xml"  # the method runs; the result text is malformed XML


#: Faults under which the method still runs (and a send is stored).
AFTER_METHOD = frozenset({FaultKind.CLOSE_AFTER, FaultKind.TRUNCATE, FaultKind.BAD_INNER_XML})


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault rule."""

    kind: FaultKind
    method: str = "*"
    protocol: str = "*"
    times: int | None = None
    seconds: float = 0.0
    id: int = field(default=0, compare=False)

    def matches(self, method: str, protocol: str) -> bool:
        """True when the rule covers a call of ``method`` over ``protocol``."""
        return self.method in ("*", method) and self.protocol in ("*", protocol)

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """A rule from JSON data; ValueError names what is wrong."""
        try:
            kind = FaultKind(data["kind"])
        except (KeyError, ValueError):
            kinds = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"fault kind must be one of: {kinds}") from None
        times = data.get("times")
        # JSON's true is an int to Python, never a count of calls.
        if times is not None and (type(times) is not int or times < 1):
            raise ValueError("times must be a whole number ≥ 1, or always (null in JSON)")
        seconds = float(data.get("seconds", 0.0))
        if not 0 <= seconds <= 300:  # also refuses NaN
            raise ValueError("seconds must be between 0 and 300")
        # A misspelt method or protocol ("GET", "soap1.1") would match no call and the fault would
        # silently never fire: refuse it here, naming what is allowed.
        method = str(data.get("method", "*"))
        if method != "*" and method not in OPERATIONS:
            raise ValueError(f"method must be * or a wire method ({', '.join(OPERATIONS)})")
        protocol = str(data.get("protocol", "*"))
        if protocol != "*" and protocol not in PROTOCOL_NAMES:
            raise ValueError(f"protocol must be * or one of: {', '.join(PROTOCOL_NAMES)}")
        return cls(kind, method, protocol, times, seconds)

    @classmethod
    def from_spec(cls, text: str) -> Fault:
        """A rule from its one-word spelling on a command line:
        ``KIND[,method=M][,protocol=P][,times=N][,seconds=S]``, e.g.
        ``close_after,method=SendSMS,times=1``. ``times=always`` (the default) fires on every
        matching call. ValueError names what is wrong."""
        kind, *pairs = (part.strip() for part in text.split(","))
        data: dict[str, Any] = {"kind": kind}
        for pair in pairs:
            key, sep, value = (part.strip() for part in pair.partition("="))
            if not sep or key not in _SPEC_KEYS or key in data:
                keys = ", ".join(f"{name}=…" for name in _SPEC_KEYS)
                raise ValueError(f"{pair!r} is not one of {keys} (each at most once)")
            if key == "times":
                data[key] = None if value == "always" else _whole(value)
            elif key == "seconds":
                try:
                    data[key] = float(value)
                except ValueError:
                    raise ValueError(f"seconds must be a number, not {value!r}") from None
            else:
                data[key] = value
        return cls.from_dict(data)

    def spec(self) -> str:
        """The rule as :meth:`from_spec` reads it, what is left at its default left out."""
        parts = [self.kind.value]
        if self.method != "*":
            parts.append(f"method={self.method}")
        if self.protocol != "*":
            parts.append(f"protocol={self.protocol}")
        if self.times is not None:
            parts.append(f"times={self.times}")
        if self.seconds:
            parts.append(f"seconds={self.seconds:g}")
        return ",".join(parts)


#: What a rule's spec may set after its kind, in the order spec() writes them.
_SPEC_KEYS = ("method", "protocol", "times", "seconds")


def _whole(value: str) -> int:
    # A spec's times: from_dict refuses a number below 1 in the same words.
    try:
        return int(value)
    except ValueError:
        raise ValueError("times must be a whole number ≥ 1, or always") from None


class Faults:
    """The active fault rules; thread-safe."""

    def __init__(self) -> None:
        self._rules: list[Fault] = []
        self._next_id = 1
        self._lock = threading.Lock()

    def add(
        self,
        kind: FaultKind | str,
        *,
        method: str = "*",
        protocol: str = "*",
        times: int | None = None,
        seconds: float = 0.0,
    ) -> Fault:
        """Add a rule; returns it with its id (ValueError, as from Fault.from_dict, for a rule
        that cannot be)."""
        return self.insert(
            Fault.from_dict(
                {
                    "kind": kind,
                    "method": method,
                    "protocol": protocol,
                    "times": times,
                    "seconds": seconds,
                }
            )
        )

    def insert(self, rule: Fault) -> Fault:
        """Add a rule made already (its id is ignored); returns it with the id it now has."""
        with self._lock:
            rule = replace(rule, id=self._next_id)
            self._next_id += 1
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def active(self) -> bool:
        """True when any rule is set: the app's look before every call, without the lock.

        Reading the list's length is atomic; a rule added meanwhile applies from the next call.
        """
        return bool(self._rules)

    def rules(self) -> list[Fault]:
        """The active rules, oldest first."""
        with self._lock:
            return list(self._rules)

    def take(self, method: str, protocol: str) -> list[Fault]:
        """The rules that fire for this call, each counted once against its ``times``."""
        fired: list[Fault] = []
        with self._lock:
            kept: list[Fault] = []
            for rule in self._rules:
                if rule.matches(method, protocol):
                    fired.append(rule)
                    if rule.times is not None:
                        if rule.times > 1:
                            kept.append(replace(rule, times=rule.times - 1))
                        continue
                kept.append(rule)
            self._rules = kept
        return fired
