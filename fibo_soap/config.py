"""The `fibo-sms` settings: flags, then the environment, then an optional TOML file.

The file is ``$XDG_CONFIG_HOME/fibo-sms/config.toml`` (``~/.config/fibo-sms/config.toml``) unless
``--config`` names another. Its keys::

    client_no = "CL0001"
    endpoint = "http://center.fibosms.com/Service.asmx"
    service_type = 1
    protocol = "soap11,get"      # soap11, soap12, get, post; a list is tried in order
    password_file = "~/.config/fibo-sms/password"
    wsdl = "~/.cache/fibo-sms/Service.wsdl"
    timeout = 60                 # seconds to wait for an answer
    attempts = 3                 # tries of a call on each protocol (1: no retries)

The paths (``password_file``, a ``wsdl`` that is not a URL) may start with ``~``; a relative one
is taken relative to the config file. ``client_pass`` is read too, but a password belongs in
``password_file`` (or FIBO_CLIENT_PASS, or the prompt); a file holding one that others can read
draws a warning. Every value remembers where it came from, so that an error can say which setting
to check ("check FIBO_CLIENT_PASS").

Importing this module reads nothing; only :func:`resolve` touches the environment and the disk.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "CONFIG_KEYS",
    "ENV_CLIENT_NO",
    "ENV_CLIENT_PASS",
    "ENV_ENDPOINT",
    "ENV_PASSWORD_FILE",
    "ENV_PROTOCOL",
    "ENV_SERVICE_TYPE",
    "ENV_WSDL",
    "PROTOCOLS",
    "ConfigError",
    "Flags",
    "Settings",
    "cached_wsdl_path",
    "default_config_path",
    "read_password_file",
    "resolve",
]

ENV_CLIENT_NO: Final = "FIBO_CLIENT_NO"
ENV_CLIENT_PASS: Final = "FIBO_CLIENT_PASS"  # noqa: S105 - a variable name
ENV_PASSWORD_FILE: Final = "FIBO_PASSWORD_FILE"  # noqa: S105 - a variable name
ENV_ENDPOINT: Final = "FIBO_ENDPOINT"
ENV_SERVICE_TYPE: Final = "FIBO_SERVICE_TYPE"
ENV_PROTOCOL: Final = "FIBO_PROTOCOL"
ENV_WSDL: Final = "FIBO_WSDL"

#: The protocol names the client takes (the same as fibo_soap.protocols.base.PROTOCOL_NAMES,
#: repeated so that reading the configuration imports no protocol code).
PROTOCOLS: Final = ("soap11", "soap12", "get", "post")

#: The keys a config file may hold.
CONFIG_KEYS: Final = frozenset(
    {
        "client_no",
        "client_pass",
        "password_file",
        "endpoint",
        "service_type",
        "protocol",
        "wsdl",
        "timeout",
        "attempts",
    }
)

_APP_DIR: Final = "fibo-sms"
_PASSWORD_FILE_LIMIT: Final = 4096
_OTHERS_CAN_READ: Final = stat.S_IRGRP | stat.S_IROTH


class ConfigError(Exception):
    """The settings cannot be used: a bad config file, a missing password, a value out of range.

    The message names the setting to fix; ``hint``, when given, says what to do about it.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Flags:
    """What the command line said; None where it said nothing."""

    config: Path | None = None
    client_no: str | None = None
    password_file: Path | None = None
    endpoint: str | None = None
    service_type: str | None = None
    protocol: str | None = None
    wsdl: str | None = None
    timeout: float | None = None
    attempts: int | None = None
    ask_password: bool = False  # prompt even when another source has a password


@dataclass(frozen=True)
class Settings:
    """The resolved settings. ``sources`` maps a setting to where its value came from
    (``--endpoint``, ``FIBO_ENDPOINT``, ``config.toml``); the password is never in a repr."""

    client_no: str | None = None
    password: str | None = field(default=None, repr=False)
    endpoint: str | None = None
    service_type: str | None = None
    protocol: str | None = None
    wsdl: str | None = None
    timeout: float | None = None
    attempts: int | None = None
    config_path: Path | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def source(self, name: str) -> str | None:
        """Where setting ``name`` came from, or None when it is not set."""
        return self.sources.get(name)


def _xdg(variable: str, fallback: str, environ: Mapping[str, str]) -> Path:
    base = environ.get(variable)
    return Path(base) if base else Path(environ.get("HOME") or Path.home()) / fallback


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/fibo-sms/config.toml``, ``~/.config/fibo-sms/config.toml`` by default."""
    env = os.environ if environ is None else environ
    return _xdg("XDG_CONFIG_HOME", ".config", env) / _APP_DIR / "config.toml"


def cached_wsdl_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``fibo-sms wsdl refresh`` stores a WSDL by default, and where every command looks for
    one: ``$XDG_CACHE_HOME/fibo-sms/Service.wsdl`` (``~/.cache/fibo-sms/Service.wsdl``)."""
    env = os.environ if environ is None else environ
    return _xdg("XDG_CACHE_HOME", ".cache", env) / _APP_DIR / "Service.wsdl"


