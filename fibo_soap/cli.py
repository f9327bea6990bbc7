"""`fibo-sms`: the FIBO SMS gateway from the command line.

Each subcommand is one FiboClient operation: the command parses its arguments, calls the facade and
renders the answer (a table on a terminal, tab-separated text in a pipe, one JSON document with
``--json``). It holds no API logic of its own.

Settings come from flags, then the environment (FIBO_CLIENT_NO, FIBO_CLIENT_PASS,
FIBO_PASSWORD_FILE, FIBO_ENDPOINT, FIBO_SERVICE_TYPE, FIBO_PROTOCOL, FIBO_WSDL), then the config
file (see :mod:`fibo_soap.config`). The password is never taken on the command line and never
printed: it comes from FIBO_CLIENT_PASS, a password file, or a hidden prompt.

Exit codes, one per class of failure (:class:`ExitCode`):

== ===================================================================================
0  success
1  unexpected error (a bug: please report it)
2  usage or configuration: a bad flag or argument, a bad config file, no password
3  authentication: FIBO refused the account number or password (code 100)
4  balance: the balance is zero (102) or smaller than the messages (104)
5  invalid input: refused before sending (phone, text, GUID, file row), or FIBO 101/103
6  transport: no connection, a timeout, an HTTP error status
7  protocol: an answer that is not FIBO's (SOAP fault, ASMX error, too large, bad WSDL)
8  FIBO other: code 202 or a code the operation is not documented to return
9  ambiguous send: the gateway may or may not have taken it; check its status first
== ===================================================================================

With --json the result is one JSON document on stdout, and an error is one JSON document on
stderr: ``{"error": {"type", "exit_code", "message", "hint", "operation", "code"}}``. A send that
failed part-way still prints what it did before the error.

Importing this module imports neither zeep, lxml, rich, the models nor the emulator: each is
imported inside the commands that use it. The help is click's plain text, its options grouped in
sections as rich would group them in panels (:class:`_Command`): typer's rich help formatter
alone costs more than the whole of ``fibo-sms --help`` may take (issue 10, target 4).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import io
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import (
    IO,
    TYPE_CHECKING,
    Annotated,
    Any,
    Concatenate,
    Final,
    ParamSpec,
    TextIO,
    cast,
)

import typer
from typer.core import TyperCommand, TyperGroup

from fibo_soap import config
from fibo_soap.config import ConfigError
from fibo_soap.errors import (
    AmbiguousSendError,
    AuthenticationError,
    BalanceError,
    ConnectError,
    FiboCodeError,
    FiboError,
    InsufficientBalanceError,
    InvalidInputError,
    InvalidPhoneNumberError,
    InvalidServiceTypeError,
    ProtocolError,
    ResponseTooLargeError,
    TimeoutError,
    TransportError,
    ZeroBalanceError,
)

if TYPE_CHECKING:
    from rich.console import Console
    from typer._click import Context as ClickContext
    from typer._click import HelpFormatter
    from typer.models import CommandFunctionType

    from fibo_soap.client import FiboClient
    from fibo_soap.models import (
        HostingBalance,
        IncomingSms,
        IncomingStatus,
        Message,
        SenderName,
        SentSms,
        SmsStatus,
        SmsStatusRow,
    )

__all__ = ["ExitCode", "app", "exit_code_for", "main"]


class ExitCode(IntEnum):
    """What the exit status of `fibo-sms` means."""

    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    AUTHENTICATION = 3
    BALANCE = 4
    INVALID_INPUT = 5
    TRANSPORT = 6
    PROTOCOL = 7
    FIBO_OTHER = 8
    AMBIGUOUS_SEND = 9
    INTERRUPTED = 130


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit status for an exception that ended a command."""
    # Order matters: InvalidPhoneNumberError is both an InvalidInputError and a FiboCodeError.
    if isinstance(exc, AmbiguousSendError):
        return ExitCode.AMBIGUOUS_SEND
    if isinstance(exc, ConfigError):
        return ExitCode.USAGE
    if isinstance(exc, AuthenticationError):
        return ExitCode.AUTHENTICATION
    if isinstance(exc, BalanceError):
        return ExitCode.BALANCE
    if isinstance(exc, InvalidInputError | InvalidServiceTypeError):
        return ExitCode.INVALID_INPUT
    if isinstance(exc, FiboCodeError):
        return ExitCode.FIBO_OTHER
    if isinstance(exc, TransportError):
        return ExitCode.TRANSPORT
    if isinstance(exc, ProtocolError):
        return ExitCode.PROTOCOL
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.UNEXPECTED


#: The epilog of the groups' help: one code a line, never rewrapped (click's ``\b``).
EXIT_CODES_HELP: Final = (
    "\b\nExit codes:\n"
    "  0  ok\n"
    "  1  unexpected error\n"
    "  2  usage or configuration\n"
    "  3  authentication (FIBO 100)\n"
    "  4  balance (102, 104)\n"
    "  5  invalid input (refused locally, or FIBO 101, 103)\n"
    "  6  transport (connection, timeout, HTTP status)\n"
    "  7  protocol (not a FIBO answer, bad WSDL)\n"
    "  8  FIBO other (202, unexpected code)\n"
    "  9  ambiguous send (check the status before sending again)"
)


DEFAULT_CHUNK: Final = 500
STATUS_CHUNK: Final = 500
_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
_DATE_FORMATS: Final = ["%Y-%m-%d"]
_SPOOL_BYTES: Final = 16 * 1024 * 1024
_SHOWN_PROBLEMS: Final = 20

PANEL_ACCOUNT: Final = "Account and connection"
PANEL_OUTPUT: Final = "Output"


class FileFormat(StrEnum):
    """The format of a send-bulk file."""

    AUTO = "auto"
    CSV = "csv"
    JSONL = "jsonl"


class AccentMode(StrEnum):
    """What estimate does with Vietnamese accents (fibo_soap.text.Accents)."""

    KEEP = "keep"
    STRIP = "strip"
    STRIP_IF_SHORTER = "strip-if-shorter"


# --- one invocation: its options, its output, its client ---------------------------------------


class _Progress:
    """A progress bar's handle; does nothing when bars are off."""

    def __init__(self, bar: Any = None, task: Any = None) -> None:
        self._bar = bar
        self._task = task

    def advance(self, amount: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def update(self, *, completed: int | None = None, total: int | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, total=total)


@dataclass
class Run:
    """One command's invocation: the common options, the output streams, and the client."""

    json: bool = False
    quiet: bool = False
    progress: bool | None = None
    verbose: bool = False
    flags: config.Flags | None = None
    #: GUIDs of a send in flight, for the error hint when its fate is unknown.
    in_flight: list[str] = field(default_factory=list)
    #: Messages this command recorded as sent before it failed: its hints then say so rather
    #: than "nothing was sent".
    sent: int = 0
    #: The command's own hint for a failure, when the general ones (:func:`hint_for`) would
    #: name settings it does not use; None leaves the failure to them.
    hints: Callable[[BaseException], str | None] | None = None
    service_type: str | None = None
    _settings: config.Settings | None = None
    _client: FiboClient | None = None
    _stdout: Console | None = None
    _stderr: Console | None = None

    # output ---------------------------------------------------------------------------------

    @property
    def stdout(self) -> Console:
        if self._stdout is None:
            self._stdout = _stdout_console(highlight=False, soft_wrap=False)
        return self._stdout

    @property
    def stderr(self) -> Console:
        if self._stderr is None:
            from rich.console import Console

            self._stderr = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._stderr

    def emit(self, document: Mapping[str, Any], human: Callable[[], None]) -> None:
        """The command's result: ``document`` as JSON with --json, else ``human()``."""
        if self.json:
            import json

            sys.stdout.write(json.dumps(document, ensure_ascii=False, sort_keys=False) + "\n")
            sys.stdout.flush()
        elif not self.quiet:
            human()

    def line(self, text: str) -> None:
        """A line of the human result on stdout (plain text, no markup)."""
        if not self.quiet and not self.json:
            self.stdout.print(text, markup=False)

    def note(self, text: str) -> None:
        """Something worth knowing that is not the result: stderr, silenced by --quiet."""
        if not self.quiet:
            self.stderr.print(text, markup=False, style="dim" if self.stderr.is_terminal else None)

    def warn(self, text: str) -> None:
        """A warning on stderr; shown even with --quiet."""
        self.stderr.print(f"warning: {text}", markup=False, style="yellow")

    def table(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]],
        *,
        title: str | None = None,
    ) -> None:
        """Rows as a table on a terminal, as tab-separated lines with a header otherwise."""
        cells = [[_cell(value) for value in row] for row in rows]
        if self.quiet or self.json:
            return
        if not self.stdout.is_terminal:
            for row in [list(columns), *cells]:
                sys.stdout.write("\t".join(_one_line(cell) for cell in row) + "\n")
            sys.stdout.flush()
            return
        from rich.table import Table

        table = Table(title=title, title_justify="left", header_style="bold")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in cells:
            table.add_row(*row)
        self.stdout.print(table, markup=False)

    @contextlib.contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[_Progress]:
        """A progress bar on stderr, when stderr is a terminal (or --progress) and not --quiet."""
        show = self.progress
        if show is None:
            show = self.stderr.is_terminal and not self.quiet
        if not show:
            yield _Progress()
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        console = Console(stderr=True, force_terminal=True if self.progress else None)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            yield _Progress(progress, progress.add_task(description, total=total))

    # settings and client -------------------------------------------------------------------

    def settings(self, *, need_account: bool = True) -> config.Settings:
        """The resolved settings (flags, environment, config file); prompts on a terminal."""
        if self._settings is None:
            flags = self.flags or config.Flags()
            self._settings = config.resolve(
                flags, need_account=need_account, prompt=self._prompt(flags)
            )
            for warning in self._settings.warnings:
                self.warn(warning)
        return self._settings

    @staticmethod
    def _prompt(flags: config.Flags) -> Callable[[], str] | None:
        if not (flags.ask_password or sys.stdin.isatty()):
            return None

        def ask() -> str:
            answer = typer.prompt(
                "FIBO password", hide_input=True, err=True, default="", show_default=False
            )
            return str(answer)

        return ask

    def client(self, *, need_account: bool = True, **overrides: Any) -> FiboClient:
        """The FiboClient of the resolved settings (one per invocation, closed at the end);
        ``overrides`` are further FiboClient options."""
        if self._client is None:
            from fibo_soap.client import FiboClient

            s = self.settings(need_account=need_account)
            options: dict[str, Any] = dict(overrides)
            if s.endpoint:
                options["endpoint"] = s.endpoint
            if s.service_type:
                options["service_type"] = s.service_type
            if s.protocol:
                options["protocol"] = s.protocol
            if s.wsdl:
                options["wsdl"] = s.wsdl
            if s.timeout:
                options["timeout"] = s.timeout
            if s.attempts:
                from fibo_soap.resilience import RetryPolicy

                options["retry"] = RetryPolicy(attempts=s.attempts)
            # About needs no account, but the client takes one: any placeholder does.
            self._client = FiboClient(s.client_no or "anonymous", s.password or "", **options)
            self.service_type = s.service_type
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def secrets(self) -> tuple[str, ...]:
        password = self._settings.password if self._settings else None
        return (password,) if password else ()

    # errors --------------------------------------------------------------------------------

    def fail(self, exc: BaseException) -> ExitCode:
        """Report ``exc`` on stderr (JSON with --json) and give the exit status."""
        code = exit_code_for(exc)
        if code is ExitCode.INTERRUPTED:
            message, hint = "interrupted", _interrupted_hint(self)
        elif code is ExitCode.UNEXPECTED:
            message = f"unexpected error: {type(exc).__name__}: {exc}"
            hint = "this is a bug in fibo-sms: rerun with --verbose and report the traceback"
        else:
            own = self.hints(exc) if self.hints is not None else None
            message, hint = str(exc), own or hint_for(exc, self)
        message, hint = _redact(message, self.secrets()), _redact(hint, self.secrets())
        if self.verbose and code is ExitCode.UNEXPECTED:
            import traceback

            trace = "".join(traceback.format_exception(exc))
            sys.stderr.write(_redact(trace, self.secrets()))
        if self.json:
            import json

            document = {
                "error": {
                    "type": type(exc).__name__,
                    "exit_code": int(code),
                    "message": message,
                    "hint": hint or None,
                    "operation": getattr(exc, "operation", None),
                    "code": getattr(exc, "code", None),
                }
            }
            sys.stderr.write(json.dumps(document, ensure_ascii=False) + "\n")
        else:
            self.stderr.print(f"error: {message}", markup=False, style="bold red")
            if hint:
                self.stderr.print(f"hint: {hint}", markup=False)
        return code


