"""Structured logs (structlog) and the redaction of secrets and phone numbers.

The library configures nothing on import: events go wherever the application's structlog
configuration sends them, and nowhere until there is one. ``configure()`` is for applications and
the CLI.

Events (all with ``client_no`` bound, plus what the caller binds):

- ``fibo.call`` (info), one per call: operation, protocol, attempts, duration_ms, http_status,
  fibo_code, outcome (ok, refused, partial, failed, ambiguous), guids; for sends the masked phone
  (and the text, when the client has ``log_text=True``); error and detail when it failed;
  protocols when it fell back; confirmed and resent when GetSMSStatus was asked.
- ``fibo.attempt`` (debug), one per attempt: the same, per attempt, with next (retry, fallback,
  reconcile, raise), wait_ms, and maybe_sent for a send that failed.
- ``fibo.reconcile`` (info): what GetSMSStatus said after an uncertain send (asked, found, resend,
  next); the look-up's own events carry ``lookup_for`` (the send's operation).
- ``fibo.get_as_post`` (info): a GET whose URL would have been too long went as a POST form.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit
from xml.sax.saxutils import escape

# structlog (and rich, which its console renderer imports when installed) is imported when an
# event is first built, not with the library: a program that has not configured structlog has
# not imported it either, and gets no event (``enabled``).

LOGGER_NAME = "fibo_soap"
MASK = "***"

# Runs of 9 to 15 digits, optionally behind + or 84: what a phone number looks like in a body.
_PHONE_RUN = re.compile(r"(?<![\d])(\+?\d{4})(\d{2,8})(\d{3})(?![\d])")

# The password field however a text may carry it, whatever the password is: in a query string or
# form body (clientPass=…), or quoted back by ASP.NET's request validation, which cuts long values
# (clientPass="…..."), and so cannot be caught by matching the password itself.
_PASSWORD_FIELDS = (
    re.compile(r'(?i)(clientPass=")(?:.*?)(?="\))'),
    re.compile(r'(?i)(clientPass=)(?!")[^&\s]*'),
)

#: The loggers of the libraries under the client that write request lines (URLs) at DEBUG.

# The password as a SOAP request carries it: the text of its clientPass element, XML-escaped.
_XML_PASSWORD = re.compile(r"<(?:[\w.-]+:)?clientPass(?:\s[^>]*)?>([^<]*)</", re.IGNORECASE)


def get_logger(**context: Any) -> Any:
    """The library's structlog logger, with ``context`` bound (resolved lazily, on first use)."""
    import structlog

    return structlog.get_logger(LOGGER_NAME, **context)


class EventLogger:
    """The library's logger for one bound context, resolved once per structlog configuration.

    structlog's lazy proxy resolves the configuration again on every event; this resolves it
    when the configuration changes (``configure``, ``capture_logs``) and otherwise reuses it.
    """

    __slots__ = ("_context", "_factory", "_logger", "_processors", "_wrapper", "debug")

    def __init__(self, **context: Any) -> None:
        self._context = context
        self._processors: Any = None
        self._wrapper: Any = None
        self._factory: Any = None
        self._logger: Any = None
        #: False when the logger in force drops debug events (so none need be built); valid
        #: after ``get()``.
        self.debug = True

    @property
    def context(self) -> dict[str, Any]:
        """The bound context (a copy)."""
        return dict(self._context)

    def bind(self, **context: Any) -> EventLogger:
        """A logger with ``context`` bound on top of this one's."""
        return EventLogger(**{**self._context, **context})

    def get(self) -> Any:
        """The bound logger for the configuration in force."""
        import structlog

        config = structlog.get_config()
        processors = config["processors"]
        wrapper = config["wrapper_class"]
        factory = config["logger_factory"]
        if (
            processors is self._processors
            and wrapper is self._wrapper
            and factory is self._factory
            and self._logger is not None
        ):
            return self._logger
        logger = structlog.get_logger(LOGGER_NAME).bind(**self._context)
        check = getattr(logger, "is_enabled_for", None)
        debug = True
        if callable(check):
            try:
                debug = bool(check(logging.DEBUG))
            except Exception:  # noqa: BLE001 - a custom wrapper: assume it wants everything
                debug = True
        self._logger, self.debug = logger, debug
        self._processors, self._wrapper, self._factory = processors, wrapper, factory
        return logger


def enabled() -> bool:
    """True once the application (or ``configure``, or structlog's capture_logs) has configured
    structlog. Until then the library stays silent rather than print structlog's defaults to
    stdout, where a program's own output goes. (Not configured, then, where no one has imported
    structlog.)"""
    structlog = sys.modules.get("structlog")
    return structlog is not None and bool(structlog.is_configured())


def mask_phone(phone: str) -> str:
    """A phone number for a log line: first four and last three digits (``0909***628``)."""
    digits = phone.strip()
    if len(digits) < 8:
        return MASK
    return f"{digits[:4]}{MASK}{digits[-3:]}"


def secret_forms(secret: str) -> tuple[str, ...]:
    """Every spelling a secret can take on the wire: plain, URL-encoded, XML-escaped."""
    if not secret:
        return ()
    forms = {secret, quote(secret, safe=""), quote_plus(secret), escape(secret)}
    forms.add(escape(escape(secret)))
    return tuple(sorted(forms, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str], *, phones: bool = True) -> str:
    """``text`` with every spelling of each secret replaced, the value of any ``clientPass``
    field blanked, and phone numbers masked."""
    for secret in secrets:
        for form in secret_forms(secret):
            text = _mask_cut(text.replace(form, MASK), form)
    if "lientpass" in text.lower():
        for pattern in _PASSWORD_FIELDS:
            text = pattern.sub(rf"\g<1>{MASK}", text)
    if phones:
        text = _PHONE_RUN.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
    return text


