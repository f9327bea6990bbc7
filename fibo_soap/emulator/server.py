"""Running the emulator: in-process in a background thread (``run_emulator``) or as a server
(``serve``, behind ``fibo-sms emulator``), with one seeded account either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fibo_soap.emulator.app import EmulatorApp, Recorded
from fibo_soap.emulator.faults import Fault, FaultKind, Faults
from fibo_soap.emulator.service import Clock, FiboService
from fibo_soap.emulator.store import Store, StoredSms
from fibo_soap.models import IncomingStatus

DEFAULT_CLIENT_NO = "CL0001"
DEFAULT_CLIENT_NAME = "Nguyen Van A"


@dataclass(frozen=True, slots=True)
class ServiceTypeSeed:
    """A hosting service an account is seeded with."""

    id: int
    name: str
    balance: int


#: What a seeded account holds: FIBO's regular channel, a brand-name channel, the test channel.
DEFAULT_SERVICE_TYPES = (
    ServiceTypeSeed(1, "+841223100690", 1000),
    ServiceTypeSeed(2, "FiboSMS brand name", 500),
    ServiceTypeSeed(3, "Email (Free for testing)", 2870),
)
DEFAULT_SENDER_NAMES = ("FiboSMS", "SenderName1")


class Emulator:
    """A running emulator: where it listens, its seeded account, and helpers for tests.

    ``store`` is the state itself; ``faults`` the fault rules; ``recorded`` the last requests
    received (method, path, headers, body, parsed parameters), newest last.
    """

    def __init__(self, app: EmulatorApp, host: str, port: int, client_no: str, client_pass: str):
        self.app = app
        self.host = host
        self.port = port
        self.client_no = client_no
        self.client_pass = client_pass

    def __repr__(self) -> str:
        return f"Emulator(endpoint={self.endpoint!r}, client_no={self.client_no!r})"

    @property
    def endpoint(self) -> str:
        """The Service.asmx address to give a client."""
        return f"{self._origin}/Service.asmx"

    @property
    def admin(self) -> str:
        """The admin API's address (``…/faults``, ``…/advance``, ``…/incoming``, ``…/messages``,
        ``…/balance``)."""
        return f"{self._origin}/_emulator"

    @property
    def _origin(self) -> str:
        # An IPv6 address is bracketed in a URL.
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def store(self) -> Store:
        """The emulator's state."""
        return self.app.service.store

    @property
    def faults(self) -> Faults:
        """The fault rules."""
        return self.app.faults

    @property
    def clock(self) -> Clock:
        """The emulator's clock."""
        return self.app.service.clock

    @property
    def recorded(self) -> list[Recorded]:
        """The requests received so far (bounded), oldest first."""
        return list(self.app.recorded)

    def client(self, **options: Any) -> Any:
        """A FiboClient of the seeded account pointed at this emulator (service type 1)."""
        from fibo_soap.client import FiboClient

        options.setdefault("service_type", "1")
        return FiboClient(self.client_no, self.client_pass, endpoint=self.endpoint, **options)

    def add_account(
        self,
        client_no: str,
        client_pass: str,
        name: str = DEFAULT_CLIENT_NAME,
        *,
        service_types: Sequence[ServiceTypeSeed] = DEFAULT_SERVICE_TYPES,
        sender_names: Sequence[str] = DEFAULT_SENDER_NAMES,
    ) -> None:
        """Seed an account with service types, balances and sender names."""
        seed_account(
            self.store, client_no, client_pass, name, service_types, sender_names, self.clock
        )

    def add_service_type(
        self, service_type: int, name: str, balance: int, client_no: str | None = None
    ) -> None:
        """Give an account (the seeded one by default) another hosting service with a balance;
        ValueError when it has that service type already."""
        self.store.add_service_type(client_no or self.client_no, service_type, name, balance)

    def set_balance(
        self, balance: int, service_type: int = 1, client_no: str | None = None
    ) -> None:
        """Set the balance of a service type of an account (the seeded one by default)."""
        self.store.set_balance(client_no or self.client_no, service_type, balance)

    def balance(self, service_type: int = 1, client_no: str | None = None) -> int | None:
        """The balance of a service type, read from the store."""
        return self.store.balance(client_no or self.client_no, service_type)

    def add_sender_name(self, name: str, client_no: str | None = None) -> None:
        """Register a sender (brand) name."""
        self.store.add_sender_name(client_no or self.client_no, name, created=self.clock.now())

    def inject_incoming(
        self,
        phone: str,
        message: str,
        *,
        service_type_id: int = 1,
        service_type_name: str = "8022(FIBO)",
        status: IncomingStatus = IncomingStatus.JUST_RECEIVED,
        client_no: str | None = None,
        created: datetime | None = None,
    ) -> int:
        """Make an SMS arrive for an account, as if a subscriber had sent it; its id."""
        when = created or self.clock.now()
        return self.store.add_incoming(
            client_no or self.client_no,
            phone=phone,
            message=message,
            service_type_id=service_type_id,
            service_type_name=service_type_name,
            status=status,
            created=when,
            sent=when,
        )

    def advance(self, seconds: float) -> int:
        """Move the clock (and so delivery) forward; how many messages changed state.

        ValueError, the clock unmoved, when that takes it out of the years 2 to 9998. A restart
        on the same database keeps the clock where it was moved to."""
        return self.app.service.advance(seconds)

    def received(self, guid: str | None = None, client_no: str | None = None) -> list[StoredSms]:
        """Every message that reached the gateway (optionally with this GUID), in the state it
        has at the emulator's current time, as GetSMSStatus would report it."""
        self.store.advance(self.clock.now())
        return self.store.outgoing(client_no=client_no, guid=guid)

    def fault(
        self,
        kind: FaultKind | str,
        *,
        method: str = "*",
        protocol: str = "*",
        times: int | None = None,
        seconds: float = 0.0,
    ) -> Fault:
        """Inject a fault (see faults.FaultKind); returns the rule."""
        return self.faults.add(kind, method=method, protocol=protocol, times=times, seconds=seconds)


