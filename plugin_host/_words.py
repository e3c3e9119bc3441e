"""Words for counts in what users read: ``1 page``, ``2 pages``."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, word: str, many: str | None = None) -> str:
    """``count`` and ``word``, in the plural unless ``count`` is 1 (``many`` when irregular)."""
    if count == 1:
        return f"{count} {word}"
    if many is None:
        if word.endswith("y") and word[-2:-1] not in ("", *"aeiou"):
            many = word[:-1] + "ies"
        elif word.endswith(("s", "x", "z", "ch", "sh")):
            many = word + "es"
        else:
            many = word + "s"
    return f"{count} {many}"