#: The shortest start of a secret that is masked where an excerpt cuts the text off.
_MIN_CUT = 4


def _mask_cut(text: str, form: str) -> str:
    # An excerpt ends at a fixed length, possibly inside an echoed secret: a text that ends (or
    # ends before the excerpt's "…") with the start of a secret loses that start too.
    body, ellipsis = (text[:-1], "…") if text.endswith("…") else (text, "")
    for length in range(len(form) - 1, _MIN_CUT - 1, -1):
        if body.endswith(form[:length]):
            return body[:-length] + MASK + ellipsis
    return text


class _RequestSecrets:
    """The passwords one request carries, read from it the first time a record asks."""

    __slots__ = ("_body", "_found", "_url")

    def __init__(self, url: str, body: bytes | None) -> None:
        self._url, self._body = url, body
        self._found: tuple[str, ...] | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        if self._found is None:
            found = _request_passwords(self._url, self._body)
            self._found = tuple(dict.fromkeys(s for p in found for s in _with_reprs(p)))
            self._url, self._body = "", None
        return self._found


#: The request in progress in this context (task), whose password the HTTP library's own log
#: records about it are redacted of (see ``redacting_request``).
_REQUEST: ContextVar[_RequestSecrets | None] = ContextVar("fibo_soap_request", default=None)


@contextlib.contextmanager
def redacting_request(url: str, body: bytes | None) -> Iterator[None]:
    """Within the block, UrlSecretFilter redacts the password this request carries (its
    ``clientPass`` field: query, form or SOAP element) from the records it filters, in every
    spelling ``redact`` knows and as Python's reprs show it inside bytes and strings. The request
    is read only when such a record is written (a logger under the client enabled for it)."""
    token = _REQUEST.set(_RequestSecrets(url, body))
    try:
        yield
    finally:
        _REQUEST.reset(token)


def _request_passwords(url: str, body: bytes | None) -> list[str]:
    found = _form_passwords(urlsplit(url).query)
    text = body.decode("utf-8", "replace") if body else ""
    if text.lstrip("\ufeff \t\r\n").startswith("<"):
        found += [html.unescape(value) for value in _XML_PASSWORD.findall(text)]
    else:
        found += _form_passwords(text)
    return [password for password in found if password]


def _form_passwords(form: str) -> list[str]:
    if "lientpass" not in form.lower():
        return []
    return [v for k, v in parse_qsl(form, keep_blank_values=True) if k.lower() == "clientpass"]


def _with_reprs(secret: str) -> list[str]:
    # httpcore shows what came over the wire as bytes reprs, and h11's errors reach the log inside
    # an exception's repr: a spelling may come as repr shows it inside bytes or a str, and that
    # inside a str again.
    forms = secret_forms(secret)
    once = {s for form in forms for s in (*_as_shown(form, in_bytes=True), *_as_shown(form))}
    twice = {s for text in once for s in _as_shown(text)}
    shown = sorted((once | twice) - {secret, *forms}, key=len, reverse=True)
    return [secret, *shown]


def _as_shown(text: str, *, in_bytes: bool = False) -> tuple[str, str]:
    # As repr writes ``text`` (or its UTF-8) inside a longer str (or bytes): with a single quote
    # escaped and not, since repr picks its quotes for the whole of what it shows.
    escaped = repr(b'"' + text.encode())[3:-1] if in_bytes else repr('"' + text)[2:-1]
    return escaped, escaped.replace("\\'", "'")


def _args_texts(args: Any) -> list[str]:
    values = args.values() if isinstance(args, dict) else args if isinstance(args, tuple) else ()
    return [str(value) for value in values]


class UrlSecretFilter(logging.Filter):
    """Blanks the ``clientPass`` value and masks phone numbers in a log record's text, and redacts
    the password of the request in progress (``redacting_request``).

    httpx writes every request line, query string included, and a GET call carries the
    password in its query string; httpcore's DEBUG trace writes what a broken answer sent, an
    echoed password included. The clients put this filter on those loggers; it costs nothing
    unless a logger is enabled for the record's level. A record that held a secret keeps its
    redacted text as its message, without args.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Always True (the record is kept), with its text redacted."""
        scope = _REQUEST.get()
        secrets = scope.secrets if scope is not None else ()
        message = record.getMessage()
        cleaned = redact(message, secrets)
        if cleaned != message or any(
            redact(text, secrets) != text for text in _args_texts(record.args)
        ):
            record.msg, record.args = cleaned, None
        return True


def guard_loggers(names: Iterable[str]) -> None:
    """Put UrlSecretFilter on each named logger, once (a filter acts only on records logged on
    its own logger, not on those of its children)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, UrlSecretFilter) for f in logger.filters):
            logger.addFilter(UrlSecretFilter())


def configure(
    *, json: bool = False, level: str | int = "INFO", stream: TextIO | None = None
) -> None:
    """Set up structlog for an application: console or JSON lines on ``stream`` (stderr), at
    ``level`` (``DEBUG`` shows one event per attempt, ``INFO`` one per call)."""
    import structlog

    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    out = stream if stream is not None else sys.stderr
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