def _redact(text: str, secrets: Sequence[str]) -> str:
    if not secrets:
        return text
    from fibo_soap.logs import redact

    return redact(text, secrets, phones=False)


def _interrupted_hint(run: Run) -> str:
    if run.in_flight:
        return (
            f"a send was in flight: run `fibo-sms status {_shown(run.in_flight)}` before resending"
        )
    return ""


def _shown(guids: Sequence[str]) -> str:
    return " ".join(guids[:3]) + (" ..." if len(guids) > 3 else "")


def _source(run: Run, name: str, fallback: str) -> str:
    settings = run._settings
    return (settings.source(name) if settings else None) or fallback


def hint_for(exc: BaseException, run: Run) -> str:
    """What to do next after ``exc``, in the words of the setting or command that fixes it."""
    service = run.service_type or "(none set)"
    if isinstance(exc, ConfigError):
        return exc.hint or "see `fibo-sms --help` for the settings and where they come from"
    if isinstance(exc, AmbiguousSendError):
        guids = list(exc.unknown) if exc.guids else run.in_flight
        if exc.unsent and not guids:
            return (
                f"the gateway did not take {_shown(exc.unsent)}: they can be sent again with the "
                "same GUIDs"
            )
        if guids:
            return (
                f"the gateway may have taken it: run `fibo-sms status {_shown(guids)}` before "
                "resending"
            )
        return (
            "the gateway may have taken it (SendBulkSMS has no GUIDs to check): look at "
            "`fibo-sms sent --minutes 10` before resending"
        )
    if isinstance(exc, AuthenticationError):
        who = _source(run, "client_no", config.ENV_CLIENT_NO)
        password = _source(run, "password", config.ENV_CLIENT_PASS)
        return f"FIBO refused the account: check {who} and {password}"
    if isinstance(exc, ZeroBalanceError):
        return (
            f"balance 0 on service {service}: top it up, or choose another service type with "
            "--service-type (see `fibo-sms balance --all`)"
        )
    if isinstance(exc, InsufficientBalanceError):
        return (
            f"more messages than the balance of service {service}; {_what_was_sent(run)}: send "
            "fewer or top it up (see `fibo-sms balance`)"
        )
    if isinstance(exc, InvalidServiceTypeError):
        return (
            f"service type {service} ({_source(run, 'service_type', '--service-type')}) is not "
            "one of the account's: see `fibo-sms balance --all`"
        )
    if isinstance(exc, InvalidPhoneNumberError):
        if exc.invalid:
            listed = "; ".join(f"{p}: {why}" for p, why in exc.invalid[:5])
            return f"fix the numbers ({listed}); {_what_was_sent(run)}"
        return f"fix the phone number; {_what_was_sent(run)}"
    if isinstance(exc, InvalidInputError):
        if exc.field == "service_type":
            return (
                f"set {config.ENV_SERVICE_TYPE}, or service_type in the config file, or pass "
                "--service-type"
            )
        if exc.field == "protocol":
            return f"check {_source(run, 'protocol', config.ENV_PROTOCOL)}"
        return f"{_what_was_sent(run)}: fix the input and run the command again"
    if isinstance(exc, FiboCodeError):
        return "FIBO reported an error of its own: retry later, or contact FIBO with the message"
    endpoint = _endpoint(run)
    if isinstance(exc, TransportError):
        if run.in_flight and exc.request_sent:
            return (
                "the request may have reached FIBO: run "
                f"`fibo-sms status {_shown(run.in_flight)}` before sending again"
            )
        if isinstance(exc, ConnectError):
            return (
                f"cannot reach {endpoint}: check {_source(run, 'endpoint', config.ENV_ENDPOINT)} "
                f"and the network; {_what_was_sent(run)}"
            )
        if isinstance(exc, TimeoutError):
            return f"{endpoint} did not answer in time: retry, or raise --timeout"
        return f"check {_source(run, 'endpoint', config.ENV_ENDPOINT)} ({endpoint})"
    if isinstance(exc, ResponseTooLargeError):
        return "the answer was too large: ask for a shorter time window or fewer GUIDs"
    if isinstance(exc, ProtocolError):
        wsdl = _source(run, "wsdl", "")
        fix = f"; the WSDL is {wsdl}: `fibo-sms wsdl refresh` it or remove it" if wsdl else ""
        return (
            f"{endpoint} did not answer as FIBO does: check "
            f"{_source(run, 'endpoint', config.ENV_ENDPOINT)} and "
            f"{_source(run, 'protocol', config.ENV_PROTOCOL)} (try --protocol get){fix}"
        )
    return ""


def _what_was_sent(run: Run) -> str:
    """What a failed command had sent: nothing, or the rows its output marks accepted."""
    if run.sent:
        return (
            f"the {run.sent} row{'s' if run.sent != 1 else ''} marked accepted "
            f"{'were' if run.sent != 1 else 'was'} sent, the others were not"
        )
    return "nothing was sent"


def _endpoint(run: Run) -> str:
    if run._client is not None:
        return run._client.endpoint
    settings = run._settings
    return (settings.endpoint if settings else None) or "FIBO"


# --- common options, added to every command ----------------------------------------------------

P = ParamSpec("P")


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


class LogFormat(StrEnum):
    """How ``--log-format`` writes the log events on stderr."""

    JSON = "json"
    CONSOLE = "console"


_OUTPUT_PARAMS: Final = (
    _param(
        "opt_json",
        Annotated[
            bool,
            typer.Option(
                "--json",
                help="One JSON document on stdout, stable keys (an error: one on stderr).",
                rich_help_panel=PANEL_OUTPUT,
            ),
        ],
        False,
    ),
    _param(
        "opt_quiet",
        Annotated[
            bool,
            typer.Option(
                "--quiet",
                "-q",
                help="Print nothing but errors (the exit code says how it went).",
                rich_help_panel=PANEL_OUTPUT,
            ),
        ],
        False,
    ),
    _param(
        "opt_progress",
        Annotated[
            bool | None,
            typer.Option(
                "--progress/--no-progress",
                help="Progress bars on stderr (default: only when stderr is a terminal).",
                rich_help_panel=PANEL_OUTPUT,
                show_default=False,
            ),
        ],
        None,
    ),
    _param(
        "opt_verbose",
        Annotated[
            bool,
            typer.Option(
                "--verbose",
                "-v",
                help="Log each call on stderr (no secrets) and show tracebacks of bugs.",
                rich_help_panel=PANEL_OUTPUT,
            ),
        ],
        False,
    ),
)

# The click context, so that options given before the command (fibo-sms --json balance) count.
_CONTEXT_PARAM: Final = _param("opt_context", typer.Context, None)

_ACCOUNT_PARAMS: Final = (
    _param(
        "opt_config",
        Annotated[
            Path | None,
            typer.Option(
                "--config",
                help="TOML config file (default: ~/.config/fibo-sms/config.toml).",
                rich_help_panel=PANEL_ACCOUNT,
                dir_okay=False,
                show_default=False,
            ),
        ],
        None,
    ),
    _param(
        "opt_client_no",
        Annotated[
            str | None,
            typer.Option(
                "--client-no",
                help="FIBO account number (env FIBO_CLIENT_NO).",
                rich_help_panel=PANEL_ACCOUNT,
                show_default=False,
            ),
        ],
        None,
    ),
    _param(
        "opt_password_file",
        Annotated[
            Path | None,
            typer.Option(
                "--password-file",
                help="File whose first line is the password (env FIBO_CLIENT_PASS holds it "
                "directly, FIBO_PASSWORD_FILE names a file).",
                rich_help_panel=PANEL_ACCOUNT,
                dir_okay=False,
                show_default=False,
            ),
        ],
        None,
    ),
    _param(
        "opt_ask_password",
        Annotated[
            bool,
            typer.Option(
                "--ask-password",
                help="Prompt for the password (hidden), even when another source has one.",
                rich_help_panel=PANEL_ACCOUNT,
            ),
        ],
        False,
    ),
    _param(
        "opt_endpoint",
        Annotated[
            str | None,
            typer.Option(
                "--endpoint",
                help="Service.asmx URL (env FIBO_ENDPOINT; default FIBO's).",
                rich_help_panel=PANEL_ACCOUNT,
                show_default=False,
            ),
        ],
        None,
    ),
    _param(
        "opt_protocol",
        Annotated[
            str | None,
            typer.Option(
                "--protocol",
                help="soap11, soap12, get or post; several, comma-separated, are tried in order "
                "(env FIBO_PROTOCOL).",
                rich_help_panel=PANEL_ACCOUNT,
                show_default=False,
                autocompletion=lambda incomplete: [
                    p for p in config.PROTOCOLS if p.startswith(incomplete)
                ],
            ),
        ],
        None,
    ),
    _param(
        "opt_wsdl",
        Annotated[
            str | None,
            typer.Option(
                "--wsdl",
                help="WSDL path or URL (env FIBO_WSDL; default the one `wsdl refresh` stored, "
                "else the bundled one).",
                rich_help_panel=PANEL_ACCOUNT,
                show_default=False,
            ),
        ],
        None,
    ),
    _param(
        "opt_timeout",
        Annotated[
            float | None,
            typer.Option(
                "--timeout",
                help="Seconds to wait for an answer (default 60).",
                rich_help_panel=PANEL_ACCOUNT,
                show_default=False,
            ),
        ],
        None,
    ),
    _param(
        "opt_attempts",
        Annotated[
            int | None,
            typer.Option(
                "--attempts",
                min=1,
                help="Tries of a call on each protocol (default 3; 1: no retries). A send is "
                "never repeated unless FIBO certainly did not take it.",
                rich_help_panel=PANEL_ACCOUNT,
                show_default=False,
            ),
        ],
        None,
    ),
)


def _common(
    *, account: bool = True
) -> Callable[[Callable[Concatenate[Run, P], None]], Callable[P, None]]:
    """Give a command the output options (and, with ``account``, the account options).

    The command receives them resolved as its first argument, a :class:`Run`; failures are
    reported and turned into exit codes here, once for every command.
    """
    extra = (_CONTEXT_PARAM, *_OUTPUT_PARAMS, *(_ACCOUNT_PARAMS if account else ()))

    def decorate(func: Callable[Concatenate[Run, P], None]) -> Callable[P, None]:
        signature = inspect.signature(func, eval_str=True)
        own = list(signature.parameters.values())[1:]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            common = {p.name: kwargs.pop(p.name, p.default) for p in extra}
            run = _run_from(common, account=account)
            try:
                func(run, *args, **kwargs)
            except (typer.Exit, typer.Abort, typer.BadParameter):
                raise
            except BrokenPipeError:
                # The reader of the output stopped reading (`| head`): stop quietly, with the
                # status of a program that SIGPIPE ended, as the shell's own tools do.
                _close_stdout()
                raise typer.Exit(EXIT_OUTPUT_CLOSED) from None
            except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every failure has an exit code
                raise typer.Exit(int(run.fail(exc))) from None
            finally:
                run.close()

        wrapper.__doc__ = _reflow(func.__doc__ or "")
        wrapper.__signature__ = signature.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in (*own, *extra)} | {"return": None}
        return cast("Callable[P, None]", wrapper)

    return decorate


#: The exit status when whoever reads the output stops reading: 128 + SIGPIPE, the status of a
#: program that signal ended.
EXIT_OUTPUT_CLOSED: Final = 141


