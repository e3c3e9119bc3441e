"""The arguments of ``plugin-host singer`` and ``plugin-host airbyte``: argparse alone, so
that building the command line imports nothing more."""

from __future__ import annotations

import argparse

__all__ = ["ACTIONS", "airbyte_arguments", "singer_arguments"]

ACTIONS = ["spec", "check", "discover", "read"]


def singer_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``singer`` command's arguments."""
    parser.add_argument("input", metavar="INPUT",
                        help="an input's name, as `plugin-host inputs` lists it")
    parser.add_argument("--config", metavar="FILE",
                        help="a JSON object of the input's settings and secrets, by name")
    parser.add_argument("--state", metavar="FILE",
                        help="the last STATE value the target passed on: resume from it")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--catalog", metavar="FILE",
                        help="the catalog (from --discover) with the stream and properties "
                             "to sync marked selected")
    chosen.add_argument("--properties", metavar="FILE", help="the same as --catalog")
    parser.add_argument("--discover", action="store_true",
                        help="print the catalog (the stream, its schema and metadata)")
    parser.add_argument("--about", action="store_true",
                        help="describe the tap: its settings (secrets marked), capabilities")
    parser.add_argument("--format", metavar="FORMAT", type=_about_format, default="text",
                        help="--about as text (the default) or json")


def _about_format(value: str) -> str:
    if value not in ("text", "json"):
        raise argparse.ArgumentTypeError("must be text or json")
    return value


def airbyte_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``airbyte`` command's arguments."""
    parser.add_argument("input", metavar="INPUT",
                        help="an input's name, as `plugin-host inputs` lists it")
    parser.add_argument("action", choices=ACTIONS,
                        help="spec: the config's schema; check: validate the config and make "
                             "one authenticated call; discover: the catalog; read: the records")
    parser.add_argument("--config", metavar="FILE",
                        help="a JSON object of the input's settings and secrets, by name")
    parser.add_argument("--catalog", metavar="FILE",
                        help="read: the configured catalog (the streams to read, each with "
                             "its sync mode)")
    parser.add_argument("--state", metavar="FILE",
                        help="read: the state messages of the last read, to resume from")
