"""The emulator's switches: :class:`EmulatorConfig` with its validation, and the values it
allows (``CHOICES``, ``FAULT_KINDS``, ``MAX_LIMIT``). What each switch does is described in
the docstring of :mod:`postman_audit.emulator`, which re-exports every name here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["CHOICES", "FAULT_KINDS", "MAX_LIMIT", "EmulatorConfig"]

MAX_LIMIT = 300

FAULT_KINDS = ("500", "503", "reset", "truncate", "html", "delay")
CHOICES: dict[str, tuple[str, ...]] = {
    "since_mode": ("date", "datetime"),
    "bounds": ("inclusive", "exclusive"),
    "end_signal": ("missing", "null", "empty"),
    "limit_over_max": ("clamp", "reject"),
    "cursor_style": ("int", "string"),
    "error_style": ("legacy", "problem"),
}


@dataclass
class EmulatorConfig:
    """Switches of the emulator; see the docstring of ``postman_audit.emulator``."""

    events: int = 1000
    days: int = 30
    seed: int = 1
    now: datetime | None = None
    api_key: str = "PMAK-emulator-demo-key"
    since_mode: str = "date"
    bounds: str = "inclusive"
    end_signal: str = "missing"
    limit_over_max: str = "clamp"
    default_limit: int = 100
    cursor_style: str = "int"
    same_second_burst: int = 5
    retention_days: int = 180
    rate_limit: int | None = None
    rate_window: float = 60.0
    quota: int | None = None
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULT_KINDS
    delay_seconds: float = 2.0
    error_style: str = "legacy"
    forbidden: bool = False
    log_requests: bool = False

    def validate(self) -> None:
        """Raise ValueError on an unknown switch value."""
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        if self.events < 0 or self.days < 0 or not 1 <= self.default_limit <= MAX_LIMIT:
            raise ValueError("events and days must be >= 0, default_limit within 1..300")