def _stdout_console(**options: Any) -> Console:
    """A rich Console on standard output that leaves a closed pipe to the command (_common):
    rich's own answer is exit status 1, which says "a bug" here."""
    from rich.console import Console

    class Stdout(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return Stdout(**options)


def _close_stdout() -> None:
    """Point standard output at /dev/null: what is left to write, and the flush at exit, go
    nowhere rather than failing on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # an output without a file descriptor (a test's)
        pass


def _reflow(doc: str) -> str:
    """A docstring with each paragraph on one line, for the help formatter to wrap."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)


def _run_from(common: Mapping[str, Any], *, account: bool) -> Run:
    ctx = common["opt_context"]
    root = ctx.find_root().obj if ctx is not None else None
    if not isinstance(root, dict):
        root = {}
    progress = common["opt_progress"]
    run = Run(
        json=bool(common["opt_json"] or root.get("json")),
        quiet=bool(common["opt_quiet"] or root.get("quiet")),
        progress=progress if progress is not None else root.get("progress"),
        verbose=bool(common["opt_verbose"] or root.get("verbose")),
    )
    if account:
        protocol = common["opt_protocol"]
        run.flags = config.Flags(
            config=common["opt_config"],
            client_no=common["opt_client_no"],
            password_file=common["opt_password_file"],
            ask_password=bool(common["opt_ask_password"]),
            endpoint=common["opt_endpoint"],
            protocol=protocol,
            wsdl=common["opt_wsdl"],
            timeout=common["opt_timeout"],
            attempts=common["opt_attempts"],
        )
    log_format = root.get("log_format")
    if run.verbose or log_format is not None:
        from fibo_soap import logs

        logs.configure(json=log_format is LogFormat.JSON, level="DEBUG" if run.verbose else "INFO")
    return run


def _with_service_type(run: Run, service_type: str | None) -> None:
    if service_type is not None and run.flags is not None:
        run.flags = dataclasses.replace(run.flags, service_type=service_type)


# --- rendering helpers -------------------------------------------------------------------------


def _local(value: datetime | None) -> str:
    if value is None:
        return ""
    return (value.astimezone() if value.tzinfo else value).strftime(_TIME_FORMAT)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _local(value)
    if isinstance(value, IntEnum):
        # A status came in a row, so fibo_soap.models is loaded already: no import cost.
        from fibo_soap.models import IncomingStatus, SmsStatus

        if isinstance(value, SmsStatus | IncomingStatus):
            return value.fibo_name
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _status_name(status: SmsStatus | None) -> str | None:
    return None if status is None else status.fibo_name


def _sent_doc(row: SentSms) -> dict[str, Any]:
    return {
        "id": row.id,
        "guid": row.guid,
        "phone": row.phone,
        "message": row.message,
        "created": _iso(row.created),
        "sent": _iso(row.sent),
        "status": None if row.status is None else int(row.status),
        "status_name": _status_name(row.status),
    }


def _incoming_doc(row: IncomingSms) -> dict[str, Any]:
    return {
        "id": row.id,
        "phone": row.phone,
        "message": row.message,
        "status": None if row.status is None else int(row.status),
        "status_name": None if row.status is None else row.status.fibo_name,
        "created": _iso(row.created),
        "sent": _iso(row.sent),
        "service_type_id": row.service_type_id,
        "service_type_name": row.service_type_name,
    }


def _status_doc(row: SmsStatusRow) -> dict[str, Any]:
    return {
        "guid": row.guid,
        "status": None if row.status is None else int(row.status),
        "status_name": _status_name(row.status),
        "final": row.status is not None and row.status.is_final,
        "sender_name": row.sender_name,
    }


def _sender_doc(row: SenderName) -> dict[str, Any]:
    return {"name": row.name, "status": row.status, "created": _iso(row.created)}


def _hosting_doc(row: HostingBalance) -> dict[str, Any]:
    return {"service_type_name": row.service_type_name, "balance": row.balance}


def _show_sent(run: Run, rows: Sequence[SentSms], empty: str) -> None:
    if not rows:
        run.note(empty)
        return
    run.table(
        ["ID", "GUID", "Phone", "Message", "Created", "Sent", "Status"],
        [(r.id, r.guid, r.phone, r.message, r.created, r.sent, r.status) for r in rows],
    )


def _show_incoming(run: Run, rows: Sequence[IncomingSms], empty: str) -> None:
    if not rows:
        run.note(empty)
        return
    run.table(
        ["ID", "Phone", "Message", "Status", "Received", "Sent", "Service"],
        [
            (r.id, r.phone, r.message, r.status, r.created, r.sent, r.service_type_name)
            for r in rows
        ],
    )


def _read_text(value: str, field: str = "text") -> str:
    """An argument's text; ``-`` reads stdin as send-bulk reads a file: UTF-8, a BOM dropped
    (one final line end dropped too). ``field`` names the argument in the error."""
    if value != "-":
        return value
    try:
        data = sys.stdin.buffer.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"stdin is not UTF-8 text: {exc.reason}", field=field) from None
    return data.removesuffix("\n").removesuffix("\r") if data.endswith("\n") else data


def _parse_status(value: str | None, kind: type[SmsStatus | IncomingStatus]) -> int | None:
    """A status given by number or by name (``SentSuccess``, ``sent-success``, ``SENT_SUCCESS``)."""
    if value is None:
        return None
    wanted = value.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if wanted.isdigit() and int(wanted) in {int(s) for s in kind}:
        return int(wanted)
    for status in kind:
        if wanted in (status.fibo_name.lower(), status.name.lower().replace("_", "")):
            return int(status)
    choices = ", ".join(status.fibo_name for status in kind)
    raise typer.BadParameter(
        f"{value!r} is not a status: use a number or one of {choices}", param_hint="--status"
    )


def _complete_sms_status(incomplete: str) -> list[str]:
    from fibo_soap.models import SmsStatus

    names = [status.fibo_name for status in SmsStatus]
    return [n for n in names if n.lower().startswith(incomplete.lower())]


def _complete_incoming_status(incomplete: str) -> list[str]:
    from fibo_soap.models import IncomingStatus

    names = [status.fibo_name for status in IncomingStatus]
    return [n for n in names if n.lower().startswith(incomplete.lower())]


def _new_guid() -> str:
    from fibo_soap.models import new_guid

    return new_guid()


def _example(*lines: str) -> str:
    """A command's epilog: its example command lines, one a line, never rewrapped (``\\b``)."""
    shown = "\n".join(f"  $ {line}" for line in lines)
    return f"\b\nExample{'s' if len(lines) > 1 else ''}:\n{shown}"


def _split_phones(values: Iterable[str]) -> list[str]:
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


# --- the application ---------------------------------------------------------------------------


def _format_sections(
    command: TyperCommand | TyperGroup, ctx: ClickContext, formatter: HelpFormatter
) -> None:
    """The arguments and options of a help page in sections, an option with a rich_help_panel in
    a section of that name (as typer's rich help puts it in a panel): Arguments, Options, then
    the panels in the order of their first option."""
    sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        default = "Arguments" if param.param_type_name == "argument" else "Options"
        title = getattr(param, "rich_help_panel", None) or default
        sections.setdefault(title, []).append(record)
    for title, records in sections.items():
        if records:
            with formatter.section(title):
                formatter.write_dl(records)


class _Command(TyperCommand):
    """A command whose plain help groups its options in sections (:func:`_format_sections`)."""

    def format_options(self, ctx: ClickContext, formatter: HelpFormatter) -> None:
        _format_sections(self, ctx, formatter)


class _Group(TyperGroup):
    """A group whose plain help groups its options in sections, then lists its commands."""

    def format_options(self, ctx: ClickContext, formatter: HelpFormatter) -> None:
        _format_sections(self, ctx, formatter)
        self.format_commands(ctx, formatter)


class _Typer(typer.Typer):
    """A typer.Typer whose commands are :class:`_Command` unless ``cls`` says otherwise."""

    def command(
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        return super().command(name, cls=cls or _Command, **kwargs)


# No rich markup: with it, typer renders every help page (and usage error) with rich, whose
# import and rendering take longer than the target for the whole of `fibo-sms --help`.
app = _Typer(
    name="fibo-sms",
    cls=_Group,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,  # a traceback's locals would show the password
    # Up to 120 columns, as wide as the terminal: rich help used its whole width.
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
    epilog=EXIT_CODES_HELP,
)


def _subgroup(name: str, summary: str) -> _Typer:
    """A group of subcommands under `fibo-sms NAME`, with the root's help settings."""
    group = _Typer(
        name=name,
        cls=_Group,
        help=summary,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        epilog=EXIT_CODES_HELP,
    )
    app.add_typer(group, name=name)
    return group


wsdl_app = _subgroup(
    "wsdl", "The service description (WSDL) the client uses: refresh it from FIBO, show it."
)

ServiceTypeOption = Annotated[
    str | None,
    typer.Option(
        "--service-type",
        "-s",
        help="Service type to use (env FIBO_SERVICE_TYPE).",
        show_default=False,
    ),
]
FromOption = Annotated[
    datetime | None,
    typer.Option(
        "--from", help="First day (YYYY-MM-DD).", formats=_DATE_FORMATS, show_default=False
    ),
]
ToOption = Annotated[
    datetime | None,
    typer.Option("--to", help="Last day (YYYY-MM-DD).", formats=_DATE_FORMATS, show_default=False),
]
KeyOption = Annotated[
    str, typer.Option("--key", help="Only messages containing this text.", show_default=False)
]
FilterServiceOption = Annotated[
    str | None,
    typer.Option("--service-type", "-s", help="Only this service type.", show_default=False),
]


_ROOT_HELP: Final = """Send SMS through the FIBO gateway and follow them, from the command line.

    The account comes from FIBO_CLIENT_NO and FIBO_CLIENT_PASS (or --client-no, --password-file,
    a hidden prompt, or ~/.config/fibo-sms/config.toml); the password is never an argument and is
    never printed. Every command takes --json (one JSON document) and --quiet.
    """


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            shown = version("fibo-soap")
        except PackageNotFoundError:
            shown = "unknown"
        typer.echo(f"fibo-sms {shown}")
        raise typer.Exit()


@app.callback(help=_reflow(_ROOT_HELP))
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="As the command's --json.", rich_help_panel=PANEL_OUTPUT)
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="As the command's --quiet.", rich_help_panel=PANEL_OUTPUT
        ),
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="As the command's --progress.",
            rich_help_panel=PANEL_OUTPUT,
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="As the command's --verbose.", rich_help_panel=PANEL_OUTPUT
        ),
    ] = False,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            "--log-format",
            help="Log each call on stderr as JSON lines or console text (INFO; DEBUG with -v).",
            rich_help_panel=PANEL_OUTPUT,
            show_default=False,
        ),
    ] = None,
) -> None:
    """The output options may come before the command too: fibo-sms --json balance."""
    ctx.obj = {
        "json": as_json,
        "quiet": quiet,
        "progress": progress,
        "verbose": verbose,
        "log_format": log_format,
    }


@app.command(epilog=_example("fibo-sms about"))
@_common()
def about(run: Run) -> None:
    """Check that FIBO answers (About; needs no account)."""
    answer = run.client(need_account=False).about()
    run.emit({"about": answer}, lambda: run.line(answer))


@app.command(
    epilog=_example(
        "fibo-sms check", "fibo-sms check --client-no CL0001 --password-file ~/.fibo-pass"
    )
)
@_common()
def check(run: Run) -> None:
    """Check the account number and password; prints the account holder (CheckClient)."""
    client = run.client()
    name = client.check_client()
    run.emit(
        {"client_no": client.client_no, "name": name},
        lambda: run.line(f"{client.client_no}: {name}"),
    )


@app.command(epilog=_example("fibo-sms balance --service-type 1", "fibo-sms balance --all"))
@_common()
def balance(
    run: Run,
    service_type: ServiceTypeOption = None,
    every: Annotated[
        bool, typer.Option("--all", "-a", help="Every hosting service of the account.")
    ] = False,
) -> None:
    """Messages left on a service type (GetClientBalance), or on every one (--all)."""
    _with_service_type(run, service_type)
    client = run.client()
    if every:
        rows = client.get_hosting_balances()

        def human_all() -> None:
            if not rows:
                run.note("The account has no hosting service.")
            run.table(["Service", "Balance"], [(r.service_type_name, r.balance) for r in rows])

        run.emit({"services": [_hosting_doc(r) for r in rows]}, human_all)
        return
    left = client.get_balance()
    chosen = client.service_type

    def human() -> None:
        run.line(f"{left} messages left on service type {chosen}")
        if left == 0:
            run.note(f"balance 0 on service {chosen}: sends on it will be refused (code 102)")

    run.emit({"service_type": chosen, "balance": left}, human)


@app.command(epilog=_example("fibo-sms senders"))
@_common()
def senders(run: Run) -> None:
    """The account's registered sender (brand) names (GetClientSenderNameList)."""
    rows = run.client().get_sender_names()

    def human() -> None:
        if not rows:
            run.note("The account has no registered sender name.")
            return
        run.table(["Sender", "Status", "Registered"], [(r.name, r.status, r.created) for r in rows])

    run.emit({"senders": [_sender_doc(r) for r in rows]}, human)