def seed_account(
    store: Store,
    client_no: str,
    client_pass: str,
    name: str,
    service_types: Sequence[ServiceTypeSeed],
    sender_names: Sequence[str],
    clock: Clock,
) -> None:
    """Create an account with its service types and sender names (nothing if it exists)."""
    if store.account_exists(client_no):
        return
    store.add_account(client_no, client_pass, name)
    for seed in service_types:
        store.add_service_type(client_no, seed.id, seed.name, seed.balance)
    for sender in sender_names:
        store.add_sender_name(client_no, sender, created=clock.now())


def build(
    *,
    db: str | os.PathLike[str] | None = None,
    client_no: str = DEFAULT_CLIENT_NO,
    client_pass: str | None = None,
    delivery_delay: float = 1.0,
    request_validation: bool = False,
    record: int = 1000,
) -> tuple[EmulatorApp, str]:
    """The app over a store at ``db`` (temporary when None) with the account seeded; and the
    account's password (generated when not given; kept when the database already has it).

    ValueError when ``client_pass`` is given and the database holds the account with another.
    """
    store = Store(db)
    clock = Clock(store.clock_offset())
    stored = store.password(client_no)
    if (
        client_pass
        and stored is not None
        and not hmac.compare_digest(client_pass.encode(), stored.encode())
    ):
        # The database keeps the account as it was seeded; announcing the password given here
        # would hand out one that every call refuses with code 100.
        store.close()
        raise ValueError(
            f"{db} already holds account {client_no!r} with another password: "
            "start without a password to keep it, or use another database"
        )
    password = client_pass or stored or secrets.token_urlsafe(12)
    seed_account(
        store,
        client_no,
        password,
        DEFAULT_CLIENT_NAME,
        DEFAULT_SERVICE_TYPES,
        DEFAULT_SENDER_NAMES,
        clock,
    )
    service = FiboService(store, clock, delivery_delay=delivery_delay)
    return EmulatorApp(service, Faults(), request_validation=request_validation, record=record), (
        password
    )