def _others_can_read(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & _OTHERS_CAN_READ)
    except OSError:
        return False


def read_password_file(path: Path, *, setting: str) -> tuple[str, list[str]]:
    """The password in ``path`` (its first line, without the line end) and the warnings to show.

    ``setting`` names where the path came from, for the error message.
    """
    try:
        with path.expanduser().open("r", encoding="utf-8") as handle:
            content = handle.read(_PASSWORD_FILE_LIMIT + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot read the password file {path} ({setting}): {reason}") from None
    if len(content) > _PASSWORD_FILE_LIMIT:
        raise ConfigError(f"the password file {path} ({setting}) is too large for a password")
    password = content.splitlines()[0] if content else ""
    if not password:
        raise ConfigError(f"the password file {path} ({setting}) is empty")
    warnings = []
    if _others_can_read(path.expanduser()):
        warnings.append(f"the password file {path} can be read by other users: chmod 600 {path}")
    return password, warnings


def _local_path(value: str, config_file: Path | None) -> Path:
    """A path setting as a path: ``~`` expanded; relative to ``config_file`` when it came from
    one (as the file's author meant it), else to the working directory."""
    path = Path(value).expanduser()
    if config_file is not None and not path.is_absolute():
        path = config_file.parent / path
    return path


def _is_url(location: str) -> bool:
    return "://" in location


def _check_wsdl(location: str, source: str, config_file: Path | None) -> str:
    """The WSDL setting, a URL as it is, a file expanded and resolved, and that file readable.

    A file that cannot be read is a setting to fix, said here rather than as an error of the
    SOAP engine when the first call loads it.
    """
    if _is_url(location):
        return location
    path = _local_path(location, config_file)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"cannot read the WSDL {path} ({source}): {reason}",
            hint=f"fix {source}, or leave it out to use the one `fibo-sms wsdl refresh` stored "
            "(else the bundled one)",
        ) from None
    return str(path)


def _load_file(path: Path, *, explicit: bool) -> dict[str, Any]:
    # Imported here: `fibo-sms --help` imports this module and reads no file.
    import tomllib

    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"the config file {path} does not exist (--config)") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        raise ConfigError(
            f"the config file {path} has unknown keys: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(CONFIG_KEYS))})"
        )
    return data


def _text(value: object, name: str, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{name} in {where} must be text, not {type(value).__name__}")
    return str(value).strip()


def _check_service_type(value: str, where: str) -> str:
    if not value.lstrip("-").isdigit():
        raise ConfigError(f"the service type from {where} must be a number, got {value!r}")
    return value


def _check_protocol(value: str, where: str) -> str:
    """One protocol name, or a comma-separated list tried in order; normalized."""
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    wrong = [name for name in names if name not in PROTOCOLS]
    if not names or wrong:
        raise ConfigError(
            f"the protocol from {where} is {value!r}: use one of {', '.join(PROTOCOLS)}, "
            "or several separated by commas"
        )
    return ",".join(dict.fromkeys(names))


def _check_timeout(value: object, where: str) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"the timeout from {where} must be a number of seconds") from None
    if not seconds > 0:
        raise ConfigError(f"the timeout from {where} must be more than 0 seconds")
    return seconds


def _check_attempts(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"attempts from {where} must be a whole number of at least 1")
    return value


def _password(
    flags: Flags,
    env: Mapping[str, str],
    data: Mapping[str, Any],
    path: Path,
    prompt: Callable[[], str] | None,
    warnings: list[str],
) -> tuple[str | None, str | None]:
    """The password and where it came from (None, None when nothing holds one), in the order
    :func:`resolve` documents; warnings about files others can read go to ``warnings``."""
    file_label = str(path)
    if flags.ask_password and prompt is not None:
        return prompt(), "the prompt"
    if flags.password_file is not None:
        password, found = read_password_file(flags.password_file, setting="--password-file")
        warnings += found
        return password, f"the password file {flags.password_file} (--password-file)"
    if env.get(ENV_CLIENT_PASS):
        return env[ENV_CLIENT_PASS], ENV_CLIENT_PASS
    if env.get(ENV_PASSWORD_FILE, "").strip():
        file = Path(env[ENV_PASSWORD_FILE].strip())
        password, found = read_password_file(file, setting=ENV_PASSWORD_FILE)
        warnings += found
        return password, f"the password file {file} ({ENV_PASSWORD_FILE})"
    if "password_file" in data:
        file = _local_path(_text(data["password_file"], "password_file", file_label), path)
        password, found = read_password_file(file, setting=f"password_file in {file_label}")
        warnings += found
        return password, f"the password file {file} (password_file in {file_label})"
    if "client_pass" in data:
        if not isinstance(data["client_pass"], str) or not data["client_pass"]:
            raise ConfigError(f"client_pass in {file_label} must be non-empty text")
        if _others_can_read(path):
            warnings.append(
                f"{file_label} holds client_pass and other users can read it: chmod 600 "
                f"{file_label}, or move the password to a password_file"
            )
        return data["client_pass"], f"client_pass in {file_label}"
    if prompt is not None:
        return prompt(), "the prompt"
    return None, None