@app.command(
    epilog=_example(
        "fibo-sms send 0909128628 'Your code is 1234'",
        "fibo-sms send --masked --sender ACME 0909128628 'Sale ends today'",
        "echo 'Hello' | fibo-sms send --test 0909128628 -",
    )
)
@_common()
def send(
    run: Run,
    phone: Annotated[str, typer.Argument(help="Recipient, e.g. 0909128628 or +84909128628.")],
    text: Annotated[str, typer.Argument(help="The message; - reads it from stdin.")],
    masked: Annotated[
        bool, typer.Option("--masked", help="Send as a brand name (SendMaskedSMS).")
    ] = False,
    sender: Annotated[
        str | None,
        typer.Option(
            "--sender", help="Registered sender name (implies --masked).", show_default=False
        ),
    ] = None,
    test: Annotated[
        bool,
        typer.Option(
            "--test", help="FIBO's free test channel, service type 3: stored, never delivered."
        ),
    ] = False,
    guid: Annotated[
        str | None,
        typer.Option(
            "--guid", help="Your own id for the message (default: a new UUID).", show_default=False
        ),
    ] = None,
    service_type: ServiceTypeOption = None,
) -> None:
    """Send one SMS (SendSMS; SendMaskedSMS with --masked or --sender)."""
    if test and (masked or sender is not None):
        raise ConfigError("--test cannot be combined with --masked or --sender")
    if test and service_type is not None:
        raise ConfigError("--test is service type 3: leave out --service-type")
    body = _read_text(text)
    _with_service_type(run, service_type)
    client = run.client()
    chosen_guid = guid if guid is not None else _new_guid()
    run.in_flight = [chosen_guid]
    if test:
        operation = "SendSMS"
        receipt = client.send_test_sms(phone, body, guid=chosen_guid)
        used_type: str | None = "3"
    elif masked or sender is not None:
        operation = "SendMaskedSMS"
        receipt = client.send_masked_sms(phone, body, sender_name=sender or "", guid=chosen_guid)
        used_type = client.service_type
    else:
        operation = "SendSMS"
        receipt = client.send_sms(phone, body, guid=chosen_guid)
        used_type = client.service_type
    run.in_flight = []

    def human() -> None:
        run.line(f"accepted {receipt.guid} ({receipt.message or receipt.code})")
        run.note(f"follow it with: fibo-sms status {receipt.guid}")

    run.emit(
        {
            "operation": operation,
            "guid": receipt.guid,
            "code": receipt.code,
            "message": receipt.message,
            "service_type": used_type,
            "test": test,
        },
        human,
    )


@app.command(
    "send-list",
    epilog=_example(
        "fibo-sms send-list --to 0909128628 --to 0912345678 'Meeting at 10'",
        "fibo-sms send-list --to 0909128628,0912345678 --sender ACME 'Sale ends today'",
    ),
)
@_common()
def send_list(
    run: Run,
    to: Annotated[
        list[str],
        typer.Option("--to", help="A recipient; repeat it, or separate numbers with commas."),
    ],
    text: Annotated[str, typer.Argument(help="The message, the same for all; - reads stdin.")],
    sender: Annotated[
        str | None,
        typer.Option("--sender", help="Registered sender name (default n/a).", show_default=False),
    ] = None,
    service_type: ServiceTypeOption = None,
) -> None:
    """Send one text to many phones (SendSMSToListMobilePhone); each gets its own GUID."""
    phones = _split_phones(to)
    if not phones:
        raise ConfigError("--to names no phone number")
    body = _read_text(text)
    _with_service_type(run, service_type)
    client = run.client()
    entries = [(p, _new_guid()) for p in phones]
    run.in_flight = [g for _, g in entries]
    receipt = client.send_to_list(entries, body, sender_name=sender)
    run.in_flight = []
    phone_of = {g: p for p, g in entries}
    accepted = [{"phone": phone_of.get(g), "guid": g} for g in receipt.accepted]
    rejected = [{"phone": phone_of.get(g), "guid": g} for g in receipt.rejected]

    def human() -> None:
        run.table(
            ["Phone", "GUID", "Result"],
            [(a["phone"], a["guid"], "accepted") for a in accepted]
            + [(r["phone"], r["guid"], "rejected") for r in rejected],
        )
        run.note(f"{len(accepted)} accepted, {len(rejected)} rejected")

    run.emit(
        {
            "operation": "SendSMSToListMobilePhone",
            "service_type": client.service_type,
            "accepted": accepted,
            "rejected": rejected,
        },
        human,
    )
    if rejected and not accepted:
        raise InvalidPhoneNumberError(
            "FIBO rejected every recipient (ListWrongPhoneNumber)",
            invalid=[(str(r["phone"]), "rejected by FIBO") for r in rejected],
            operation="SendSMSToListMobilePhone",
        )


# --- send-bulk ---------------------------------------------------------------------------------

_PHONE_HEADERS: Final = frozenset(
    {"phone", "phonenumber", "phone_number", "number", "to", "msisdn"}
)
_TEXT_HEADERS: Final = frozenset({"text", "message", "sms", "content", "body", "smsmessage"})
_GUID_HEADERS: Final = frozenset({"guid", "msguid", "smsguid", "id"})


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    phone: str
    text: str
    guid: str | None


@dataclass(frozen=True, slots=True)
class _BadRow:
    line: int
    reason: str
    phone: str | None = None


def _detect_format(path: str, head: str) -> FileFormat:
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return FileFormat.JSONL
    if suffix in (".csv", ".txt", ".tsv"):
        return FileFormat.CSV
    return FileFormat.JSONL if head.lstrip().startswith("{") else FileFormat.CSV


def _csv_rows(handle: TextIO) -> Iterator[_Row | _BadRow]:
    import csv

    from fibo_soap.campaign import cells_unlike_header

    reader = csv.reader(handle)
    columns: tuple[int, int, int | None] | None = None
    width = 0
    first = True
    for record in reader:
        cells = [c.strip() for c in record]
        if not any(cells):
            continue
        line = reader.line_num
        if first:
            first = False
            names = [c.lower().lstrip("\ufeff") for c in cells]
            if names[0] in _PHONE_HEADERS or any(n in _TEXT_HEADERS for n in names):
                phone_at = next((i for i, n in enumerate(names) if n in _PHONE_HEADERS), None)
                text_at = next((i for i, n in enumerate(names) if n in _TEXT_HEADERS), None)
                guid_at = next((i for i, n in enumerate(names) if n in _GUID_HEADERS), None)
                if phone_at is None or text_at is None:
                    yield _BadRow(line, "the header names no phone or no text column")
                    return
                columns = (phone_at, text_at, guid_at)
                width = len(cells)
                continue
        if columns is None:
            if len(record) not in (2, 3):
                yield _BadRow(line, f"expected phone,text[,guid]; found {len(record)} columns")
                continue
            guid = record[2].strip() if len(record) == 3 else ""
            yield _Row(line, cells[0], record[1], guid or None)
            continue
        phone_at, text_at, guid_at = columns
        # More cells than the header is most often a comma in an unquoted text: taking the
        # header's cells would send the text cut at that comma.
        if max(phone_at, text_at, guid_at or 0) >= len(record) or any(cells[width:]):
            yield _BadRow(
                line,
                cells_unlike_header(line, len(record), width),
                cells[phone_at] if phone_at < len(record) else None,
            )
            continue
        guid = record[guid_at].strip() if guid_at is not None else ""
        yield _Row(line, cells[phone_at], record[text_at], guid or None)


def _jsonl_rows(handle: TextIO) -> Iterator[_Row | _BadRow]:
    import json

    for line, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError as exc:
            yield _BadRow(line, f"not JSON: {exc}")
            continue
        if not isinstance(item, dict):
            yield _BadRow(line, 'expected an object {"phone": ..., "text": ...}')
            continue
        phone = item.get("phone")
        body = item.get("text", item.get("message"))
        guid = item.get("guid")
        if not isinstance(phone, str) or not isinstance(body, str):
            yield _BadRow(line, 'expected "phone" and "text" as strings')
            continue
        if guid is not None and not isinstance(guid, str):
            yield _BadRow(line, '"guid" must be a string', phone)
            continue
        yield _Row(line, phone.strip(), body, guid.strip() if guid and guid.strip() else None)


class _BulkSource:
    """A send-bulk input that can be read twice (check, then send): the file, or stdin spooled.

    Stdin is spooled as the bytes it holds, so that both are decoded alike: UTF-8, a BOM
    dropped, and anything else refused as invalid input.
    """

    def __init__(self, name: str, fmt: FileFormat) -> None:
        self.name = name
        self._spool: IO[bytes] | None = None
        if name == "-":
            import shutil
            import tempfile

            # Closed in close(): it is read twice.
            self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
            shutil.copyfileobj(sys.stdin.buffer, self._spool)
        elif not Path(name).is_file():
            raise InvalidInputError(f"{name}: no such file", field="file", value=name)
        with self._open() as handle:
            head = handle.read(4096)
        self.format = _detect_format(name, head) if fmt is FileFormat.AUTO else fmt

    @contextlib.contextmanager
    def _open(self) -> Iterator[TextIO]:
        raw: IO[bytes]
        if self._spool is not None:
            raw = self._spool
            raw.seek(0)
        else:
            raw = open(self.name, "rb")  # noqa: SIM115 - closed below
        handle = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            yield handle
        except UnicodeDecodeError as exc:
            shown = "stdin" if self._spool is not None else self.name
            raise InvalidInputError(f"{shown} is not UTF-8 text: {exc.reason}") from None
        finally:
            # The spool is read again later: only the file is closed with its wrapper.
            if self._spool is not None:
                handle.detach()
            else:
                handle.close()

    def rows(self) -> Iterator[_Row | _BadRow]:
        with self._open() as handle:
            reader = _jsonl_rows if self.format is FileFormat.JSONL else _csv_rows
            yield from reader(handle)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()


@dataclass
class _Check:
    rows: int = 0
    parts: int = 0
    invalid: dict[int, _BadRow] = field(default_factory=dict)


def _check_rows(source: _BulkSource, client: FiboClient, bar: _Progress, bulk: bool) -> _Check:
    """Every row checked as the client will check it, before anything is sent."""
    from fibo_soap import phone as phones
    from fibo_soap import text as texts
    from fibo_soap.operations import MAX_MESSAGE_CHARS

    check = _Check()
    guids: dict[str, int] = {}
    for row in source.rows():
        check.rows += 1
        bar.advance()
        if isinstance(row, _BadRow):
            check.invalid[row.line] = row
            continue
        try:
            phones.normalize(row.phone, region=client.region, wire=client.wire_format)
            prepared = texts.prepare(row.text, accents=client.accents, max_parts=client.max_parts)
            if len(prepared) > MAX_MESSAGE_CHARS:
                raise InvalidInputError(
                    f"the text has {len(prepared)} characters; FIBO takes at most "
                    f"{MAX_MESSAGE_CHARS}"
                )
            if row.guid is not None and not bulk:
                texts.check_text(row.guid, field="guid")
                if row.guid in guids:
                    raise InvalidInputError(f"GUID {row.guid} already on line {guids[row.guid]}")
                guids[row.guid] = row.line
        except InvalidInputError as exc:
            check.invalid[row.line] = _BadRow(row.line, exc.detail, row.phone)
            continue
        check.parts += texts.segments(prepared).parts
    return check


@app.command(
    "send-bulk",
    epilog=_example(
        "fibo-sms send-bulk campaign.csv",
        "fibo-sms send-bulk --json - < messages.jsonl",
        "fibo-sms send-bulk --check campaign.csv",
    ),
)
@_common()
def send_bulk(
    run: Run,
    file: Annotated[
        str, typer.Argument(help="CSV (phone,text[,guid]) or JSON lines; - reads stdin.")
    ],
    fmt: Annotated[
        FileFormat, typer.Option("--format", help="File format (auto: by name, then content).")
    ] = FileFormat.AUTO,
    sender: Annotated[
        str | None,
        typer.Option("--sender", help="Registered sender name (default n/a).", show_default=False),
    ] = None,
    chunk_size: Annotated[
        int,
        typer.Option("--chunk-size", min=1, max=10000, help="Messages per request."),
    ] = DEFAULT_CHUNK,
    bulk: Annotated[
        bool,
        typer.Option(
            "--bulk", help="Use SendBulkSMS: no GUIDs, so messages cannot be followed up."
        ),
    ] = False,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Send the valid rows even when some are invalid."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--check", help="Check every row and count the parts; send nothing.")
    ] = False,
    service_type: ServiceTypeOption = None,
) -> None:
    """Send a file of messages, each with its own text and GUID (SendSMSWithMultiMessage).

    Every row is checked before anything is sent: by default one invalid row stops the command
    with nothing sent (exit 5); --skip-invalid sends the others. Rows go in chunks; GUIDs are
    made for rows without one. A failure part-way reports what was sent before it.
    """
    if bulk and sender is not None:
        raise ConfigError("--sender does not apply to --bulk (SendBulkSMS takes no sender)")
    _with_service_type(run, service_type)
    client = run.client()
    source = _BulkSource(file, fmt)
    try:
        with run.bar("checking", None) as bar:
            checked = _check_rows(source, client, bar, bulk)
        _send_checked(run, client, source, checked, sender, chunk_size, bulk, skip_invalid, dry_run)
    finally:
        source.close()