class _Server(uvicorn.Server):
    """uvicorn's server, stopping the moment ``stop()`` is called rather than at its next tick.

    uvicorn looks at ``should_exit`` every 0.1 s; a test suite that starts an emulator per test
    would spend that tick on every test. The loop here waits on an event with the same 0.1 s
    period, so the rest of uvicorn's cycle (date header, limits, shutdown) is unchanged.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.should_exit:  # stop() came before the loop could be woken
            return
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    def stop(self) -> None:
        """Ask the server to shut down, from any thread."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(wake.set)


#: The largest request head (request line and headers, as sent) the emulator reads. http.sys, in
#: front of IIS, refuses a head over its MaxRequestBytes (16 KB by default, raised up to 16 MB) with
#: "400 Bad Request - Request Too Long"; 64 KB (the most its MaxFieldLength allows one header line)
#: leaves room for the 32 KB query strings the app reads (a 414 past that).
MAX_REQUEST_HEAD = 64 * 1024

#: How long a refused connection is still read (and what comes dropped) before it is closed: a
#: client still sending its head then reads the answer rather than a reset.
_LINGER_SECONDS = 2.0

_TOO_LONG_TEXT = b"The size of the request headers is too long."
_TOO_LONG_HEADERS = (
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: " + str(len(_TOO_LONG_TEXT)).encode() + b"\r\n"
    b"connection: close\r\n\r\n"
)


