"""Calls that heal by themselves when that is safe: retries with backoff, fallback through an
ordered list of protocols, and the resolution of uncertain sends through GetSMSStatus.

Every wire call of a client goes through a Caller. The logic is written once, free of I/O:
``BaseCaller.flow`` is a generator that yields what must be done (``Attempt``: one request on one
protocol; ``Wait``: a pause) and is sent what came of it (the result text, or the FiboError thrown
in), and returns the decoded answer. ``Caller.run`` does those steps with blocking I/O (http.client,
``time.sleep``) for FiboClient; ``AsyncCaller.run`` awaits them (asyncio, ``asyncio.sleep``) for
AsyncFiboClient. The facade's operations are generators of the same steps (fibo_soap.client), so
one driver runs a whole operation.

A call that succeeds at once costs one protocol call, one decode and (when structlog is configured)
two log events: the state of retries is only built once an attempt has failed.

What a failed attempt means is decided by ``classify`` from the exception alone (the table is in
README "Reliability"): whether the gateway may have run the method, and whether the same call
should be tried again on this protocol, on the next one, or not at all. FIBO's own answers (result
codes) are never failures here: they are returned to the facade, which raises them.

A send is repeated only when the gateway certainly did not take it. When that is uncertain, a send
that carries GUIDs asks GetSMSStatus for them: the messages found count as accepted and only the
others go out again (the facade's ``rebuild`` re-encodes the request for them). A send without
GUIDs (SendBulkSMS), or one whose GUIDs cannot be looked up, raises AmbiguousSendError.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Generic, Protocol, Self, TypeAlias, TypeVar

from fibo_soap import codec, logs
from fibo_soap.errors import (
    CODE_ACCEPTED,
    CODE_NO_SMS,
    CODE_OK,
    AmbiguousSendError,
    AsmxError,
    FiboError,
    HttpStatusError,
    InvalidInputError,
    ProtocolError,
    ResponseTooLargeError,
    SoapFaultError,
    TimeoutError,
    TransportError,
    error_for_code,
)
from fibo_soap.models import SmsStatusRow, StatusDocument
from fibo_soap.operations import (
    CLIENT_NO,
    CLIENT_PASS,
    STATUS_QUERY_DOCUMENT,
    Operation,
    operation,
)
from fibo_soap.protocols import base
from fibo_soap.protocols.http import MAX_GET_URL, AsmxForm
from fibo_soap.protocols.transport import call_deadline

#: Builds the parameters of a list send for a subset of its GUIDs (without the account).
Rebuild = Callable[[Sequence[str]], Mapping[str, str]]

#: The message of the receipt of a send that failed in transit but that GetSMSStatus found.
CONFIRMED_MESSAGE: Final = "Accepted (found by GetSMSStatus after an uncertain attempt)"

#: HTTP statuses that say "not now" rather than "not this request".
_TRY_LATER = frozenset({408, 425, 429})
#: Gateway statuses behind which the server may still be running the request.
_STILL_RUNNING = frozenset({502, 504})
#: Result codes that are an answer the caller asked for, not a refusal.
_OK_CODES = frozenset({CODE_OK, CODE_ACCEPTED, CODE_NO_SMS})

_DETAIL_CHARS = 300

R = TypeVar("R")


class _Named(Protocol):
    name: str


ProtoT = TypeVar("ProtoT", bound=_Named)


class Attempt(Generic[ProtoT]):
    """A step of a plan: one request of ``op`` with ``wire`` on ``protocol``, over by ``deadline``
    (a ``time.perf_counter()``; None: the transport's own timeouts bound it). The driver sends
    back the result text, or throws in the FiboError the protocol raised."""

    __slots__ = ("deadline", "op", "protocol", "wire")

    def __init__(
        self, protocol: ProtoT, op: Operation, wire: Mapping[str, str], deadline: float | None
    ) -> None:
        self.protocol = protocol
        self.op = op
        self.wire = wire
        self.deadline = deadline

    def __repr__(self) -> str:
        return f"Attempt({self.op.name} over {self.protocol.name})"


class Wait:
    """A step of a plan: pause for ``seconds``. The driver sends back None."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Wait({self.seconds:.3f})"


#: What a plan yields.
Step: TypeAlias = "Attempt[Any] | Wait"
#: The I/O-free form of a call or of a facade operation: yields Steps, returns its result.
Plan: TypeAlias = Generator[Step, Any, R]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard a call tries before it gives up.

    ``attempts`` is the number of tries of a call on each protocol of the client's list;
    ``deadline`` the seconds a call may take in all, waits and fallbacks included (None: no bound;
    a request in flight is cut short at the deadline). Between tries on one protocol the client
    waits ``backoff_initial * 2**(n-1)`` seconds plus up to ``jitter`` seconds at random, at most
    ``backoff_max``; it moves to the next protocol at once.

    ``settle`` is how long to wait, after a send timed out, before asking GetSMSStatus whether the
    gateway took it (the server may still be working on the request). ``reconcile=False`` turns
    the look-up off: an uncertain send then raises AmbiguousSendError at once. ``sleep`` is the
    function that waits (tests pass a recorder); an AsyncFiboClient awaits ``asyncio.sleep`` in
    place of the default ``time.sleep``, and awaits what a ``sleep`` of the caller's returns when
    that is awaitable.
    """

    attempts: int = 3
    deadline: float | None = 120.0
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    jitter: float = 0.2
    settle: float = 2.0
    reconcile: bool = True
    sleep: Callable[[float], object] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise InvalidInputError("attempts must be a whole number", field="attempts")
        if self.attempts < 1:
            raise InvalidInputError("attempts must be at least 1", field="attempts")
        if self.deadline is not None and not self.deadline > 0:
            raise InvalidInputError("deadline must be positive, or None", field="deadline")
        for name in ("backoff_initial", "backoff_max", "jitter", "settle"):
            if not getattr(self, name) >= 0:
                raise InvalidInputError(f"{name} must not be negative", field=name)

    def backoff(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th retry on one protocol (1 for the first)."""
        retrying = self._tenacity()
        return float(retrying.wait(_attempt_state(retrying, retry)))

    def exhausted(self, tries: int) -> bool:
        """True once ``tries`` attempts on one protocol are all the policy allows."""
        retrying = self._tenacity()
        return bool(retrying.stop(_attempt_state(retrying, tries)))

    def _tenacity(self) -> Any:
        # Only a failed attempt gets here, so tenacity stays off the import of a client.
        import tenacity

        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_exponential_jitter(
                multiplier=self.backoff_initial, max=self.backoff_max, jitter=self.jitter
            ),
        )


