"""Structured logs (structlog) and the redaction of secrets and phone numbers.

The library configures nothing on import: events go wherever the application's structlog
configuration sends them. ``configure()`` is for applications and the CLI.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape

import structlog

LOGGER_NAME = "fibo_soap"
MASK = "***"

# Runs of 9 to 15 digits, optionally behind + or 84: what a phone number looks like in a body.
_PHONE_RUN = re.compile(r"(?<![\d])(\+?\d{4})(\d{2,8})(\d{3})(?![\d])")


def get_logger(**context: Any) -> Any:
    """The library's structlog logger, with ``context`` bound."""
    return structlog.get_logger(LOGGER_NAME).bind(**context)


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
    """``text`` with every spelling of each secret replaced, and phone numbers masked."""
    for secret in secrets:
        for form in secret_forms(secret):
            text = text.replace(form, MASK)
    if phones:
        text = _PHONE_RUN.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
    return text


def configure(*, json: bool = False, level: str | int = "INFO") -> None:
    """Set up structlog for an application: console or JSON lines on stderr, at ``level``."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
