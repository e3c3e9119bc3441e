"""The hooks a plugin implements to add inputs, outputs and transforms to plugin-host.

A plugin is a module named by an entry point in the ``plugin_host`` group::

    [project.entry-points."plugin_host"]
    my_input = "my_package.plugin"

and that module implements one or more of the hooks with the ``hookimpl`` marker::

    from plugin_host import hookimpl

    @hookimpl
    def plugin_host_register_inputs(register):
        register(MyInput)

Hooks register rather than return: the host's ``register`` callback checks the
manifest against the meta-schema, refuses a duplicate name and records which
distribution the plugin came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["PROJECT", "hookimpl", "hookspec", "plugin_host_register_inputs",
           "plugin_host_register_outputs", "plugin_host_register_transforms"]

PROJECT = "plugin_host"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- registration -----------------------------------------------------------------


@hookspec
def plugin_host_register_inputs(register: Callable[[type[Any]], None]) -> None:
    """Register input classes.

    :param register: call ``register(InputClass)`` once per input. The class carries
        a ``manifest`` mapping (``name``, ``description``, ``settings``, ``secrets``)
        and implements the ``plugin_host.Input`` protocol.

    .. versionadded:: 0.1
    """


@hookspec
def plugin_host_register_outputs(register: Callable[[type[Any]], None]) -> None:
    """Register output classes.

    :param register: call ``register(OutputClass)`` once per output. The class carries
        a ``manifest`` mapping (``name``, ``description``, ``settings``) and
        implements the ``plugin_host.Output`` protocol.

    .. versionadded:: 0.1
    """


@hookspec
def plugin_host_register_transforms(register: Callable[[type[Any]], None]) -> None:
    """Register transform classes (the steps a pipeline's ``transforms:`` list names).

    :param register: call ``register(TransformClass)`` once per transform. The class
        carries a ``manifest`` mapping (``name``, ``description``, ``settings``) and
        implements the ``plugin_host.Transform`` protocol.

    .. versionadded:: 0.1
    """
