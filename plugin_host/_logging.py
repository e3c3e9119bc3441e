"""Logging to stderr, every record passed through the secret redaction filter."""

from __future__ import annotations

import logging
import sys

from ._secrets import install_redaction

__all__ = ["setup_logging"]


def setup_logging(level: str = "WARNING") -> logging.Handler:
    """Send all logging (httpx's included) to stderr at ``level``, secrets redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    install_redaction(handler)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
