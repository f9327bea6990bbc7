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

import logging
import re
import sys
from collections.abc import Hashable, Iterable
from typing import Any, TextIO
from urllib.parse import quote, quote_plus
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


def get_logger(**context: Any) -> Any:
    """The library's structlog logger, with ``context`` bound (resolved lazily, on first use)."""
    import structlog

    return structlog.get_logger(LOGGER_NAME, **context)


class EventLogger:
    """The library's logger for one bound context, resolved once per structlog configuration.

    structlog's lazy proxy resolves the configuration again on every event; this resolves it
    when the configuration changes (``configure``, ``capture_logs``) and otherwise reuses it.
    """

    __slots__ = ("_context", "_factory", "_fixed", "_logger", "_processors", "_wrapper", "debug")

    def __init__(self, **context: Any) -> None:
        self._context = context
        self._processors: Any = None
        self._wrapper: Any = None
        self._factory: Any = None
        self._logger: Any = None
        self._fixed: dict[Hashable, Any] = {}
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
        self._fixed = {}
        self._processors, self._wrapper, self._factory = processors, wrapper, factory
        return logger

    def fixed(self, key: Hashable) -> Any:
        """The logger ``fix`` kept under ``key``, or None. Valid after ``get()``, which lets go
        of them all when the configuration changes."""
        return self._fixed.get(key)

    def fix(self, key: Hashable, **fields: Any) -> Any:
        """The logger in force with ``fields`` bound, kept under ``key``.

        The fields of an event that repeat from call to call (operation, protocol, outcome) are
        bound once: structlog then copies them as one dict on each event, instead of repacking
        each as a keyword at every level of its wrapper's methods.
        """
        if len(self._fixed) >= _FIXED_MOST:
            self._fixed.clear()
        logger = self._fixed[key] = self.get().bind(**fields)
        return logger


#: Loggers with fixed fields one ``EventLogger`` keeps at most (their keys come from a few
#: operations, protocols and outcomes; the bound only guards against an unexpected spread).
_FIXED_MOST = 256


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
