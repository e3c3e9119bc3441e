"""Every failure plugin-host reports, and the exit code each one maps to.

    PluginHostError (1: unexpected)
    ├── ConfigError (2: the pipeline, its settings or secrets are wrong)
    │   └── ValidationFailed (2: several field errors at once)
    ├── AuthError (3: the upstream refused the credentials or the permission)
    ├── UpstreamError (4: the upstream failed, after retries where retrying helps)
    │   ├── QuotaExhausted (4: a quota that no retry can fix)
    │   └── ProtocolError (4: the upstream broke its own contract: loops, bad pages)
    ├── LocalStorageError (5: the output or state cannot be written or read)
    ├── PipelineBusy (6: another run of the same pipeline, or of its API key, holds the lock)
    │   └── Fenced (6: another run took this run's lease over; this run wrote nothing more)
    └── StopRequested (0: SIGTERM/SIGINT arrived while waiting; the run ends cleanly)

Messages are one human line that says what is wrong and what to do. They never
contain a secret's value.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "EXIT_CODES",
    "Fenced",
    "LocalStorageError",
    "PipelineBusy",
    "PluginHostError",
    "ProtocolError",
    "QuotaExhausted",
    "StopRequested",
    "UpstreamError",
    "ValidationFailed",
]


def one_line(text: str) -> str:
    """``text`` with control characters escaped, so it can never split or forge a line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class PluginHostError(Exception):
    """Base of every error plugin-host reports on one line."""

    exit_code = 1


class ConfigError(PluginHostError):
    """The pipeline file, its settings or its secrets are wrong."""

    exit_code = 2


class ValidationFailed(ConfigError):
    """Several configuration errors, each as ``json.path: what is wrong``."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = [one_line(e) for e in errors]
        count = len(self.errors)
        head = f"{count} error{'s' if count != 1 else ''} in the pipeline"
        super().__init__(head + ":\n" + "\n".join(f"  {e}" for e in self.errors))


class AuthError(PluginHostError):
    """The upstream refused the credentials (401) or the permission (403)."""

    exit_code = 3


class UpstreamError(PluginHostError):
    """The upstream was unavailable or failed, after the retries that could help."""

    exit_code = 4


class QuotaExhausted(UpstreamError):
    """A quota is spent: retrying before it resets would only waste calls."""


class ProtocolError(UpstreamError):
    """The upstream answered in a way that breaks its contract (loops, repeats)."""


class LocalStorageError(PluginHostError):
    """The output or the state store cannot be written or read."""

    exit_code = 5


class PipelineBusy(PluginHostError):
    """Another run of the same pipeline (or of a pipeline sharing its input's rate-limit
    key) holds its lock or lease in the state store."""

    exit_code = 6


class Fenced(PipelineBusy):
    """Another run took this run's lease over (this one was frozen or cut off past it):
    this run stops at once and writes nothing more."""


class StopRequested(PluginHostError):
    """A stop was requested while an input waited (backoff, rate limit): end the run cleanly."""

    exit_code = 0


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected error: a bug (rerun with --debug and report it)",
    2: "configuration error: the pipeline file, settings, secrets, saved state that does not "
    "fit them, an output file that belongs to another pipeline, or an output table of "
    "another shape",
    3: "authentication or permission refused by the upstream",
    4: "upstream unavailable or failing after retries, a quota exhausted, or an upstream "
    "breaking its own contract",
    5: "storage: the output or state cannot be written, the state file is damaged, or the "
    "state or output database is unreachable, refuses or is newer",
    6: "busy: another run of the same pipeline holds its lock or lease, or took this run's "
    "lease over",
}
