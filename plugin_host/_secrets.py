"""Secrets: resolved from the environment or a file, and redacted from every log line."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["REDACTED", "Redactor", "guarded", "install_redaction", "redactor",
           "resolve_secret"]

REDACTED = "***"


class Redactor:
    """Knows every resolved secret value and removes each from any text."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, values: Iterable[str]) -> None:
        """Remember values to redact (very short ones would redact ordinary words: kept out)."""
        for value in values:
            if isinstance(value, str) and len(value) >= 4:
                self._values.add(value)

    def values(self) -> frozenset[str]:
        """The values being redacted."""
        return frozenset(self._values)

    def __call__(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, REDACTED)
        return text


redactor = Redactor()


@contextlib.contextmanager
def guarded(secrets: Mapping[str, str]) -> Iterator[None]:
    """Around code that drives an input with ``secrets``: they are redacted from every log
    line, and from the text of any error raised through here (an upstream may quote a key
    back), whoever called, the CLI or a library caller."""
    redactor.add(secrets.values())
    try:
        yield
    except Exception as exc:
        exc.args = tuple(redactor(a) if isinstance(a, str) else a for a in exc.args)
        raise


class _RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback) with every secret value removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not redactor.values():
            return True
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = redactor(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor(record.stack_info)
        return True


def install_redaction(handler: logging.Handler) -> None:
    """Attach the redaction filter to a handler, so every record it emits is clean."""
    if not any(isinstance(f, _RedactingFilter) for f in handler.filters):
        handler.addFilter(_RedactingFilter())


def resolve_secret(ref: Any, base_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """Resolve ``{env: NAME}``, ``{file: path}`` or a literal; raise ValueError naming the cause."""
    env = os.environ if environ is None else environ
    if isinstance(ref, str):
        return ref
    if isinstance(ref, Mapping) and "env" in ref:
        name = str(ref["env"])
        value = env.get(name)
        if value is None:
            raise ValueError(f"environment variable {name} is not set")
        if not value.strip():
            raise ValueError(f"environment variable {name} is empty")
        return value.strip()
    if isinstance(ref, Mapping) and "file" in ref:
        path = Path(str(ref["file"])).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        try:
            value = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ValueError(f"file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"file {path} cannot be read ({type(exc).__name__})") from None
        if not value:
            raise ValueError(f"file {path} is empty")
        return value
    raise ValueError("must be {env: NAME}, {file: path} or a string")
