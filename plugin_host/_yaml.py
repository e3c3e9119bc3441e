"""YAML loading that refuses duplicate keys and reports errors by line, never by content."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["YamlError", "load_yaml"]


class YamlError(ValueError):
    """The text is not the YAML we accept; the message names a line and column only."""


class _StrictLoader(yaml.SafeLoader):
    pass


def _text_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return {None: "null", True: "true", False: "false"}[key]
    return str(key)


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            mark = key_node.start_mark
            raise YamlError(f"line {mark.line + 1}, column {mark.column + 1}: a key must be text")
        key = _text_key(key)  # JSON keys are text: `0:` is the key "0"
        if key in result:
            mark = key_node.start_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}"
            raise YamlError(f"{where}: duplicate key {key!r}")
        result[key] = loader.construct_object(value_node, deep=deep)
    return result


def _float(loader: _StrictLoader, node: yaml.ScalarNode) -> float:
    value = loader.construct_yaml_float(node)
    if value != value or value in (float("inf"), float("-inf")):
        mark = node.start_mark
        raise YamlError(f"line {mark.line + 1}, column {mark.column + 1}: "
                        "NaN and infinity are not numbers a pipeline can use")
    return float(value)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _float)
# Timestamps stay strings: the schema checks their format, and no value changes type silently.
_StrictLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> Any:
    """Parse one YAML document; errors name the line and the problem, not the text."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except YamlError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise YamlError(f"{where}{exc.problem or 'invalid YAML'}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML ({type(exc).__name__})") from None
    except RecursionError:
        raise YamlError("the document nests too deeply") from None