def resolve(
    flags: Flags,
    environ: Mapping[str, str] | None = None,
    *,
    need_account: bool = True,
    prompt: Callable[[], str] | None = None,
) -> Settings:
    """The settings: each from the flags, else the environment, else the config file.

    The password comes from ``prompt`` when ``flags.ask_password``, else ``--password-file``, else
    FIBO_CLIENT_PASS, else FIBO_PASSWORD_FILE, else the file's ``password_file``, else its
    ``client_pass``, else ``prompt`` (when given: the caller passes one only on a terminal). With
    ``need_account`` false no password source is read at all and a missing client number is not
    an error (About needs neither). A WSDL file is expanded (``~``), taken relative to the config
    file when it comes from there, and must be readable. Raises ConfigError.
    """
    env = os.environ if environ is None else environ
    explicit = flags.config is not None
    path = (flags.config or default_config_path(env)).expanduser()
    data = _load_file(path, explicit=explicit)
    file_label = str(path)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    in_file: set[str] = set()
    warnings: list[str] = []

    def pick(name: str, flag: object, flag_name: str, env_name: str | None) -> None:
        if flag is not None:
            values[name], sources[name] = flag, flag_name
        elif env_name and env.get(env_name, "").strip():
            values[name], sources[name] = env[env_name].strip(), env_name
        elif name in data:
            values[name] = _text(data[name], name, file_label)
            sources[name] = f"{name} in {file_label}"
            in_file.add(name)

    pick("client_no", flags.client_no, "--client-no", ENV_CLIENT_NO)
    pick("endpoint", flags.endpoint, "--endpoint", ENV_ENDPOINT)
    pick("service_type", flags.service_type, "--service-type", ENV_SERVICE_TYPE)
    pick("protocol", flags.protocol, "--protocol", ENV_PROTOCOL)
    pick("wsdl", flags.wsdl, "--wsdl", ENV_WSDL)
    if "service_type" in values:
        values["service_type"] = _check_service_type(
            str(values["service_type"]), sources["service_type"]
        )
    if "protocol" in values:
        values["protocol"] = _check_protocol(str(values["protocol"]), sources["protocol"])
    if "wsdl" in values:
        values["wsdl"] = _check_wsdl(
            str(values["wsdl"]), sources["wsdl"], path if "wsdl" in in_file else None
        )
    else:
        cached = cached_wsdl_path(env)
        if cached.is_file():
            values["wsdl"], sources["wsdl"] = str(cached), "the cached WSDL (fibo-sms wsdl refresh)"
    if flags.timeout is not None:
        values["timeout"], sources["timeout"] = (
            _check_timeout(flags.timeout, "--timeout"),
            "--timeout",
        )
    elif "timeout" in data:
        values["timeout"] = _check_timeout(data["timeout"], f"timeout in {file_label}")
        sources["timeout"] = f"timeout in {file_label}"
    if flags.attempts is not None:
        values["attempts"] = _check_attempts(flags.attempts, "--attempts")
        sources["attempts"] = "--attempts"
    elif "attempts" in data:
        values["attempts"] = _check_attempts(data["attempts"], f"attempts in {file_label}")
        sources["attempts"] = f"attempts in {file_label}"

    password: str | None = None
    if need_account:
        # Only then: a command that needs no account must not fail on a broken password source.
        password, source = _password(flags, env, data, path, prompt, warnings)
        if source is not None:
            sources["password"] = source
    if need_account and not values.get("client_no"):
        raise ConfigError(
            f"no account number: set {ENV_CLIENT_NO}, or pass --client-no, or add client_no "
            f"to {file_label}"
        )
    if need_account and not password:
        raise ConfigError(
            f"no password: set {ENV_CLIENT_PASS}, or pass --password-file PATH or "
            f"--ask-password, or add password_file to {file_label}"
        )

    return Settings(
        client_no=values.get("client_no"),
        password=password,
        endpoint=values.get("endpoint"),
        service_type=values.get("service_type"),
        protocol=values.get("protocol"),
        wsdl=values.get("wsdl"),
        timeout=values.get("timeout"),
        attempts=values.get("attempts"),
        config_path=path if data else None,
        sources=sources,
        warnings=tuple(warnings),
    )
