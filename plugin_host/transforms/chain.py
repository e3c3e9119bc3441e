"""The host's side of transforms: a pipeline's ``transforms:`` list, checked and built when
the pipeline is loaded, then applied to each page's records on their way to the output.

Each entry is checked like an input or output section (its type registered, its settings
against its manifest, the class's own ``validate_settings``), then the transform is built
with the pipeline's input in its context, so a transform that cannot work with that input
(``ocsf`` with an input that ships no mapping) is a validation error too. Transforms are
checked in full on every load, a run that reuses its validation included: they are few,
and their manifests are not in the fingerprint of the configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._contract import Transform, TransformContext
from .._exceptions import ConfigError, PluginHostError
from .._manifest import EMPTY_OBJECT_SCHEMA
from .._registry import Registered, Registry
from .._validation import schema_errors

__all__ = ["Step", "TransformChain", "load_transforms"]

Records = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Step:
    """One transform of a pipeline: where it is registered and the instance built for it."""

    registered: Registered
    transform: Transform


class TransformChain:
    """A pipeline's transforms, in order; with none, records pass unchanged."""

    def __init__(self, steps: Sequence[Step] = ()) -> None:
        self.steps = tuple(steps)

    @property
    def names(self) -> list[str]:
        """The transforms' names, in order."""
        return [step.registered.name for step in self.steps]

    def apply(self, records: Records) -> Records:
        """The records of one page after every transform, in order. A transform that fails
        is a bug in it: one line naming it, and nothing of the page is written."""
        for step in self.steps:
            try:
                records = step.transform.apply(records)
            except PluginHostError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
                raise PluginHostError(
                    f"transform {step.registered.name} failed ({reason}); the pages before "
                    "this one were delivered, the next run resumes from there"
                ) from exc
            if not isinstance(records, (list, tuple)):
                records = list(records)
        return records


def load_transforms(
    value: Any, registry: Registry, input_: Registered | None, pipeline_name: str,
    base_dir: Path, errors: list[str],
) -> TransformChain:
    """The transforms a pipeline's ``transforms:`` list names, each checked and built;
    every problem is appended to ``errors`` (the list's shape is the pipeline schema's)."""
    from .._pipeline import own_check_errors, with_defaults  # the loader imports this module

    steps: list[Step] = []
    for index, entry in enumerate(value if isinstance(value, list) else ()):
        where = f"$.transforms[{index}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("type"), str):
            continue  # the pipeline schema says why
        try:
            registered = registry.transform(entry["type"])
        except ConfigError as exc:
            errors.append(f"{where}.type: {exc}")
            continue
        raw = entry.get("settings") or {}
        if not isinstance(raw, Mapping):
            continue
        schema = registered.manifest.get("settings") or EMPTY_OBJECT_SCHEMA
        problems = schema_errors(schema, raw, f"{where}.settings")
        settings = with_defaults(schema, raw)
        if not problems:
            problems = own_check_errors(registered.cls, settings, base_dir, f"{where}.settings")
        errors += problems
        if problems or input_ is None:
            continue
        context = TransformContext(pipeline_name, input_.name, input_.cls,
                                   logging.getLogger(f"plugin_host.transform.{registered.name}"))
        try:
            steps.append(Step(registered, registered.cls(settings, context)))
        except ConfigError as exc:
            errors.append(f"{where}: {exc}")
    return TransformChain(steps)