def _send_checked(
    run: Run,
    client: FiboClient,
    source: _BulkSource,
    checked: _Check,
    sender: str | None,
    chunk_size: int,
    bulk: bool,
    skip_invalid: bool,
    dry_run: bool,
) -> None:
    from fibo_soap.models import Message

    operation = "SendBulkSMS" if bulk else "SendSMSWithMultiMessage"
    valid = checked.rows - len(checked.invalid)
    results: dict[int, dict[str, Any]] = {
        line: {
            "line": line,
            "phone": bad.phone,
            "guid": None,
            "result": "invalid",
            "reason": bad.reason,
        }
        for line, bad in checked.invalid.items()
    }
    stop: BaseException | None = None
    if checked.invalid and not (skip_invalid or dry_run):
        stop = InvalidInputError(
            f"{len(checked.invalid)} of {checked.rows} rows are invalid; nothing was sent "
            "(fix them, or pass --skip-invalid to send the others)",
            field="file",
        )
    elif valid == 0 and not dry_run:
        stop = InvalidInputError(
            f"{source.name} has no message to send; nothing was sent", field="file"
        )

    if stop is None:
        chunk: list[tuple[_Row, Message]] = []
        with run.bar("sending" if not dry_run else "checked", valid) as bar:
            try:
                for row in source.rows():
                    if isinstance(row, _BadRow) or row.line in checked.invalid:
                        continue
                    guid = None if bulk else (row.guid or _new_guid())
                    if dry_run:
                        results[row.line] = _result(row, guid, "valid")
                        continue
                    chunk.append((row, Message(row.phone, row.text, guid)))
                    if len(chunk) >= chunk_size:
                        _send_chunk(run, client, chunk, sender, bulk, results)
                        bar.advance(len(chunk))
                        chunk = []
                if chunk:
                    _send_chunk(run, client, chunk, sender, bulk, results)
                    bar.advance(len(chunk))
                    chunk = []
            except (FiboError, KeyboardInterrupt) as exc:
                stop = exc
                unknown = isinstance(exc, AmbiguousSendError | KeyboardInterrupt) or (
                    isinstance(exc, TransportError | ProtocolError)
                    and getattr(exc, "request_sent", True)
                )
                # An AmbiguousSendError names the messages of the chunk that the client's
                # GetSMSStatus look-up found, and those it showed were not taken: only the rest
                # are unknown.
                found: set[str | None] = set()
                absent: set[str | None] = set()
                if isinstance(exc, AmbiguousSendError):
                    found, absent = set(exc.accepted), set(exc.unsent)
                for row, message in chunk:
                    if message.guid in found:
                        results[row.line] = _result(row, message.guid, "accepted")
                        results[row.line]["reason"] = "found at the gateway by GetSMSStatus"
                    elif message.guid in absent:
                        results[row.line] = _result(row, message.guid, "not_sent")
                        results[row.line]["reason"] = "absent at the gateway (GetSMSStatus)"
                    else:
                        kind = "unknown" if unknown else "not_sent"
                        results[row.line] = _result(row, message.guid, kind)
    if stop is not None:
        for row in source.rows():
            if isinstance(row, _Row) and row.line not in results:
                results[row.line] = _result(row, None, "not_sent")

    messages = [results[line] for line in sorted(results)]
    counts = {
        kind: sum(1 for m in messages if m["result"] == kind)
        for kind in ("accepted", "rejected", "invalid", "not_sent", "unknown", "valid")
    }
    # What the hint of a failure says: how many rows went, and which GUIDs to look up first.
    run.sent = counts["accepted"]
    run.in_flight = [m["guid"] for m in messages if m["result"] == "unknown" and m["guid"]]
    document = {
        "operation": operation,
        "file": source.name,
        "format": source.format.value,
        "dry_run": dry_run,
        "service_type": client.service_type,
        "rows": checked.rows,
        "parts": checked.parts,
        **counts,
        "messages": messages,
    }

    def human() -> None:
        problems = [m for m in messages if m["result"] not in ("accepted", "valid")]
        if problems:
            shown = problems[:_SHOWN_PROBLEMS]
            run.table(
                ["Line", "Phone", "GUID", "Result", "Reason"],
                [(m["line"], m["phone"], m["guid"], m["result"], m.get("reason")) for m in shown],
            )
            if len(problems) > len(shown):
                run.note(f"... and {len(problems) - len(shown)} more (--json lists them all)")
        summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n)
        verb = "checked" if dry_run else "sent"
        run.line(
            f"{source.name}: {checked.rows} rows {verb} with {operation} "
            f"({checked.parts} SMS parts): {summary or 'nothing'}"
        )

    run.emit(document, human)
    if stop is not None:
        raise stop
    if dry_run and checked.invalid:
        raise InvalidInputError(
            f"{len(checked.invalid)} of {checked.rows} rows are invalid", field="file"
        )


def _result(row: _Row, guid: str | None, result: str) -> dict[str, Any]:
    return {"line": row.line, "phone": row.phone, "guid": guid, "result": result, "reason": None}


def _send_chunk(
    run: Run,
    client: FiboClient,
    chunk: Sequence[tuple[_Row, Message]],
    sender: str | None,
    bulk: bool,
    results: dict[int, dict[str, Any]],
) -> None:
    messages = [message for _, message in chunk]
    if bulk:
        client.send_bulk_sms(messages)
        for row, _ in chunk:
            results[row.line] = _result(row, None, "accepted")
        return
    run.in_flight = [m.guid for m in messages if m.guid]
    receipt = client.send_multi_message(messages, sender_name=sender)
    rejected = set(receipt.rejected)
    for row, message in chunk:
        kind = "rejected" if message.guid in rejected else "accepted"
        results[row.line] = _result(row, message.guid, kind)
        if kind == "rejected":
            results[row.line]["reason"] = "rejected by FIBO (ListWrongPhoneNumber)"


# --- follow-up -----------------------------------------------------------------------------------


def _read_guids(values: Sequence[str]) -> list[str]:
    guids: list[str] = []
    for value in values:
        if value == "-":
            guids += _read_text(value, field="guids").split()
        else:
            guids.append(value)
    seen: dict[str, None] = dict.fromkeys(g.strip() for g in guids if g.strip())
    return list(seen)


def _query_statuses(client: FiboClient, guids: Sequence[str], bar: _Progress) -> list[SmsStatusRow]:
    rows: list[SmsStatusRow] = []
    for start in range(0, len(guids), STATUS_CHUNK):
        part = guids[start : start + STATUS_CHUNK]
        rows += client.get_sms_status(part)
        bar.advance(len(part))
    return rows


@app.command(
    epilog=_example(
        "fibo-sms status 5f0c1a6e-2b1d-4c3e-9a7f-0d3b2c1e4f5a",
        "fibo-sms send-bulk --json c.csv | jq -r '.messages[].guid' | fibo-sms status --wait -",
    )
)
@_common()
def status(
    run: Run,
    guids: Annotated[
        list[str], typer.Argument(help="GUIDs of sent messages; - reads them from stdin.")
    ],
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Poll until every known message is final.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="Seconds between polls with --wait.")
    ] = 5.0,
    max_wait: Annotated[
        float, typer.Option("--max-wait", min=0, help="Give up waiting after this many seconds.")
    ] = 600.0,
) -> None:
    """The delivery state of messages by GUID (GetSMSStatus); --wait polls until final."""
    wanted = _read_guids(guids)
    if not wanted:
        raise ConfigError("no GUID given")
    client = run.client()
    deadline = time.monotonic() + max_wait
    with run.bar("delivered" if wait else "querying", len(wanted)) as bar:
        while True:
            rows = _query_statuses(client, wanted, _Progress() if wait else bar)
            final = sum(1 for r in rows if r.status is not None and r.status.is_final)
            if wait:
                bar.update(completed=final)
            if not wait or final == len(rows) or time.monotonic() + interval > deadline:
                break
            time.sleep(interval)
    known = {r.guid for r in rows}
    unknown = [g for g in wanted if g not in known]

    def human() -> None:
        run.table(
            ["GUID", "Status", "Final", "Sender"],
            [
                (r.guid, r.status, r.status is not None and r.status.is_final, r.sender_name)
                for r in rows
            ]
            + [(g, "unknown", "", "") for g in unknown],
        )
        if unknown:
            run.note(f"{len(unknown)} GUID(s) unknown to FIBO")
        if wait and final < len(rows):
            run.note(f"{len(rows) - final} message(s) not final after {max_wait:g}s")

    run.emit(
        {
            "statuses": [_status_doc(r) for r in rows],
            "unknown": unknown,
            "all_final": final == len(rows) and not unknown,
        },
        human,
    )


MinutesOption = Annotated[
    int, typer.Option("--minutes", "-m", min=1, help="How far back to look, in minutes.")
]


@app.command(epilog=_example("fibo-sms sent --minutes 60"))
@_common()
def sent(run: Run, minutes: MinutesOption = 60) -> None:
    """Messages sent in the last N minutes (GetSMSSentList)."""
    rows = run.client().get_sent_list(minutes)
    run.emit(
        {"minutes": minutes, "messages": [_sent_doc(r) for r in rows]},
        lambda: _show_sent(run, rows, f"No message sent in the last {minutes} minutes."),
    )


@app.command(
    "sent-page",
    epilog=_example(
        "fibo-sms sent-page 1",
        "fibo-sms sent-page 2 --from 2024-05-01 --to 2024-05-31 --status SentFailed --key promo",
    ),
)
@_common()
def sent_page(
    run: Run,
    page: Annotated[int, typer.Argument(min=1, help="Page number, from 1 (20 messages a page).")],
    from_date: FromOption = None,
    to_date: ToOption = None,
    sms_status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only this status: a name (SentSuccess, SentFailed, ...) or number.",
            autocompletion=_complete_sms_status,
            show_default=False,
        ),
    ] = None,
    service_type: FilterServiceOption = None,
    key: KeyOption = "",
) -> None:
    """One page of sent messages, filtered (GetClientSMSListOfPage)."""
    from fibo_soap.models import SmsStatus

    wanted = _parse_status(sms_status, SmsStatus)
    rows = run.client().get_sent_page(
        page,
        from_date=from_date.date() if from_date else None,
        to_date=to_date.date() if to_date else None,
        status=wanted,
        service_type=service_type,
        key=key,
    )
    run.emit(
        {"page": page, "messages": [_sent_doc(r) for r in rows]},
        lambda: _show_sent(run, rows, f"Page {page} is empty."),
    )


@app.command(epilog=_example("fibo-sms pages", "fibo-sms pages --key promo"))
@_common()
def pages(run: Run, key: KeyOption = "") -> None:
    """How many pages of 20 the sent messages fill (GetTotalPageOfClientSMS)."""
    total = run.client().get_total_pages(key)
    run.emit(
        {"pages": total, "key": key},
        lambda: run.line(f"{total} page{'' if total == 1 else 's'} of 20 messages"),
    )


@app.command(epilog=_example("fibo-sms incoming --minutes 30"))
@_common()
def incoming(run: Run, minutes: MinutesOption = 60) -> None:
    """Messages received in the last N minutes (GetCommingSMSList)."""
    rows = run.client().get_incoming_list(minutes)
    run.emit(
        {"minutes": minutes, "messages": [_incoming_doc(r) for r in rows]},
        lambda: _show_incoming(run, rows, f"No message received in the last {minutes} minutes."),
    )


@app.command(
    "incoming-range",
    epilog=_example(
        "fibo-sms incoming-range --from 2024-05-01 --to 2024-05-31",
        "fibo-sms incoming-range --from 2024-05-01 --to 2024-05-01 --status Confirmed --key YES",
    ),
)
@_common()
def incoming_range(
    run: Run,
    from_date: Annotated[
        datetime, typer.Option("--from", help="First day (YYYY-MM-DD).", formats=_DATE_FORMATS)
    ],
    to_date: Annotated[
        datetime, typer.Option("--to", help="Last day (YYYY-MM-DD).", formats=_DATE_FORMATS)
    ],
    sms_status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only this status: a name (JustReceived, Confirmed, ...) or number.",
            autocompletion=_complete_incoming_status,
            show_default=False,
        ),
    ] = None,
    service_type: FilterServiceOption = None,
    key: KeyOption = "",
) -> None:
    """Messages received between two days, inclusive (GetClientCommingSMSNotDividePage)."""
    from fibo_soap.models import IncomingStatus

    wanted = _parse_status(sms_status, IncomingStatus)
    first: date = from_date.date()
    last: date = to_date.date()
    rows = run.client().get_incoming(first, last, status=wanted, service_type=service_type, key=key)
    run.emit(
        {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "messages": [_incoming_doc(r) for r in rows],
        },
        lambda: _show_incoming(run, rows, f"No message received from {first} to {last}."),
    )


# --- local commands ------------------------------------------------------------------------------


