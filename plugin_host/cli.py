"""The ``plugin-host`` command: parses arguments and calls the library; no logic of its own."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._exceptions import EXIT_CODES, PluginHostError, ValidationFailed, one_line
from ._logging import setup_logging
from ._manifest import documentation
from ._pipeline import load_pipeline
from ._registry import discover
from ._runner import run_once
from ._secrets import redactor
from ._service import (
    check_output,
    check_pipeline,
    check_state,
    progress_line,
    run_forever,
    state_reset,
    state_show,
)
from .state import store_location

__all__ = ["main"]

log = logging.getLogger("plugin_host.cli")

COMMAND_EXIT_CODES: dict[str, tuple[int, ...]] = {
    "inputs": (0,),
    "spec": (0, 2),
    "validate": (0, 2),
    "check": (0, 2, 3, 4, 5),
    "run": (0, 1, 2, 3, 4, 5, 6),
    "state show": (0, 2, 5),
    "state reset": (0, 2, 5, 6),
    "demo": (0, 2),
    "new-input": (0, 2),
    "singer": (0, 1, 2, 3, 4, 5),
    "airbyte": (0, 1, 2, 3, 4, 5),
    "worker": (0, 2, 5),
    "status": (0, 2, 5),
}
"""The exit codes each command can end with (the README's command table lists the same)."""

AFTER_RESET = ("the next run starts again from the input's start (such as its backfill start) "
               "and delivers again what was delivered before")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def cmd_inputs(args: argparse.Namespace) -> int:
    """List discovered inputs, outputs and transforms, and plugins that failed to load."""
    registry = discover()
    if args.json:
        _print_json({
            "inputs": [
                {"name": r.name, "version": r.version, "distribution": r.distribution,
                 "description": r.manifest.get("description", "")}
                for r in registry.inputs.values()
            ],
            "outputs": [{"name": r.name, "distribution": r.distribution}
                        for r in registry.outputs.values()],
            "transforms": [{"name": r.name, "version": r.version, "distribution": r.distribution,
                            "description": r.manifest.get("description", "")}
                           for r in registry.transforms.values()],
            "failures": [{"plugin": f.plugin, "distribution": f.distribution,
                          "reason": f.reason} for f in registry.failures],
        })
        return 0
    print("inputs:")
    for r in sorted(registry.inputs.values(), key=lambda r: r.name):
        print(f"  {r.name:<20} {r.version:<10} {r.distribution}")
    for title, table in (("outputs", registry.outputs), ("transforms", registry.transforms)):
        print(f"{title}:")
        for r in sorted(table.values(), key=lambda r: r.name):
            print(f"  {r.name:<20} {r.version:<10} {r.distribution}")
    if registry.failures:
        print("failed to load:")
        for f in registry.failures:
            print(f"  {f.plugin} (from {f.distribution}): {f.reason}")
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    """Print an input's manifest as JSON, its documentation as a URL or an installed file."""
    registered = discover().input(args.input)
    manifest = dict(registered.manifest)
    if "documentation" in manifest:
        where = documentation(manifest, registered.cls)
        if where is None:
            log.warning("input %s: its documentation %s is not installed with it",
                        registered.name, manifest.pop("documentation"))
        else:
            manifest["documentation"] = where
    _print_json(manifest)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a pipeline file completely, secrets resolved."""
    pipeline = load_pipeline(args.pipeline, discover())
    for warning in pipeline.warnings:
        log.warning("%s", warning)
    steps = "".join(f", transform {name}" for name in pipeline.transforms.names)
    print(f"{pipeline.path}: valid (input {pipeline.input.name}{steps}, "
          f"output {pipeline.output.name})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate, then make one authenticated call upstream."""
    pipeline = load_pipeline(args.pipeline, discover())
    state = check_state(pipeline)
    if output := check_output(pipeline):
        state = f"{state}, {output}" if state else output
    check_pipeline(pipeline)
    state = f", {state}" if state else ""
    print(f"{pipeline.name}: configuration valid{state} and {pipeline.input.name} reachable")
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.warning("received %s: finishing the page in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def cmd_run(args: argparse.Namespace) -> int:
    """Run one incremental sync, or keep syncing every --interval seconds."""
    registry = discover()
    pipeline = load_pipeline(args.pipeline, registry, reuse=True)
    for warning in pipeline.warnings:
        log.warning("%s", warning)
    stop = _stop_on_signals()
    progress = sys.stderr.isatty() and not args.quiet
    # What is loaded by now lives for the whole process: keep the collector off it (about a
    # tenth of a backfill's CPU), and collect the young a little less often (a run allocates
    # many short-lived records, few cycles; higher thresholds only raised the peak RSS).
    gc.freeze()
    gc.set_threshold(2_000, 10, 10)
    if args.interval is not None:
        run_forever(pipeline, args.interval, stop, progress=progress,
                    report=lambda s: print(s.line(), file=sys.stderr))
        return 0
    with progress_line(progress):
        summary = run_once(pipeline, stop_event=stop, progress=progress)
    if not args.quiet:
        print(summary.line(), file=sys.stderr)
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    """Show or reset a pipeline's saved state."""
    registry = discover()
    pipeline = load_pipeline(args.pipeline, registry, resolve=False)
    if args.action == "show":
        _print_json(state_show(pipeline))
    else:
        where = store_location(pipeline)
        if state_reset(pipeline):
            print(f"{pipeline.name}: state cleared in {where}; {AFTER_RESET}")
        else:
            print(f"{pipeline.name}: state was already empty in {where}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Sync many pipelines on a schedule, with other workers on one PostgreSQL state."""
    from .worker import check_worker, load_config, run_worker

    config = load_config(args.pipelines, discover(), args.every)
    for pipeline in config.pipelines.values():
        for warning in pipeline.warnings:
            log.warning("%s", warning)
    if args.check:
        print("; ".join(check_worker(config)))
        return 0
    worker_log = logging.getLogger("plugin_host.worker")
    if worker_log.getEffectiveLevel() > logging.INFO:
        worker_log.setLevel(logging.INFO)  # the one line per sync, at any --log-level
    if args.log_level != "DEBUG":  # its failures are told in one line by the worker loop
        logging.getLogger("procrastinate").setLevel(logging.CRITICAL)
    gc.freeze()
    run_worker(config, args.concurrency)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Each pipeline's last success, lag, current holder and last sync."""
    from .worker.status import print_status

    return print_status(args.pipelines, discover(), as_json=args.json,
                        url_env=args.state_url_env or "")


def cmd_demo(args: argparse.Namespace) -> int:
    """Start an input's bundled emulator, run a pipeline against it and print a summary."""
    from ._demo import run_demo

    return run_demo(args.input, Path(args.dir), events=args.events, ocsf=args.ocsf)


def cmd_new_input(args: argparse.Namespace) -> int:
    """Write a new input, as its own distribution, from the bundled template."""
    from ._scaffold import new_input

    scaffold = new_input(args.name, Path(args.dir) if args.dir else None,
                         transform=args.transform)
    print(scaffold.next_steps())
    return 0


def cmd_singer(args: argparse.Namespace) -> int:
    """Run an input as a Singer tap: --about, --discover, or a sync to stdout."""
    from .protocols import singer, stop_on_signals

    return singer.run(discover().input(args.input), args, stop_on_signals())


def cmd_airbyte(args: argparse.Namespace) -> int:
    """Run an input as an Airbyte source: spec, check, discover or read."""
    from .protocols import airbyte, stop_on_signals

    return airbyte.run(discover().input(args.input), args, stop_on_signals())


def _exit_epilog(command: str | None = None) -> str:
    """The ``exit codes:`` block of a help text: every code, or those of ``command``; a
    code that only some of its actions end with (``state reset``) names them."""
    rows = {name: codes for name, codes in COMMAND_EXIT_CODES.items()
            if command is None or name.split()[0] == command}
    lines = ["exit codes:"]
    for code, meaning in EXIT_CODES.items():
        having = [name.split()[-1] for name, codes in rows.items() if code in codes]
        if command is not None and not having:
            continue
        only = f" ({', '.join(having)} only)" if command and len(having) < len(rows) else ""
        lines.append(f"  {code}  {meaning}{only}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plugin-host", description="Run incremental input plugins into outputs.",
        epilog=_exit_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"plugin-host {__version__}")
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                        help="logging on stderr (default WARNING); secrets are always redacted")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (secrets redacted)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="one of these (`plugin-host COMMAND --help` for its "
                                     "options)")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> Any:
        p = sub.add_parser(name, help=help_, description=help_, epilog=_exit_epilog(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    def pipeline(p: Any) -> None:
        p.add_argument("pipeline", metavar="PIPELINE",
                       help="the pipeline file (YAML); relative paths in it are taken from "
                            "its folder")

    p = add("inputs", cmd_inputs,
            "list discovered inputs, outputs, transforms and load failures")
    p.add_argument("--json", action="store_true",
                   help="print JSON, with each input's description")
    add("spec", cmd_spec, "print an input's manifest as JSON").add_argument(
        "input", metavar="INPUT", help="an input's name, as `plugin-host inputs` lists it")
    pipeline(add("validate", cmd_validate, "validate a pipeline file"))
    pipeline(add("check", cmd_check, "validate, then make one authenticated call upstream"))
    p = add("run", cmd_run, "run one incremental sync (or keep syncing with --interval)")
    pipeline(p)
    p.add_argument("--interval", type=float, metavar="SECONDS",
                   help="sync again every SECONDS until SIGTERM/SIGINT")
    p.add_argument("--quiet", action="store_true",
                   help="no progress line and no summary on stderr; errors are still shown")
    p = add("worker", cmd_worker,
            "sync many pipelines on a schedule, with other workers on one PostgreSQL state")
    p.add_argument("pipelines", nargs="+", metavar="PIPELINE",
                   help="pipeline files, each with state: {url: ...} on one database; start "
                        "every worker with the same files")
    p.add_argument("--every", type=float, default=300.0, metavar="SECONDS",
                   help="seconds between two syncs of a pipeline whose file sets no "
                        "schedule.every (default 300)")
    p.add_argument("--concurrency", type=int, default=4, metavar="N",
                   help="syncs this worker runs at once (default 4)")
    p.add_argument("--check", action="store_true",
                   help="validate every file, reach the database, make the tables, and exit")
    p = add("status", cmd_status,
            "each pipeline's last success, lag, current holder and last sync")
    p.add_argument("pipelines", nargs="*", metavar="PIPELINE",
                   help="pipeline files with state: {url: ...}")
    p.add_argument("--state-url-env", metavar="VARIABLE",
                   help="also every pipeline in the state database whose URL is in the "
                        "environment variable VARIABLE")
    p.add_argument("--json", action="store_true", help="print JSON, one object per pipeline")
    p = add("state", cmd_state, "show or reset a pipeline's saved state")
    p.add_argument("action", choices=["show", "reset"],
                   help="show: print the saved state as JSON; reset: clear it, so the next "
                        "run starts again from the input's start and delivers again what "
                        "was delivered before")
    pipeline(p)
    p = add("demo", cmd_demo, "run an input against its bundled emulator (no key needed)")
    p.add_argument("input", nargs="?", default="postman_audit", metavar="INPUT",
                   help="an input with a bundled emulator (default postman_audit)")
    p.add_argument("--dir", default="demo-output", metavar="DIR",
                   help="where to write the events, the pipeline file and the state; "
                        "its previous events and state are removed (default demo-output)")
    p.add_argument("--events", type=int, default=5000, metavar="N",
                   help="how many events the emulator holds (default 5000)")
    p.add_argument("--ocsf", action="store_true",
                   help="write OCSF events, through the ocsf transform and the input's "
                        "mapping, instead of the events as the input reads them")
    p = add("new-input", cmd_new_input,
            "write a new input (a distribution with tests) from the template")
    p.add_argument("name", metavar="NAME",
                   help="the input's name: lowercase letters, digits, underscores")
    p.add_argument("--dir", metavar="PATH", help="where to write it (default ./NAME)")
    p.add_argument("--transform", action="store_true",
                   help="add a transform beside the input (NAME_fields, keeping the fields "
                        "its settings name), registered and tested")
    from .protocols._arguments import airbyte_arguments, singer_arguments

    singer_arguments(add("singer", cmd_singer, "run an input as a Singer tap (SCHEMA, RECORD "
                         "and STATE messages on stdout)"))
    airbyte_arguments(add("airbyte", cmd_airbyte, "run an input as an Airbyte source (spec, "
                          "check, discover, read)"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a command and turn every failure into one line and an exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        code: int = args.func(args)
        return code
    except PluginHostError as exc:
        if args.debug:
            log.exception("error")
        # a ValidationFailed is one line per error, each already escaped
        text = redactor(str(exc))
        if not isinstance(exc, ValidationFailed):
            text = one_line(text)
        print(f"plugin-host: error: {text}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("plugin-host: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line unless --debug
        if args.debug:
            log.exception("unexpected error")
        reason = one_line(redactor(f"{type(exc).__name__}: {exc}"))
        hint = "please report it" if args.debug else "rerun with --debug"
        print(f"plugin-host: unexpected error: {reason} ({hint})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