class _BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering a request head over ``MAX_REQUEST_HEAD`` bytes
    with IIS's 400 (Request Too Long) and closing the connection.

    httptools gathers a header whole before it hands it over (uvicorn gathers the URL), so a
    bound counted in those callbacks would come after the memory was spent: the bytes are counted
    here as they arrive, and no more than the bound reaches the parser while a head is open. A read
    costs a length and a comparison more, a request two assignments. A head that begins inside the
    read that ends the request before it (pipelining) gets that read's bytes (at most 256 KB) on
    top of the bound.
    """

    #: Seconds a request may take to arrive whole, from the connection or the end of the request
    #: before it, as http.sys gives a head (HeaderWait) and a body (EntityBody) 120 s: past
    #: them it closes the connection. A client that sends nothing, or stalls half way, would
    #: otherwise hold its connection, and what it sent (up to 4 MB of body), for good.
    request_seconds: float = 120.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Bytes of the open request head fed to the parser; -1 once the head is whole (and its
        #: body is read).
        self._head = 0
        self._refused = False
        self._linger: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self.request_seconds, self._too_slow)

    def data_received(self, data: bytes) -> None:
        self._feed(data)
        # A request that arrived whole (nearly every one, in one read) needs no timer; one still
        # open gets one, if it has none yet.
        if self._head == 0:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
        elif self._deadline is None and not self._refused:
            self._deadline = self.loop.call_later(self.request_seconds, self._too_slow)

    def _too_slow(self) -> None:
        self._deadline = None
        self.transport.close()

    def _feed(self, data: bytes) -> None:
        head = self._head
        if head < 0:
            super().data_received(data)
            return
        if self._refused:
            return  # dropped, until the client stops sending or the linger ends
        room = MAX_REQUEST_HEAD - head
        if len(data) <= room:
            self._head = head + len(data)
            super().data_received(data)
            return
        self._head = MAX_REQUEST_HEAD
        # Views, not copies: httptools reads any buffer.
        view = memoryview(data)
        super().data_received(cast(bytes, view[:room]))
        if self.transport.is_closing():  # the parser refused what it read
            return
        if self._head == MAX_REQUEST_HEAD:  # still open, with no room left
            self._refuse()
        else:
            self._feed(cast(bytes, view[room:]))

    def on_headers_complete(self) -> None:
        self._head = -1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head = 0  # what follows is the next request's head
        super().on_message_complete()

    def _refuse(self) -> None:
        self._refused = True
        self.logger.warning("Request head over %d bytes refused.", MAX_REQUEST_HEAD)
        transport = self.transport
        if self.cycle is not None and not self.cycle.response_complete:
            transport.close()  # the answer to the request before is still being written
            return
        answer = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            answer += [name, b": ", value, b"\r\n"]
        transport.write(b"".join([*answer, _TOO_LONG_HEADERS, _TOO_LONG_TEXT]))
        if transport.can_write_eof():
            transport.write_eof()
        # Closed with unread bytes, the socket would send a reset that can reach the client
        # before the answer does: what still comes is read and dropped until the client closes.
        self._linger = self.loop.call_later(_LINGER_SECONDS, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._linger, self._deadline):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)


#: Seconds a stopping emulator waits for the calls in flight before it cancels them: a client
#: stalled half way through its request (or a call held by a latency fault) would otherwise keep
#: it running, after run_emulator() has closed its store under it.
SHUTDOWN_GRACE_SECONDS = 1


def _config(app: EmulatorApp, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=_BoundedHttpTools,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        **options,
    )


#: The listening socket's backlog: uvicorn's default, which it sets again when it serves.
_BACKLOG = 2048


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host`` and ``port`` (0: any free one; ``getsockname`` says
    which).

    It listens from here on, before uvicorn serves it: a client that connects the moment the
    address is announced waits in the backlog until uvicorn accepts, where a socket only bound
    would refuse it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP given explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and without it every answer waits 40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def run_emulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    db: str | os.PathLike[str] | None = None,
    client_no: str = DEFAULT_CLIENT_NO,
    client_pass: str | None = None,
    delivery_delay: float = 1.0,
    request_validation: bool = False,
    record: int = 1000,
) -> Iterator[Emulator]:
    """A running emulator on a free loopback port (or ``port``) in a background thread.

    Fresh, temporary state unless ``db`` names a database file; stopped and closed on exit.
    """
    app, password = build(
        db=db,
        client_no=client_no,
        client_pass=client_pass,
        delivery_delay=delivery_delay,
        request_validation=request_validation,
        record=record,
    )
    sock = _bind(host, port)
    server = _Server(_config(app))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="fibo-emulator", daemon=True
    )
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the emulator failed to start")
            threading.Event().wait(0.01)
        yield Emulator(app, host, sock.getsockname()[1], client_no, password)
    finally:
        server.stop()
        thread.join(timeout=10)
        sock.close()
        app.service.store.close()


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8091,
    db: str | os.PathLike[str] | None = None,
    client_no: str = DEFAULT_CLIENT_NO,
    client_pass: str | None = None,
    delivery_delay: float = 1.0,
    request_validation: bool = False,
    announce: Callable[[str], object] = print,
    listening: Callable[[Emulator], object] | None = None,
) -> None:
    """Run the emulator in the foreground until interrupted, announcing the seeded account and
    the port it listens on (the one the system chose when ``port`` is 0).

    Once it listens, ``announce`` gets each line of its :func:`announcement`, then ``listening``
    (when given) the :class:`Emulator` itself.

    OSError when it cannot listen there; ValueError as :func:`build` raises it. Both come before
    anything is announced.
    """
    app, password = build(
        db=db,
        client_no=client_no,
        client_pass=client_pass,
        delivery_delay=delivery_delay,
        request_validation=request_validation,
        record=0,
    )
    try:
        # Bound here rather than by uvicorn, so that the port announced is the one listening.
        sock = _bind(host, port)
    except OSError:
        app.service.store.close()
        raise
    try:
        emulator = Emulator(app, host, sock.getsockname()[1], client_no, password)
        for line in announcement(emulator).splitlines():
            announce(line)
        if listening is not None:
            listening(emulator)
        uvicorn.Server(_config(app)).run(sockets=[sock])
    finally:
        sock.close()
        app.service.store.close()


def announcement(emulator: Emulator) -> str:
    """What :func:`serve` prints once it listens: its endpoint, the seeded account as the client's
    environment variables, the admin API, and the fault rules set, if any."""
    rules = emulator.faults.rules()
    return "\n".join(
        [
            f"FIBO emulator at {emulator.endpoint}",
            f"  FIBO_ENDPOINT={emulator.endpoint}",
            f"  FIBO_CLIENT_NO={emulator.client_no}",
            f"  FIBO_CLIENT_PASS={emulator.client_pass}",
            f"  admin: {emulator.admin}/faults",
            *([f"  faults: {' '.join(rule.spec() for rule in rules)}"] if rules else []),
        ]
    )