@app.command(
    epilog=_example(
        "fibo-sms estimate 'Xin chào, hẹn gặp lại'",
        "fibo-sms estimate --accents strip - < message.txt",
        "fibo-sms estimate --balance --service-type 1 'Sale ends today'",
    )
)
@_common()
def estimate(
    run: Run,
    text: Annotated[str, typer.Argument(help="The message; - reads it from stdin.")],
    accents: Annotated[
        AccentMode,
        typer.Option("--accents", help="Vietnamese accents: keep, strip, or strip if shorter."),
    ] = AccentMode.KEEP,
    with_balance: Annotated[
        bool,
        typer.Option(
            "--balance", help="Also look up the service type's balance (needs the account)."
        ),
    ] = False,
    service_type: ServiceTypeOption = None,
) -> None:
    """How many SMS parts a text costs and in which encoding (GSM-7 or UCS-2); sends nothing.

    Without --balance nothing leaves the machine and no account is needed; with it, the text is
    checked exactly as a send would check it and the parts are set against the balance
    (GetClientBalance).
    """
    from fibo_soap import text as texts
    from fibo_soap.operations import MAX_MESSAGE_CHARS

    body = _read_text(text)
    balance: int | None = None
    chosen: str | None = None
    if with_balance:
        _with_service_type(run, service_type)
        planned = run.client(accents=accents.value).estimate([body])
        cost, balance, chosen = planned.messages[0], planned.balance, planned.service_type
        prepared = texts.prepare(body, accents=accents.value, max_parts=sys.maxsize)
    else:
        prepared = texts.prepare(body, accents=accents.value, max_parts=sys.maxsize)
        cost = texts.segments(prepared)
    stripped = texts.strip_accents(prepared)
    alternative = texts.segments(stripped) if stripped != prepared else None
    too_long = len(prepared) > MAX_MESSAGE_CHARS
    document: dict[str, Any] = {
        "encoding": cost.encoding.value,
        "characters": cost.characters,
        "parts": cost.parts,
        "per_part": cost.per_part,
        "accents": accents.value,
        "too_long": too_long,
        "without_accents": None
        if alternative is None
        else {
            "encoding": alternative.encoding.value,
            "characters": alternative.characters,
            "parts": alternative.parts,
            "per_part": alternative.per_part,
        },
        "service_type": chosen,
        "balance": balance,
        "enough": None if balance is None else cost.parts <= balance,
    }

    def human() -> None:
        gsm = cost.encoding is texts.Encoding.GSM7
        run.line(
            f"{cost.parts} part{'s' if cost.parts != 1 else ''}, {'GSM-7' if gsm else 'UCS-2'}, "
            f"{cost.characters} {'septets' if gsm else 'UCS-2 units'} ({cost.per_part} per part)"
        )
        if alternative is not None and alternative.parts < cost.parts:
            plain = "GSM-7" if alternative.encoding is texts.Encoding.GSM7 else "UCS-2"
            run.note(f"without accents: {alternative.parts} part(s) in {plain} (--accents strip)")
        if too_long:
            run.note(f"too long for FIBO: {len(prepared)} characters, at most {MAX_MESSAGE_CHARS}")
        if balance is not None:
            run.line(f"balance {balance} on service type {chosen}")

    run.emit(document, human)


def _wsdl_location(url: str) -> str:
    if url.lower().startswith(("http://", "https://")) and "?" not in url:
        return url + "?WSDL"
    return url


@wsdl_app.command(
    "refresh",
    epilog=_example(
        "fibo-sms wsdl refresh http://center.fibosms.com/Service.asmx",
        "fibo-sms wsdl refresh --out ./Service.wsdl http://127.0.0.1:8091/Service.asmx?WSDL",
    ),
)
@_common(account=False)
def wsdl_refresh(
    run: Run,
    url: Annotated[
        str, typer.Argument(help="The service's URL (?WSDL is added) or a WSDL file to adopt.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to store it (default ~/.cache/fibo-sms/Service.wsdl, which every "
            "command then uses).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the WSDL.")
    ] = 60.0,
) -> None:
    """Fetch a live WSDL, check it has every method the client needs, and store it for use."""
    import tempfile

    from fibo_soap import wsdl

    location = _wsdl_location(url)
    run.hints = functools.partial(_wsdl_refresh_hint, location=location)
    if location.lower().startswith(("http://", "https://")):
        data = _fetch(location, timeout)
    else:
        try:
            data = Path(location).expanduser().read_bytes()
        except OSError as exc:
            raise InvalidInputError(
                f"cannot read {location}: {exc.strerror}", field="url"
            ) from None
    target = (out or config.cached_wsdl_path()).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, staged = tempfile.mkstemp(prefix=".Service-", suffix=".wsdl", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        document = wsdl.load_document(staged)
        missing = wsdl.missing_operations(document)
        if missing:
            raise ProtocolError(
                f"the WSDL at {location} lacks {len(missing)} method(s) the client needs: "
                f"{', '.join(missing)}; nothing was stored"
            )
        namespace = wsdl.target_namespace(document)
        kinds = _binding_names(document)
        os.replace(staged, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
    default = out is None
    absent = [kind for kind, name in kinds.items() if name is None]

    def human() -> None:
        run.line(f"stored the WSDL of {location} at {target}")
        run.line(f"namespace {namespace}; bindings: {', '.join(k for k, n in kinds.items() if n)}")
        if absent:
            run.note(f"no {', '.join(absent)} binding in it")
        if default:
            run.note(
                "every fibo-sms command now uses it; delete the file to go back to the bundled one"
            )
        else:
            run.note(
                f"use it with FIBO_WSDL={target}, --wsdl {target}, or wsdl = '{target}' in the "
                "config file"
            )

    run.emit(
        {
            "source": location,
            "path": str(target),
            "namespace": namespace,
            "bindings": kinds,
            "default": default,
        },
        human,
    )


def _wsdl_refresh_hint(exc: BaseException, *, location: str) -> str | None:
    """What to do when `wsdl refresh` failed: about its URL or file argument, which is all it
    uses (not FIBO_ENDPOINT, not --protocol)."""
    if isinstance(exc, ConnectError):
        return (
            f"cannot reach {location}: check the URL argument and the network; nothing was stored"
        )
    if isinstance(exc, TimeoutError):
        return f"{location} did not answer in time: retry, or raise `wsdl refresh --timeout`"
    if isinstance(exc, TransportError):
        return (
            f"check the URL argument ({location}): give the service's Service.asmx address "
            "(?WSDL is added) or a WSDL file; nothing was stored"
        )
    if isinstance(exc, ProtocolError):
        return (
            f"{location} is not a WSDL of FIBO's service with every method the client needs: "
            "check the URL or file argument; nothing was stored"
        )
    if isinstance(exc, InvalidInputError):
        return f"check the file argument ({location}); nothing was stored"
    return None


def _fetch(url: str, timeout: float) -> bytes:
    from fibo_soap import codec
    from fibo_soap.errors import HttpStatusError
    from fibo_soap.protocols.transport import HttpTransport

    transport = HttpTransport(read_timeout=timeout, max_response_bytes=codec.MAX_XML_BYTES)
    try:
        response = transport.request("GET", url)
    finally:
        transport.close()
    if response.status != 200:
        raise HttpStatusError(f"{url} answered HTTP {response.status}", status=response.status)
    return response.content


_KIND_KEYS: Final = {
    "SOAP 1.1": "soap11",
    "SOAP 1.2": "soap12",
    "HTTP GET": "get",
    "HTTP POST": "post",
}


def _binding_names(document: Any) -> dict[str, str | None]:
    from fibo_soap import wsdl

    names: dict[str, str | None] = {}
    for kind in wsdl.BindingKind:
        try:
            names[_KIND_KEYS[kind.value]] = wsdl.binding_qname(wsdl.find_binding(document, kind))
        except ProtocolError:
            names[_KIND_KEYS[kind.value]] = None
    return names


@wsdl_app.command(
    "show",
    epilog=_example("fibo-sms wsdl show", "fibo-sms wsdl show --wsdl ./Service.wsdl --json"),
)
@_common(account=False)
def wsdl_show(
    run: Run,
    location: Annotated[
        str | None,
        typer.Option(
            "--wsdl",
            help="WSDL path or URL (default: FIBO_WSDL, the config file, the refreshed one, "
            "else the bundled one).",
            show_default=False,
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="TOML config file.", dir_okay=False, show_default=False),
    ] = None,
) -> None:
    """The operations and bindings of the WSDL the client uses."""
    from fibo_soap import wsdl
    from fibo_soap.operations import OPERATIONS

    run.flags = config.Flags(config=config_file, wsdl=location)
    chosen = run.settings(need_account=False).wsdl
    path = chosen or str(wsdl.bundled_wsdl_path())
    document = wsdl.load_document(path)
    kinds = _binding_names(document)
    operations: dict[str, dict[str, Any]] = {}
    for key, qname in kinds.items():
        if qname is None:
            continue
        binding = document.bindings.get(qname)
        if binding is None:
            continue
        for name in cast(Any, binding).all():
            entry = operations.setdefault(
                str(name),
                {
                    "name": str(name),
                    "params": [],
                    "bindings": [],
                    "used_by_client": name in OPERATIONS,
                },
            )
            entry["bindings"].append(key)
            if not entry["params"]:
                entry["params"] = list(wsdl.operation_params(binding, str(name)))
    missing = [name for name in OPERATIONS if name not in operations]
    document_out = {
        "location": path,
        "source": _source(run, "wsdl", "bundled"),
        "namespace": wsdl.target_namespace(document),
        "bindings": kinds,
        "operations": list(operations.values()),
        "missing": missing,
    }

    def human() -> None:
        run.line(f"{path} ({document_out['source']})")
        run.line(f"namespace {document_out['namespace']}")
        run.table(["Binding", "Name"], [(k, n if n else "(absent)") for k, n in kinds.items()])
        run.table(
            ["Operation", "Parameters", "Bindings", "Used"],
            [
                (o["name"], ", ".join(o["params"]), " ".join(o["bindings"]), o["used_by_client"])
                for o in operations.values()
            ],
        )
        if missing:
            run.warn(f"the client needs methods this WSDL lacks: {', '.join(missing)}")

    run.emit(document_out, human)


def _fault_rule(text: str) -> Any:
    """A fault rule (emulator.faults.Fault) from its spec: the parser of `emulator --fault` and
    `fault add`, so that a rule that cannot be is refused before anything starts or is sent."""
    try:
        from fibo_soap.emulator.faults import Fault
    except ImportError as exc:
        raise typer.BadParameter(
            f"faults need the emulator's extra: pip install 'fibo-soap[emulator]' ({exc})"
        ) from None
    try:
        return Fault.from_spec(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: {exc}") from None


@app.command(
    epilog=_example(
        "fibo-sms emulator --port 8091 --db /tmp/fibo.sqlite",
        "FIBO_ENDPOINT=http://127.0.0.1:8091/Service.asmx fibo-sms check",
    )
)
@_common(account=False)
def emulator(
    run: Run,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")
    ] = 8091,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            help="SQLite file to keep state in (default: a temporary one, deleted when it stops).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    delivery_delay: Annotated[
        float | None,
        typer.Option(
            "--delivery-delay",
            min=0,
            help="Seconds before a sent message reaches its final status.",
            show_default=False,
        ),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            help="Seed the account with the password in this file (default: a generated one).",
            dir_okay=False,
            exists=True,
            show_default=False,
        ),
    ] = None,
    faults: Annotated[
        list[Any] | None,
        typer.Option(
            "--fault",
            parser=_fault_rule,
            metavar="RULE",
            help="A fault set before it serves, as `fibo-sms fault add` spells it: "
            "KIND[,method=M][,protocol=P][,times=N][,seconds=S]. Repeatable.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a local FIBO service (all four protocols) until interrupted."""
    try:
        from fibo_soap.emulator import Emulator, serve
        from fibo_soap.emulator.server import announcement
    except ImportError as exc:
        raise ConfigError(
            f"the emulator needs its extra: pip install 'fibo-soap[emulator]' ({exc})"
        ) from None
    options: dict[str, Any] = {}
    if delivery_delay is not None:
        options["delivery_delay"] = delivery_delay
    if password_file is not None:
        # Read as the client reads it, so that one file serves both (README's session does so).
        options["client_pass"], warnings = config.read_password_file(
            password_file, setting="--password-file"
        )
        for warning in warnings:
            run.warn(warning)
    if run.quiet:
        # Quiet, the emulator says nothing, not even what a client needs to reach it.
        hidden = []
        if password_file is None and (db is None or not db.exists()):
            hidden.append("the password it generates (give one with --password-file)")
        if port == 0:
            hidden.append("the port it takes (give one with --port)")
        if hidden:
            run.warn(f"--quiet hides {' and '.join(hidden)}")
    started = False

    def listening(emulator: Emulator) -> None:
        nonlocal started
        started = True
        # Bound, not yet serving: the first call already meets the rules.
        for rule in faults or ():
            emulator.faults.insert(rule)
        # Printed once it listens, and flushed: a script reads the endpoint and password from it.
        run.emit(
            {
                "endpoint": emulator.endpoint,
                "host": emulator.host,
                "port": emulator.port,
                "client_no": emulator.client_no,
                "client_pass": emulator.client_pass,
                "admin": emulator.admin,
                "faults": [rule.to_dict() for rule in emulator.faults.rules()],
            },
            lambda: print(announcement(emulator), flush=True),
        )

    from fibo_soap.emulator.store import StoreFileError

    try:
        cast(Any, serve)(
            host=host,
            port=port,
            db=db,
            announce=lambda line: None,  # said by listening, as the output options want
            listening=listening,
            **options,
        )
    except StoreFileError as exc:
        raise ConfigError(
            str(exc),
            hint="give --db a file the emulator made, or the path of a new one (none: a "
            "temporary one)",
        ) from None
    except (ValueError, OSError) as exc:
        if started:
            raise
        # Before it announces anything, the emulator fails only on its options: a --db whose
        # account holds another password than --password-file's, or a port it cannot listen on.
        if isinstance(exc, OSError):
            raise ConfigError(
                f"cannot listen on {host} port {port}: {exc.strerror or exc}",
                hint="choose another --port (0: any free one), or stop what listens there",
            ) from None
        raise ConfigError(
            str(exc),
            hint=f"start it with the password {db} was seeded with (or without --password-file "
            "to keep it), or with another --db",
        ) from None


fault_app = _subgroup(
    "fault", "The fault rules of a running emulator, through its admin API: add, list, clear."
)

#: Where `fault` finds the emulator when neither --emulator nor FIBO_ENDPOINT says.
DEFAULT_EMULATOR: Final = "http://127.0.0.1:8091"

EmulatorOption = Annotated[
    str | None,
    typer.Option(
        "--emulator",
        help=f"The emulator: its Service.asmx URL or its address (env {config.ENV_ENDPOINT}; "
        f"default {DEFAULT_EMULATOR}).",
        show_default=False,
    ),
]


def _admin_faults(run: Run, emulator: str | None) -> str:
    """The URL of the fault rules of the emulator that --emulator or FIBO_ENDPOINT names."""
    import urllib.parse

    from_env = os.environ.get(config.ENV_ENDPOINT)
    if emulator:
        given, where = emulator, "--emulator"
    elif from_env:
        given, where = from_env, config.ENV_ENDPOINT
    else:
        given, where = DEFAULT_EMULATOR, ""
    parts = urllib.parse.urlsplit(given)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where or 'the emulator'} is not an http(s) URL: {given!r}",
            hint="give --emulator http://HOST:PORT, as `fibo-sms emulator` announces it",
        )
    url = f"{parts.scheme}://{parts.netloc}/_emulator/faults"

    def hint(exc: BaseException) -> str | None:
        if isinstance(exc, TransportError | ProtocolError):
            origin = f"{parts.scheme}://{parts.netloc}"
            fix = "check --emulator" if emulator else "name the one that runs with --emulator"
            named = f" (from {where})" if where else ""
            return (
                f"no emulator answers at {origin}{named}: start one (`fibo-sms emulator`), or {fix}"
            )
        return None

    run.hints = hint
    return url


def _admin(url: str, method: str, body: Mapping[str, Any] | None = None) -> Any:
    """One call of the emulator's admin API: its JSON answer. ConnectError or TimeoutError when
    nothing answers, ProtocolError when what answers is not the admin API."""
    import builtins
    import json
    import urllib.error
    import urllib.request

    from fibo_soap.codec import excerpt

    data = None if body is None else json.dumps(body).encode()
    headers = {} if data is None else {"Content-Type": "application/json"}
    # The URL's scheme was checked to be http(s) by _admin_faults.
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            raw = answer.read()
    except urllib.error.HTTPError as exc:
        raise ProtocolError(
            f"{method} {url} answered HTTP {exc.code}", status=exc.code, excerpt=excerpt(exc.read())
        ) from None
    except builtins.TimeoutError:  # the one named TimeoutError here is FIBO's
        raise TimeoutError(f"{method} {url}: no answer in 10 s") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectError(f"{method} {url}: {reason}") from None
    try:
        return json.loads(raw)
    except ValueError:
        raise ProtocolError(f"{method} {url} answered no JSON", excerpt=excerpt(raw)) from None


def _show_faults(run: Run, rules: Sequence[Mapping[str, Any]], empty: str) -> None:
    if not rules:
        run.line(empty)
        return
    run.table(
        ["id", "kind", "method", "protocol", "times", "seconds"],
        (
            [
                rule["id"],
                rule["kind"],
                rule["method"],
                rule["protocol"],
                "always" if rule["times"] is None else rule["times"],
                rule["seconds"],
            ]
            for rule in rules
        ),
    )


@fault_app.command(
    "add",
    epilog=_example(
        "fibo-sms fault add close_after,method=SendSMS,protocol=soap11,times=1",
        "fibo-sms fault add latency,seconds=2 http_500,protocol=get,times=3",
    ),
)
@_common(account=False)
def fault_add(
    run: Run,
    rules: Annotated[
        list[Any],
        typer.Argument(
            parser=_fault_rule,
            metavar="RULE",
            help="KIND[,method=M][,protocol=P][,times=N][,seconds=S]. KIND: latency (seconds "
            "late), http_500, soap_fault, close_before (nothing stored), close_after (stored, "
            "then the connection drops), truncate, bad_inner_xml. M: a wire method; P: soap11, "
            "soap12, get or post (both * by default); times: the next N matching calls "
            "(default always).",
            show_default=False,
        ),
    ],
    emulator: EmulatorOption = None,
) -> None:
    """Add fault rules to a running emulator. Each fires on the calls it matches, from the next
    one on; the rules are checked whole before any is added."""
    url = _admin_faults(run, emulator)
    added = [_admin(url, "POST", rule.to_dict()) for rule in rules]
    run.emit({"faults": added}, lambda: _show_faults(run, added, ""))


@fault_app.command("list", epilog=_example("fibo-sms fault list", "fibo-sms fault list --json"))
@_common(account=False)
def fault_list(run: Run, emulator: EmulatorOption = None) -> None:
    """The fault rules of a running emulator, oldest first, with the calls each has left."""
    rules = _admin(_admin_faults(run, emulator), "GET")
    run.emit({"faults": rules}, lambda: _show_faults(run, rules, "no faults"))


@fault_app.command("clear", epilog=_example("fibo-sms fault clear"))
@_common(account=False)
def fault_clear(run: Run, emulator: EmulatorOption = None) -> None:
    """Remove every fault rule of a running emulator: its calls answer normally again."""
    rules = _admin(_admin_faults(run, emulator), "DELETE")
    run.emit({"faults": rules}, lambda: run.line("no faults"))


@app.command(
    epilog=_example("fibo-sms demo", "fibo-sms demo --json | jq '.protocols[].operations'")
)
@_common(account=False)
def demo(run: Run) -> None:
    """Walk every operation through the client against the bundled emulator (no account, no
    network): account check, sender names, balances, an estimate, each kind of send, a rejected
    recipient, delivery statuses, an incoming SMS and paging, over SOAP 1.1 and HTTP GET.

    Each step prints a table as it is done; --json prints the whole walk as one document instead
    (each step's rows, and the wire methods each protocol called), --quiet nothing but errors."""
    try:
        from fibo_soap.demo import walk_demo
    except ImportError as exc:
        raise ConfigError(
            f"the demo needs the emulator extra: pip install 'fibo-soap[emulator]' ({exc})"
        ) from None
    done = walk_demo(_stdout_console(quiet=run.json or run.quiet))
    run.emit(done.as_dict(), lambda: None)  # the steps were printed as they were done


# --- campaigns -----------------------------------------------------------------------------------

campaign_app = _subgroup(
    "campaign",
    "Large sends from a CSV file, journaled: send, resume after any stop, follow delivery, export.",
)

_BAR_SECONDS: Final = 0.1
_SHOWN_REFUSALS: Final = 20

JournalArgument = Annotated[
    Path, typer.Argument(help="The campaign's journal (SQLite).", dir_okay=False)
]
ChunkOption = Annotated[
    int | None,
    typer.Option(
        "--chunk-size",
        min=1,
        max=10000,
        help="Messages per request (default 500).",
        show_default=False,
    ),
]
ConcurrencyOption = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        min=1,
        max=64,
        help="Requests in flight at once (default 4).",
        show_default=False,
    ),
]
SettleOption = Annotated[
    float | None,
    typer.Option(
        "--settle",
        min=0,
        help="Seconds to wait before believing GetSMSStatus when it says a message a stopped run "
        "may have sent is absent (default 2).",
        show_default=False,
    ),
]