def _attempt_state(retrying: Any, attempt_number: int) -> Any:
    # tenacity's strategies decide from a call state; the plans below drive the attempts
    # themselves (the same plan runs blocking and under asyncio), so they ask the strategies
    # with a state that carries the attempt number.
    import tenacity

    state = tenacity.RetryCallState(retrying, None, (), {})
    state.attempt_number = attempt_number
    return state


#: What ``retry=None`` means: one attempt per protocol, no look-up, no deadline.
NO_RETRY: Final = RetryPolicy(attempts=1, deadline=None, reconcile=False)


class Action(Enum):
    """What to do after a failed attempt."""

    RETRY = "retry"  # the same call on the same protocol, after a backoff
    FALLBACK = "fallback"  # the same call on the next protocol, at once
    RAISE = "raise"


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed attempt tells: whether the gateway may have run the method (``maybe_ran``),
    what to do next, and whether the server may still be working on it (``settle``)."""

    maybe_ran: bool
    action: Action
    settle: bool = False


def classify(exc: FiboError) -> Failure:
    """What a protocol's exception says about the attempt that raised it.

    "Not run" needs proof: nothing was sent (``request_sent=False``), or the server refused the
    request itself (HTTP 3xx/4xx, a soap:Client fault). Everything else after the request went
    out may have run the method, an HTTP 5xx and a soap:Server fault included: FIBO's server may
    have stored the message before it failed.
    """
    if isinstance(exc, TransportError):
        if not exc.request_sent:
            return Failure(False, Action.RETRY)
        if isinstance(exc, HttpStatusError):
            if exc.status >= 500:
                return Failure(True, Action.RETRY, settle=exc.status in _STILL_RUNNING)
            if exc.status in _TRY_LATER:
                return Failure(False, Action.RETRY)
            return Failure(False, Action.FALLBACK)
        return Failure(True, Action.RETRY, settle=isinstance(exc, TimeoutError))
    if isinstance(exc, SoapFaultError):
        if exc.fault_code == "Server":
            return Failure(True, Action.RETRY)
        return Failure(False, Action.FALLBACK)
    if isinstance(exc, AsmxError):
        # ASMX's plain-text 500 is both "the method threw" and "this request is refused";
        # status and content type cannot tell them apart.
        return Failure(True, Action.RETRY)
    if isinstance(exc, ResponseTooLargeError):
        return Failure(True, Action.RAISE)
    if isinstance(exc, ProtocolError):
        status = exc.status
        if status is not None and 300 <= status < 500:
            return Failure(False, Action.FALLBACK)
        if status is not None and status >= 500:
            return Failure(True, Action.RETRY)
        return Failure(True, Action.FALLBACK)
    return Failure(True, Action.RAISE)


def scrub(exc: FiboError, secrets: Sequence[str], *, operation: str, protocol: str) -> None:
    """Name the operation and protocol on ``exc`` and redact its texts: an answer may echo what
    was sent, and nothing of the password or a full phone number leaves the client."""
    exc.operation = exc.operation or operation
    exc.protocol = exc.protocol or protocol
    exc.detail = logs.redact(exc.detail, secrets)
    exc.args = (exc.detail,)
    if isinstance(exc, ProtocolError):
        exc.excerpt = logs.redact(exc.excerpt, secrets)


class _Call:
    """The state of one call once an attempt has failed."""

    __slots__ = (
        "attempt",
        "confirmed",
        "deadline",
        "error",
        "guids",
        "index",
        "looked_up",
        "next",
        "op",
        "pending",
        "rebuild",
        "started",
        "status",
        "tries",
        "used",
        "wait",
        "wire",
    )

    def __init__(
        self,
        op: Operation,
        wire: Mapping[str, str],
        guids: tuple[str, ...],
        rebuild: Rebuild | None,
        started: float,
        deadline: float | None,
    ) -> None:
        self.op = op
        self.wire = wire
        self.guids = guids
        self.pending = guids  # not known to have reached the gateway
        self.confirmed: tuple[str, ...] = ()  # found by GetSMSStatus after an uncertain attempt
        self.rebuild = rebuild
        self.started = started
        self.deadline = deadline
        self.index = 0  # into the protocol list
        self.tries = 1  # on the current protocol
        self.attempt = 1  # in all
        self.used: list[str] = []
        self.next = Action.RAISE
        self.wait = 0.0
        self.status: int | None = None
        self.error: FiboError | None = None
        self.looked_up = False


class BaseCaller(Generic[ProtoT]):
    """The wire calls of one account as plans: attempts, retries, fallback, look-ups and log
    events, with no I/O of its own (``Caller`` and ``AsyncCaller`` run the plans).

    ``protocols`` are tried in order; ``get_as_post`` is the POST protocol a GET call switches to
    when its URL would pass ``MAX_GET_URL``. ``policy`` None means ``retry=None`` (NO_RETRY).
    """

    def __init__(
        self,
        protocols: Sequence[ProtoT],
        *,
        client_no: str,
        client_pass: str,
        policy: RetryPolicy | None,
        max_bytes: int,
        get_as_post: ProtoT | None = None,
        request_limit: float | None = None,
        log_context: Mapping[str, Any] | None = None,
        log_text: bool = False,
        mask_phones: bool = True,
    ) -> None:
        if not protocols:
            raise InvalidInputError("no protocol to call over", field="protocols")
        self.protocols = tuple(protocols)
        self.policy = policy
        self._policy = policy or NO_RETRY
        self._account = {CLIENT_NO: client_no, CLIENT_PASS: client_pass}
        self._secrets = (client_pass,) if client_pass else ()
        self._max_bytes = max_bytes
        self._post = get_as_post
        self._first = self.protocols[0]
        # The first attempt needs the deadline only when one request may outlast it.
        limit = self._policy.deadline
        self._bound_first = limit is not None and (request_limit is None or limit < request_limit)
        self._events = logs.EventLogger(**(log_context or {}))
        self.log_text = log_text
        self.mask_phones = mask_phones

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.protocols)
        return f"{type(self).__name__}(protocols=({names}), policy={self.policy!r})"

    def bind(self, **context: Any) -> Self:
        """A caller like this one whose log events also carry ``context``."""
        bound = copy.copy(self)
        bound._events = self._events.bind(**context)
        return bound

    # --- one call ------------------------------------------------------------------------------

    def _decode(self, op: Operation, text: str) -> codec.Decoded:
        decoded = codec.decode_result(op, text, max_bytes=self._max_bytes)
        if (
            isinstance(decoded, StatusDocument)
            and decoded.code not in (CODE_OK, CODE_ACCEPTED)
            and self._secrets
        ):
            # A refusal's message becomes an exception's text; it may echo what was sent.
            message = logs.redact(decoded.message, self._secrets)
            if message != decoded.message:
                decoded = StatusDocument(decoded.code, message, decoded.time)
        return decoded

    def flow(
        self,
        op: Operation,
        params: Mapping[str, str],
        *,
        guids: Sequence[str] = (),
        rebuild: Rebuild | None = None,
    ) -> Plan[codec.Decoded]:
        """The plan of a call of ``op``, returning its decoded answer; ``guids`` are the messages
        a send carries and ``rebuild`` makes the parameters of a list send for a subset of them."""
        started = time.perf_counter()
        wire = {**params, **self._account} if op.authenticated else params
        limit = self._policy.deadline
        deadline = None if limit is None else started + limit
        proto = self._route(self._first, op, wire)
        try:
            text = yield Attempt(proto, op, wire, deadline if self._bound_first else None)
            decoded = self._decode(op, text)
        except FiboError as exc:
            failed = exc
        else:
            if logs.enabled():
                self._log_success(op, proto.name, wire, guids, started, decoded)
            return decoded
        # Every attempt from here on, and every wait, is bounded by the call's deadline.
        state = _Call(op, wire, tuple(guids), rebuild, started, deadline)
        return (yield from self._recover(state, failed, proto.name, started))

    def lookup_flow(self, guids: Sequence[str]) -> Plan[set[str]]:
        """The plan of a look-up: the GUIDs among ``guids`` that the gateway knows (wire method
        GetSMSStatus)."""
        op = operation("GetSMSStatus")
        document = codec.encode_document(STATUS_QUERY_DOCUMENT, guids)
        decoded = yield from self.flow(op, {"smsList": document})
        if isinstance(decoded, list):
            return {row.guid for row in decoded if isinstance(row, SmsStatusRow) and row.guid}
        if isinstance(decoded, StatusDocument):
            if decoded.code == CODE_NO_SMS:
                return set()
            raise error_for_code(decoded.code, decoded.message, operation=op.name)
        raise ProtocolError(f"{op.name}: expected a list of statuses", operation=op.name)

    def _route(self, proto: ProtoT, op: Operation, wire: Mapping[str, str]) -> ProtoT:
        # A GET whose URL would be too long for proxies and IIS goes as a POST form instead.
        if proto.name != "get" or self._post is None or not isinstance(proto, AsmxForm):
            return proto
        # A cheap upper bound first: most calls are far below the limit.
        bound = len(proto.endpoint) + len(op.name) + 2
        for name in op.params:
            bound += len(name) + 2
        for value in wire.values():
            bound += (3 if value.isascii() else 12) * len(value)
        if bound <= MAX_GET_URL:
            return proto
        length = proto.url_length(op, wire)
        if length <= MAX_GET_URL:
            return proto
        if logs.enabled():
            self._events.get().info(
                "fibo.get_as_post",
                operation=op.name,
                url_length=length,
                limit=MAX_GET_URL,
                protocol=self._post.name,
            )
        return self._post

    # --- after a failure -------------------------------------------------------------------

    def _recover(
        self, st: _Call, first: FiboError, proto_name: str, attempt_started: float
    ) -> Plan[codec.Decoded]:
        st.used.append(proto_name)
        resolved = yield from self._failed(st, first, proto_name, attempt_started)
        while resolved is None and st.next is not Action.RAISE:
            if st.wait > 0:
                yield Wait(st.wait)
            resolved = yield from self._attempt(st)
        if resolved is not None:
            return self._finish(st, resolved, st.used[-1])
        assert st.error is not None
        final = self._give_up(st, st.error)
        cause = final.__cause__
        raise final from cause

    def _attempt(self, st: _Call) -> Plan[codec.Decoded | None]:
        if st.next is Action.FALLBACK:
            st.index += 1
            st.tries = 0
        st.tries += 1
        st.attempt += 1
        proto = self._route(self.protocols[st.index], st.op, st.wire)
        st.used.append(proto.name)
        started = time.perf_counter()
        try:
            text = yield Attempt(proto, st.op, st.wire, st.deadline)
            decoded = self._decode(st.op, text)
        except FiboError as exc:
            failed = exc
        else:
            st.status = 200
            if logs.enabled():
                self._log_attempt(st, proto.name, started, decoded=decoded)
            return self._merge(st, decoded)
        return (yield from self._failed(st, failed, proto.name, started))

    def _failed(
        self, st: _Call, exc: FiboError, proto_name: str, started: float
    ) -> Plan[codec.Decoded | None]:
        """Decide what follows a failed attempt (``st.next``, ``st.wait``, ``st.error``); the
        answer itself when GetSMSStatus shows the gateway took every message."""
        scrub(exc, self._secrets, operation=st.op.name, protocol=proto_name)
        failure = classify(exc)
        status = getattr(exc, "status", None)
        st.status = status if isinstance(status, int) else None
        st.error = exc
        if not (st.op.sends and failure.maybe_ran):
            self._decide(st, failure.action)
            if logs.enabled():
                self._log_attempt(st, proto_name, started, exc=exc, failure=failure)
            return None
        if st.op.guid_param is None or not st.pending:
            self._ambiguous(st, exc, proto_name, started, failure, "it carries no GUIDs")
            return None
        if not self._policy.reconcile:
            self._ambiguous(st, exc, proto_name, started, failure, "retries are off")
            return None
        st.next = Action.RAISE
        if logs.enabled():
            self._log_attempt(st, proto_name, started, exc=exc, failure=failure, then="reconcile")
        return (yield from self._reconcile(st, exc, failure))

    def _decide(self, st: _Call, action: Action) -> None:
        policy = self._policy
        if action is Action.RETRY and not policy.exhausted(st.tries):
            st.next, st.wait = Action.RETRY, policy.backoff(st.tries)
        elif action is not Action.RAISE and st.index + 1 < len(self.protocols):
            st.next, st.wait = Action.FALLBACK, 0.0
        else:
            st.next, st.wait = Action.RAISE, 0.0
        if (
            st.next is not Action.RAISE
            and st.deadline is not None
            and time.perf_counter() + st.wait >= st.deadline
        ):
            st.next, st.wait = Action.RAISE, 0.0

    def _ambiguous(
        self,
        st: _Call,
        exc: FiboError,
        proto_name: str,
        started: float,
        failure: Failure,
        why: str,
    ) -> None:
        st.next = Action.RAISE
        if logs.enabled():
            self._log_attempt(st, proto_name, started, exc=exc, failure=failure)
        count = len(st.pending) if st.pending else _bulk_count(st)
        what = f"{count} message(s)" if count else "the messages"
        error = AmbiguousSendError(
            f"{what} may or may not have reached the gateway ({type(exc).__name__}: "
            f"{exc.detail}); not sent again: {why}. "
            + (
                "Look the GUIDs up (get_sms_status) before sending them again."
                if st.pending
                else "Check get_sent_list before sending them again."
            ),
            guids=st.pending,
            accepted=st.confirmed,
            operation=st.op.name,
            protocol=proto_name,
        )
        error.__cause__ = exc
        st.error = error

    def _reconcile(self, st: _Call, exc: FiboError, failure: Failure) -> Plan[codec.Decoded | None]:
        policy = self._policy
        if failure.settle and policy.settle:
            yield Wait(policy.settle)
        asked = st.pending
        st.looked_up = True
        # The look-up is a call of its own: its own retries, fallback and deadline.
        try:
            known = yield from self.bind(lookup_for=st.op.name).lookup_flow(asked)
        except FiboError as lookup_error:
            if logs.enabled():
                self._events.get().info(
                    "fibo.reconcile",
                    operation=st.op.name,
                    asked=len(asked),
                    outcome="failed",
                    error=type(lookup_error).__name__,
                    next="raise",
                )
            error = AmbiguousSendError(
                f"{len(asked)} message(s) may or may not have reached the gateway "
                f"({type(exc).__name__}: {exc.detail}), and GetSMSStatus could not tell "
                f"({type(lookup_error).__name__}: {lookup_error.detail}). Look the GUIDs up "
                "(get_sms_status) before sending them again.",
                guids=asked,
                accepted=st.confirmed,
                operation=st.op.name,
                protocol=exc.protocol,
            )
            error.__cause__ = exc
            st.error, st.next = error, Action.RAISE
            return None
        found = tuple(g for g in asked if g in known)
        st.confirmed += found
        st.pending = tuple(g for g in asked if g not in known)
        if not st.pending:
            if logs.enabled():
                self._log_reconcile(st, asked, found, "ok")
            return StatusDocument(CODE_ACCEPTED, CONFIRMED_MESSAGE)
        if found:
            if st.rebuild is None:
                self._cannot_rebuild(st, exc)
                return None
            params = st.rebuild(st.pending)
            st.wire = {**params, **self._account}
        # What is left certainly did not reach the gateway: it goes again like an unsent call.
        self._decide(st, failure.action)
        if logs.enabled():
            self._log_reconcile(st, asked, found, st.next.value)
        return None

    def _cannot_rebuild(self, st: _Call, exc: FiboError) -> None:
        error = AmbiguousSendError(
            f"{len(st.confirmed)} of {len(st.guids)} messages reached the gateway; the request "
            "cannot be rebuilt for the others, which were not sent again.",
            guids=st.pending,
            accepted=st.confirmed,
            unsent=st.pending,
            operation=st.op.name,
            protocol=exc.protocol,
        )
        error.__cause__ = exc
        st.error, st.next = error, Action.RAISE

    def _merge(self, st: _Call, decoded: codec.Decoded) -> codec.Decoded | None:
        # The rest of a list send went out after part of it was found at the gateway: a refusal
        # of the rest must not read as if nothing had been taken (None: ``st.error`` says why).
        if st.confirmed and isinstance(decoded, StatusDocument) and decoded.code != CODE_ACCEPTED:
            refusal = error_for_code(decoded.code, decoded.message, operation=st.op.name)
            st.error, st.next = refusal, Action.RAISE
            return None
        return decoded

    def _give_up(self, st: _Call, exc: FiboError) -> FiboError:
        final: FiboError = exc
        if isinstance(exc, AmbiguousSendError):
            pass
        elif st.op.sends and st.confirmed:
            final = AmbiguousSendError(
                f"{len(st.confirmed)} of {len(st.guids)} messages reached the gateway (found by "
                f"GetSMSStatus); the other {len(st.pending)} did not and were not sent again "
                f"({type(exc).__name__}: {exc.detail}). Their GUIDs are in .unsent.",
                guids=st.pending,
                accepted=st.confirmed,
                unsent=st.pending,
                operation=st.op.name,
                protocol=exc.protocol,
            )
            final.__cause__ = exc
        else:
            if st.attempt > 1:
                exc.add_note(
                    f"after {st.attempt} attempts over {', '.join(dict.fromkeys(st.used))} "
                    f"in {_ms(st.started):.0f} ms"
                )
            if st.op.sends and st.looked_up:
                exc.add_note("GetSMSStatus found none of its messages: the gateway took nothing")
        if logs.enabled():
            self._log_call(st, st.used[-1] if st.used else "", exc=final)
        return final

    def _finish(self, st: _Call, decoded: codec.Decoded, proto_name: str) -> codec.Decoded:
        if logs.enabled():
            self._log_call(st, proto_name, decoded=decoded)
        return decoded

    # --- log events ------------------------------------------------------------------------

    def _log_success(
        self,
        op: Operation,
        protocol: str,
        wire: Mapping[str, str],
        guids: Sequence[str],
        started: float,
        decoded: codec.Decoded,
    ) -> None:
        ms = _ms(started)
        code, outcome = _code(decoded)
        events = self._events
        log = events.get()
        if events.debug:
            log.debug(
                "fibo.attempt",
                operation=op.name,
                protocol=protocol,
                attempt=1,
                duration_ms=ms,
                http_status=200,
                fibo_code=code,
                outcome=outcome,
                guids=len(guids),
            )
        key = (op.name, protocol, code, outcome)
        fixed = events.fixed(key)
        if fixed is None:
            fixed = events.fix(
                key,
                operation=op.name,
                protocol=protocol,
                attempts=1,
                http_status=200,
                fibo_code=code,
                outcome=outcome,
            )
        if op.sends:
            fixed.info("fibo.call", duration_ms=ms, guids=len(guids), **self._about(op, wire))
        else:
            fixed.info("fibo.call", duration_ms=ms, guids=len(guids))

    def _log_attempt(
        self,
        st: _Call,
        protocol: str,
        started: float,
        *,
        decoded: codec.Decoded | None = None,
        exc: FiboError | None = None,
        failure: Failure | None = None,
        then: str | None = None,
    ) -> None:
        event: dict[str, Any] = {
            "operation": st.op.name,
            "protocol": protocol,
            "attempt": st.attempt,
            "duration_ms": _ms(started),
            "http_status": st.status,
            "guids": len(st.pending),
        }
        if exc is None:
            event["fibo_code"], event["outcome"] = _code(decoded)
        else:
            event["fibo_code"] = None
            event["outcome"] = "failed"
            event["error"] = type(exc).__name__
            event["detail"] = exc.detail[:_DETAIL_CHARS]
            if failure is not None and st.op.sends:
                event["maybe_sent"] = failure.maybe_ran
            event["next"] = then or st.next.value
            if st.next is Action.RETRY and then is None:
                event["wait_ms"] = round(st.wait * 1000, 1)
        self._events.get().debug("fibo.attempt", **event)

    def _log_reconcile(
        self, st: _Call, asked: Sequence[str], found: Sequence[str], then: str
    ) -> None:
        event: dict[str, Any] = {
            "operation": st.op.name,
            "asked": len(asked),
            "found": len(found),
            "resend": len(st.pending),
            "outcome": "ok",
            "next": then,
        }
        if then == Action.RETRY.value:
            event["wait_ms"] = round(st.wait * 1000, 1)
        self._events.get().info("fibo.reconcile", **event)

    def _log_call(
        self,
        st: _Call,
        protocol: str,
        *,
        decoded: codec.Decoded | None = None,
        exc: FiboError | None = None,
    ) -> None:
        event: dict[str, Any] = {
            "operation": st.op.name,
            "protocol": protocol,
            "attempts": st.attempt,
            "duration_ms": _ms(st.started),
            "http_status": st.status,
            "guids": len(st.guids),
        }
        if len(set(st.used)) > 1:
            event["protocols"] = list(dict.fromkeys(st.used))
        if st.looked_up:
            event["confirmed"] = len(st.confirmed)
        if exc is None:
            event["fibo_code"], event["outcome"] = _code(decoded)
            if st.confirmed and st.pending:
                event["resent"] = len(st.pending)
        else:
            event["fibo_code"] = exc.code
            event["outcome"] = "ambiguous" if isinstance(exc, AmbiguousSendError) else "failed"
            event["error"] = type(exc).__name__
            event["detail"] = exc.detail[:_DETAIL_CHARS]
        event.update(self._about(st.op, st.wire))
        self._events.get().info("fibo.call", **event)

    def _about(self, op: Operation, wire: Mapping[str, str]) -> dict[str, str]:
        # What a send says about its recipient and text: the phone masked unless the caller
        # turned masking off, the text only when the caller turned it on.
        if not op.sends:
            return {}
        about: dict[str, str] = {}
        phone = wire.get("phoneNumber")
        if phone:
            about["phone"] = logs.mask_phone(phone) if self.mask_phones else phone
        if self.log_text:
            text = wire.get("smsContent") if "smsContent" in wire else wire.get("smsMessage")
            if text is not None and op.document("smsMessage") is None:
                about["text"] = text
        return about


class Caller(BaseCaller[base.Protocol]):
    """Runs plans with blocking I/O: the protocols' calls, the policy's ``sleep``. FiboClient's."""

    def run(self, plan: Plan[R]) -> R:
        """What ``plan`` returns, each of its steps done here, in this thread."""
        sleep = self._policy.sleep
        try:
            step = next(plan)
            while True:
                if isinstance(step, Wait):
                    sleep(step.seconds)
                    step = plan.send(None)
                    continue
                failed: FiboError | None = None
                try:
                    if step.deadline is None:
                        text = step.protocol.call(step.op, step.wire)
                    else:
                        token = call_deadline.set(step.deadline)
                        try:
                            text = step.protocol.call(step.op, step.wire)
                        finally:
                            call_deadline.reset(token)
                except FiboError as exc:
                    failed = exc
                # Thrown in outside the except block, so that what the plan raises next does
                # not carry this failure as its __context__.
                step = plan.send(text) if failed is None else plan.throw(failed)
        except StopIteration as done:
            result: R = done.value
            return result
        finally:
            plan.close()

    def call(
        self,
        op: Operation,
        params: Mapping[str, str],
        *,
        guids: Sequence[str] = (),
        rebuild: Rebuild | None = None,
    ) -> codec.Decoded:
        """The decoded answer of ``op``; ``guids`` are the messages a send carries and ``rebuild``
        makes the parameters of a list send for a subset of them."""
        return self.run(self.flow(op, params, guids=guids, rebuild=rebuild))

    def lookup(self, guids: Sequence[str]) -> set[str]:
        """The GUIDs among ``guids`` that the gateway knows (wire method GetSMSStatus)."""
        return self.run(self.lookup_flow(guids))