class _CampaignBar:
    """The live line of a campaign: done of total, accepted, rejected, the rest, rate, ETA."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self._progress = progress
        self._task = task
        self._last = 0.0
        self._started = time.monotonic()
        self.done = 0
        self.counts: Counter[str] = Counter()

    def add(self, state: str) -> None:
        self.done += 1
        self.counts[state] += 1
        if self._progress is not None:
            now = time.monotonic()
            if now - self._last >= _BAR_SECONDS:
                self._last = now
                self._show(now)

    def _show(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        rest = self.done - self.counts["accepted"] - self.counts["rejected"]
        self._progress.update(
            self._task,
            completed=self.done,
            accepted=self.counts["accepted"],
            rejected=self.counts["rejected"],
            other=rest,
            rate=f"{self.done / elapsed:,.0f}",
        )

    def finish(self) -> None:
        if self._progress is not None:
            self._show(time.monotonic())
            self._progress.update(self._task, total=max(self.done, 1), completed=self.done)


@contextlib.contextmanager
def _campaign_bar(run: Run, description: str, total: int | None) -> Iterator[_CampaignBar]:
    show = run.progress
    if show is None:
        show = run.stderr.is_terminal and not run.quiet
    if not show:
        yield _CampaignBar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True, force_terminal=True if run.progress else None)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=12),
        MofNCompleteColumn(),
        TextColumn(
            "accepted {task.fields[accepted]} rejected {task.fields[rejected]} "
            "other {task.fields[other]}"
        ),
        TextColumn("{task.fields[rate]}/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(
            description, total=total, accepted=0, rejected=0, other=0, rate="0"
        )
        bar = _CampaignBar(progress, task)
        yield bar
        bar.finish()


def _campaign_hint(journal: Path) -> str:
    return f"fibo-sms campaign resume {journal}"


def _run_campaign(
    run: Run, campaign: Any, client: FiboClient, *, total: int | None, resumed: bool
) -> None:
    """Send (or resume) a campaign with a progress line; print its summary; exit by how it
    ended (0 all settled, 4 balance, 9 messages of unknown fate, else the stopping error's)."""
    journal = campaign.journal.path
    sending = campaign.send(client)
    try:
        with _campaign_bar(run, "resuming" if resumed else "sending", total) as bar:
            for outcome in sending:
                bar.add(outcome.state.value)
    except KeyboardInterrupt:
        run.note(f"interrupted; the journal has every message sent: {_campaign_hint(journal)}")
        raise
    summary = sending.summary
    states = campaign.journal.counts()
    document = {
        "journal": str(journal),
        "file": str(campaign.source.path),
        "resuming": resumed,
        **summary.as_dict(),
        "journal_states": {state.value: n for state, n in states.items()},
    }

    def human() -> None:
        run.line(
            f"{journal}: {summary.total} messages, {summary.accepted} accepted, "
            f"{summary.rejected} rejected, {summary.refused} refused, "
            f"{summary.not_sent} not sent, {summary.ambiguous} unknown"
            + (f" ({summary.resumed} from earlier runs)" if summary.resumed else "")
        )
        run.line(
            f"{summary.requests} requests in {summary.elapsed:.1f}s, "
            f"{summary.rate:,.0f} messages/s"
            + ("" if summary.balance is None else f"; balance left {summary.balance}")
        )
        if summary.complete:
            run.note(f"follow delivery with: fibo-sms campaign status {journal}")

    run.emit(document, human)
    _campaign_end(run, summary, journal)


def _campaign_end(run: Run, summary: Any, journal: Path) -> None:
    if summary.complete:
        return
    if summary.stopped == "balance":
        code = ExitCode.BALANCE
        message = f"the balance ran out: {summary.accepted} accepted, {summary.not_sent} not sent"
        hint = f"top up the balance (fibo-sms balance), then: {_campaign_hint(journal)}"
    elif summary.error is not None:
        code = exit_code_for(summary.error)
        message = f"the campaign stopped: {summary.error}"
        hint = f"{summary.not_sent} not sent; once fixed: {_campaign_hint(journal)}"
    else:
        code = ExitCode.AMBIGUOUS_SEND
        message = f"{summary.ambiguous} message(s) may or may not have reached FIBO"
        hint = f"{_campaign_hint(journal)} looks them up first and sends only the absent ones"
    if summary.ambiguous and code is not ExitCode.AMBIGUOUS_SEND:
        hint += f" ({summary.ambiguous} of unknown fate are looked up first)"
    message, hint = _redact(message, run.secrets()), _redact(hint, run.secrets())
    if run.json:
        import json

        error = summary.error
        document = {
            "error": {
                "type": type(error).__name__ if error is not None else "CampaignIncomplete",
                "exit_code": int(code),
                "message": message,
                "hint": hint,
                "operation": getattr(error, "operation", None),
                "code": getattr(error, "code", None),
            }
        }
        sys.stderr.write(json.dumps(document, ensure_ascii=False) + "\n")
    else:
        run.stderr.print(f"error: {message}", markup=False, style="bold red")
        run.stderr.print(f"hint: {hint}", markup=False)
    raise typer.Exit(int(code))


def _read_template(template: str | None, template_file: Path | None) -> str | None:
    if template is not None and template_file is not None:
        raise ConfigError("give --template or --template-file, not both")
    if template_file is None:
        return template
    try:
        body = template_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {template_file}: {exc}", field="template") from None
    return body[:-1] if body.endswith("\n") else body


@campaign_app.command(
    "send",
    epilog=_example(
        "fibo-sms campaign send customers.csv --template 'Xin chào {name}, ...' "
        "--journal campaign.db",
        "fibo-sms campaign send customers.csv --template 'Xin chào {name}' --dry-run",
        "fibo-sms campaign send alerts.csv --phone-column msisdn --journal alerts.db",
    ),
)
@_common()
def campaign_send(
    run: Run,
    file: Annotated[
        Path,
        typer.Argument(help="CSV file with a header; one message per row.", dir_okay=False),
    ],
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            "-t",
            help="The text, with {column} placeholders filled from each row (default: the "
            "file's text column).",
            show_default=False,
        ),
    ] = None,
    template_file: Annotated[
        Path | None,
        typer.Option(
            "--template-file",
            help="Read the template from a file.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    journal: Annotated[
        Path | None,
        typer.Option(
            "--journal",
            "-j",
            help="Journal to write (default FILE.campaign.db); an existing journal of the same "
            "file and template resumes it.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    phone_column: Annotated[
        str | None,
        typer.Option(
            "--phone-column",
            help="Column of the phone numbers (default: phone, number, ...).",
            show_default=False,
        ),
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option(
            "--text-column",
            help="Column of the texts, without --template (default: text, message, ...).",
            show_default=False,
        ),
    ] = None,
    sender: Annotated[
        str | None,
        typer.Option("--sender", help="Registered sender name (default n/a).", show_default=False),
    ] = None,
    chunk_size: ChunkOption = None,
    concurrency: ConcurrencyOption = None,
    settle: SettleOption = None,
    bulk: Annotated[
        bool,
        typer.Option(
            "--bulk",
            help="Use SendBulkSMS: no GUIDs, so nothing can be looked up after a failure.",
        ),
    ] = False,
    no_balance_check: Annotated[
        bool,
        typer.Option(
            "--no-balance-check", help="Do not read the balance first; FIBO's 102/104 still stop."
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check every row, count parts and cost against the balance; send nothing.",
        ),
    ] = False,
    service_type: ServiceTypeOption = None,
) -> None:
    """Send one SMS per row of a CSV file, journaled (SendSMSWithMultiMessage, in chunks).

    Each message gets a GUID fixed by the campaign and its row, and its journal row is written
    before it is sent. If the run stops for any reason (a crash, a kill, the network, the
    balance), `fibo-sms campaign resume JOURNAL` (or this same command) looks up what was in
    flight and sends only what FIBO never took: nothing twice, nothing lost.
    """
    from fibo_soap.campaign import Campaign, CsvSource

    if bulk and sender is not None:
        raise ConfigError("--sender does not apply to --bulk (SendBulkSMS takes no sender)")
    text = _read_template(template, template_file)
    source = CsvSource.open(file, template=text, phone_column=phone_column, text_column=text_column)
    _with_service_type(run, service_type)
    client = run.client()
    if dry_run:
        _campaign_dry_run(run, client, source, check_balance=not no_balance_check)
        return
    options: dict[str, Any] = {
        "sender_name": sender,
        "bulk": bulk,
        "check_balance": not no_balance_check,
    }
    for key, value in (
        ("service_type", client.service_type),
        ("chunk_size", chunk_size),
        ("concurrency", concurrency),
        ("settle", settle),
    ):
        if value is not None:
            options[key] = value
    path = journal or file.with_name(file.name + ".campaign.db")
    campaign, resumed = Campaign.create(path, source, client_no=client.client_no, **options)
    try:
        if resumed:
            run.note(f"{path} already holds this campaign: resuming it")
        else:
            run.note(f"journal: {path}")
        _run_campaign(run, campaign, client, total=source.estimate_rows(), resumed=resumed)
    finally:
        campaign.close()


def _campaign_dry_run(run: Run, client: FiboClient, source: Any, *, check_balance: bool) -> None:
    from fibo_soap import text as texts
    from fibo_soap.campaign import Refusal, message_check
    from fibo_soap.operations import TEST_SERVICE_TYPE

    check = message_check(client)
    rows = valid = parts = 0
    refusals: list[dict[str, Any]] = []
    refused = 0
    with run.bar("checking", source.estimate_rows()) as bar:
        for index, entry in enumerate(source.messages()):
            rows += 1
            bar.advance()
            why = entry.reason if isinstance(entry, Refusal) else check(entry.phone, entry.text)
            if why is not None:
                refused += 1
                # --json lists every refusal; a table shows the first few.
                if run.json or len(refusals) < _SHOWN_REFUSALS:
                    refusals.append({"row": index + 1, "phone": entry.phone, "reason": why})
                continue
            valid += 1
            prepared = texts.prepare(entry.text, accents=client.accents, max_parts=client.max_parts)
            parts += texts.segments(prepared).parts
    chosen = client.service_type
    balance: int | None = None
    if check_balance and chosen != TEST_SERVICE_TYPE:
        balance = client.get_balance()
    document = {
        "dry_run": True,
        "file": str(source.path),
        "messages": rows,
        "valid": valid,
        "refused": refused,
        "parts": parts,
        "service_type": chosen,
        "balance": balance,
        "enough": None if balance is None else valid <= balance,
        "enough_by_parts": None if balance is None else parts <= balance,
        "refusals": refusals,
    }

    def human() -> None:
        if refusals:
            run.table(
                ["Row", "Phone", "Refused because"],
                [(r["row"], r["phone"], r["reason"]) for r in refusals],
            )
            if refused > len(refusals):
                run.note(
                    f"... and {refused - len(refusals)} more refused rows (--json lists them all)"
                )
        run.line(
            f"{source.path}: {rows} messages, {valid} to send ({parts} SMS parts), "
            f"{refused} refused; nothing sent"
        )
        if balance is not None:
            verdict = "enough" if valid <= balance else f"short by {valid - balance}"
            run.line(f"balance {balance} on service type {chosen}: {verdict}")
            if valid <= balance < parts:
                run.note("if FIBO charges per SMS part, the balance would not cover every part")

    run.emit(document, human)


@campaign_app.command(
    "resume",
    epilog=_example(
        "fibo-sms campaign resume campaign.db",
        "fibo-sms campaign resume campaign.db --concurrency 2",
    ),
)
@_common()
def campaign_resume(
    run: Run,
    journal: JournalArgument,
    chunk_size: ChunkOption = None,
    concurrency: ConcurrencyOption = None,
    settle: SettleOption = None,
) -> None:
    """Resume a campaign from its journal: look up (GetSMSStatus) what a stopped run left in
    flight, then send only what FIBO never took. Safe to run any number of times."""
    from fibo_soap.campaign import Campaign

    campaign = Campaign.open(journal)
    try:
        for key, value in (
            ("chunk_size", chunk_size),
            ("concurrency", concurrency),
            ("settle", settle),
        ):
            if value is not None:
                campaign.options[key] = value
        stored = campaign.options.get("service_type")
        if stored is not None:
            _with_service_type(run, str(stored))
        client = run.client()
        _run_campaign(run, campaign, client, total=campaign.source.estimate_rows(), resumed=True)
    finally:
        campaign.close()


@campaign_app.command(
    "status",
    epilog=_example(
        "fibo-sms campaign status campaign.db",
        "fibo-sms campaign status --wait --max-wait 600 campaign.db",
        "fibo-sms campaign status --local campaign.db",
    ),
)
@_common()
def campaign_status(
    run: Run,
    journal: JournalArgument,
    local: Annotated[
        bool,
        typer.Option("--local", help="Only count the journal's rows; ask FIBO nothing."),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", "-w", help="Poll until every message is final."),
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="Seconds between polls with --wait.")
    ] = 5.0,
    max_wait: Annotated[
        float, typer.Option("--max-wait", min=0, help="Give up waiting after this many seconds.")
    ] = 600.0,
    settle: SettleOption = None,
) -> None:
    """Reconcile a campaign: ask GetSMSStatus (500 GUIDs a request) about every message not yet
    final, update the journal, and show the counts per state and per delivery status."""
    from fibo_soap.campaign import DEFAULT_SETTLE, Journal, ReconcileReport, reconcile

    book = Journal(journal, create=False)
    try:
        if local:
            report = ReconcileReport(book.counts(), book.status_counts())
        else:
            stored = book.meta().get("options", {}).get("service_type")
            if stored is not None:
                _with_service_type(run, str(stored))
            client = run.client()
            deadline = time.monotonic() + max_wait
            while True:
                pending = sum(n for s, n in book.counts().items() if s.value == "accepted")
                with run.bar("reconciling", pending or None) as bar:
                    report = reconcile(
                        book,
                        client,
                        settle=DEFAULT_SETTLE if settle is None else settle,
                        progress=bar.advance,
                    )
                if not wait or report.all_final or time.monotonic() + interval > deadline:
                    break
                time.sleep(interval)
    finally:
        book.close()
    document = {"journal": str(journal), "reconciled": not local, **report.as_dict()}

    def human() -> None:
        run.table(
            ["State", "Messages"],
            [(state.value, n) for state, n in report.states.items() if n],
            title="Journal",
        )
        statuses = [
            ("(not looked up)" if s is None else s.fibo_name, n)
            for s, n in sorted(
                report.statuses.items(), key=lambda kv: -1 if kv[0] is None else kv[0]
            )
            if n
        ]
        if statuses:
            run.table(["Delivery status", "Messages"], statuses, title="At FIBO")
        if report.absent:
            run.note(
                f"{report.absent} message(s) a stopped run left open are not at FIBO: "
                f"{_campaign_hint(journal)} sends them"
            )
        if report.unknown:
            run.note(f"{report.unknown} accepted message(s) unknown to FIBO")
        if report.in_use:
            run.note("a run of this campaign is going on: its messages in flight are left to it")
        left = report.states
        to_send = sum(n for s, n in left.items() if s.value in ("queued", "not_sent"))
        if to_send:
            run.note(f"{to_send} message(s) still to send: {_campaign_hint(journal)}")
        if report.all_final:
            run.note("every message is final")

    run.emit(document, human)


@campaign_app.command(
    "export",
    epilog=_example(
        "fibo-sms campaign export campaign.db results.csv",
        "fibo-sms campaign export campaign.db - | grep ,failed,",
    ),
)
@_common(account=False)
def campaign_export(
    run: Run,
    journal: JournalArgument,
    out: Annotated[str, typer.Argument(help="CSV file to write; - writes to stdout.")],
) -> None:
    """Write the journal as CSV: row, guid, phone, state, sms_status, code, reason, attempts,
    updated. Needs no account."""
    from fibo_soap.campaign import Journal

    with Journal(journal, create=False) as book:
        if out == "-":
            count = book.export_csv(sys.stdout)
            sys.stdout.flush()
            run.note(f"{count} rows")
            return
        target = Path(out)
        try:
            with open(target, "w", encoding="utf-8", newline="") as handle:
                count = book.export_csv(handle)
        except OSError as exc:
            raise InvalidInputError(f"cannot write {target}: {exc.strerror}", field="out") from None
    run.emit(
        {"journal": str(journal), "out": str(target), "rows": count},
        lambda: run.line(f"wrote {count} rows to {target}"),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """The `fibo-sms` entry point."""
    app(args=list(argv) if argv is not None else None, prog_name="fibo-sms")


if __name__ == "__main__":  # pragma: no cover
    main()