class AsyncCaller(BaseCaller[base.AsyncProtocol]):
    """Runs plans with awaited I/O: the async protocols' calls, ``asyncio.sleep``.
    AsyncFiboClient's."""

    async def run(self, plan: Plan[R]) -> R:
        """What ``plan`` returns, each of its steps awaited in the current task."""
        try:
            step = next(plan)
            while True:
                if isinstance(step, Wait):
                    await self._sleep(step.seconds)
                    step = plan.send(None)
                    continue
                failed: FiboError | None = None
                try:
                    if step.deadline is None:
                        text = await step.protocol.call(step.op, step.wire)
                    else:
                        # A context variable: each task has its own, as each thread does.
                        token = call_deadline.set(step.deadline)
                        try:
                            text = await step.protocol.call(step.op, step.wire)
                        finally:
                            call_deadline.reset(token)
                except FiboError as exc:
                    failed = exc
                step = plan.send(text) if failed is None else plan.throw(failed)
        except StopIteration as done:
            result: R = done.value
            return result
        finally:
            plan.close()

    async def _sleep(self, seconds: float) -> None:
        import asyncio

        sleep = self._policy.sleep
        if sleep is time.sleep:
            await asyncio.sleep(seconds)
            return
        waited = sleep(seconds)
        if inspect.isawaitable(waited):
            await waited

    async def call(
        self,
        op: Operation,
        params: Mapping[str, str],
        *,
        guids: Sequence[str] = (),
        rebuild: Rebuild | None = None,
    ) -> codec.Decoded:
        """The decoded answer of ``op``, as ``Caller.call``."""
        return await self.run(self.flow(op, params, guids=guids, rebuild=rebuild))

    async def lookup(self, guids: Sequence[str]) -> set[str]:
        """The GUIDs among ``guids`` that the gateway knows (wire method GetSMSStatus)."""
        return await self.run(self.lookup_flow(guids))


def _bulk_count(st: _Call) -> int:
    shape = st.op.document("smsList")
    if shape is None:
        return 0
    return st.wire.get("smsList", "").count(f"<{shape.row}>")


def _code(decoded: codec.Decoded | None) -> tuple[int | None, str]:
    if isinstance(decoded, StatusDocument):
        return decoded.code, "ok" if decoded.code in _OK_CODES else "refused"
    if isinstance(decoded, codec.WrongPhones):
        return None, "partial"
    return None, "ok"


def _ms(started: float) -> float:
    # Milliseconds to three decimals, cut at the whole microsecond rather than rounded: a third
    # of round(…, 3)'s cost, which goes through a decimal string.
    return int((time.perf_counter() - started) * 1_000_000) / 1000
