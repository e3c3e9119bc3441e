"""What the Singer and Airbyte mode tests share: the Singer message rules, the modes run as
real subprocesses, the clients' virtual environments (installed once a session), and the
README's snippets the client tests run verbatim."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, skip_or_fail
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SCRIPTS = Path(sysconfig.get_path("scripts"))
KEY_ENV = "PROTOCOL_TEST_API_KEY"

# The clients, pinned: each in a virtual environment of its own (see INSTALLS).
MELTANO = "meltano==4.4.1"
TARGET_JSONL = "target-jsonl==0.1.4"  # what the README's meltano.yml installs
PYAIRBYTE = "airbyte==0.71.3"
AIRBYTE_MODELS = "airbyte-protocol-models==0.18.0"


# ------------------------------------------------------------------ running the modes


@dataclass(frozen=True)
class Done:
    """A finished command: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        """stdout's lines."""
        return self.out.splitlines()


def mode_env(key: str | None = None, **extra: str) -> dict[str, str]:
    """The environment without plugin-host's switches, plus the key (if given) and ``extra``."""
    if key is not None:
        extra = {KEY_ENV: key, **extra}
    return clean_env(**extra)


def run(argv: Iterable[str | Path], cwd: Path, env: Mapping[str, str] | None = None,
        timeout: float = 120) -> Done:
    """Run a command to completion."""
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=dict(env or mode_env()),
                          capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
    return Done(done.returncode, done.stdout, done.stderr)


def plugin_host(*args: str | Path, cwd: Path, env: Mapping[str, str] | None = None) -> Done:
    """``python -m plugin_host ARGS`` in a subprocess."""
    return run([sys.executable, "-m", "plugin_host", *args], cwd, env)


def script(name: str) -> Path:
    """The path of an installed console script (``tap-postman-audit``)."""
    path = SCRIPTS / name
    assert path.exists(), f"{name} is not installed in {SCRIPTS}: pip install -e . first"
    return path


def write_json(path: Path, doc: Any) -> Path:
    """Write ``doc`` as JSON to ``path``; return it."""
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


# ------------------------------------------------------------------ the Singer rules

SINGER_TYPES = ("SCHEMA", "RECORD", "STATE", "ACTIVATE_VERSION")


@dataclass
class SingerStream:
    """What a stream of Singer messages held, once every line passed the rules."""

    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    states: list[Any] = field(default_factory=list)
    records_after_state: list[int] = field(default_factory=list)  # per STATE: records before


def singer_problems(lines: Iterable[str], *, complete: bool = True) -> tuple[list[str],
                                                                           SingerStream]:
    """Each way ``lines`` break the Singer spec (and what strict targets enforce): a line that
    is not a JSON object, a ``type`` other than SCHEMA, RECORD, STATE or ACTIVATE_VERSION
    (uppercase), a SCHEMA without a stream, an object schema or ``key_properties`` naming its
    properties, a RECORD of a stream without a SCHEMA before it, or one that does not match
    the schema (formats checked) or lacks a key property, a STATE without a ``value``; and,
    for a ``complete`` stream with records, a last message other than a STATE."""
    problems: list[str] = []
    found = SingerStream()
    validators: dict[str, Any] = {}
    last = None
    since_state = 0
    for n, line in enumerate(lines, 1):
        where = f"line {n}"
        try:
            message = json.loads(line)
        except ValueError:
            problems.append(f"{where}: not JSON: {line[:80]!r}")
            continue
        if not isinstance(message, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        kind = message.get("type")
        last = kind
        if kind not in SINGER_TYPES:
            problems.append(f"{where}: type {kind!r} is none of {', '.join(SINGER_TYPES)}")
            continue
        stream = message.get("stream")
        if kind == "STATE":
            if "value" not in message:
                problems.append(f"{where}: STATE without a value")
            found.states.append(message.get("value"))
            found.records_after_state.append(since_state)
            since_state = 0
            continue
        if not isinstance(stream, str) or not stream:
            problems.append(f"{where}: {kind} without a stream name")
            continue
        if kind == "SCHEMA":
            problems += [f"{where}: {p}" for p in _schema_problems(message)]
            if isinstance(message.get("schema"), dict):
                found.schemas[stream] = message
                validators[stream] = Draft202012Validator(
                    message["schema"], format_checker=Draft202012Validator.FORMAT_CHECKER)
            continue
        if stream not in found.schemas:
            problems.append(f"{where}: {kind} of stream {stream!r} before its SCHEMA")
            continue
        if kind == "ACTIVATE_VERSION":
            if not isinstance(message.get("version"), int):
                problems.append(f"{where}: ACTIVATE_VERSION without an integer version")
            continue
        record = message.get("record")
        if not isinstance(record, dict):
            problems.append(f"{where}: RECORD without a record object")
            continue
        for error in validators[stream].iter_errors(record):
            problems.append(f"{where}: record does not match the schema: {error.message}")
        for key in found.schemas[stream].get("key_properties") or []:
            if record.get(key) is None:
                problems.append(f"{where}: record without its key property {key!r}")
        found.records.append((stream, record))
        since_state += 1
    if complete and found.records and last != "STATE":
        problems.append("the stream does not end with a STATE (target-jsonl would drop it)")
    return problems, found


def _schema_problems(message: Mapping[str, Any]) -> list[str]:
    schema = message.get("schema")
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return ["SCHEMA whose schema is not an object schema"]
    problems = []
    try:
        Draft202012Validator.check_schema(schema)
    except Exception as exc:
        problems.append(f"SCHEMA whose schema is not JSON Schema ({exc})")
    if "$ref" in json.dumps(schema):
        problems.append("SCHEMA with a $ref left in it")
    keys = message.get("key_properties")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        problems.append("SCHEMA without a key_properties list")
    else:
        problems += [f"key property {k!r} is not in the schema" for k in keys
                     if k not in schema.get("properties", {})]
    return problems


def singer_checked(done: Done, **kwargs: Any) -> SingerStream:
    """The messages of a run that exited 0, every line within the Singer rules."""
    assert done.code == 0, done.err
    problems, found = singer_problems(done.lines, **kwargs)
    assert problems == [], problems
    return found


# ------------------------------------------------------------------ the clients


def client_venv(request: pytest.FixtureRequest, name: str, *requirements: str) -> Path:
    """A virtual environment holding ``requirements`` (pinned), made once: in pytest's cache
    folder when it has one (keyed by the pins, so later sessions reuse it), else in a folder
    of this session. Returns its ``bin`` folder."""
    tag = hashlib.sha256(" ".join([sys.version, *requirements]).encode()).hexdigest()[:12]
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        root = Path(cache.mkdir("protocol-clients")) / f"{name}-{tag}"
    else:
        root = request.getfixturevalue("tmp_path_factory").getbasetemp() / "clients" / (
            f"{name}-{tag}")
    done_marker = root / ".installed"
    bin_dir = root / "bin"
    if done_marker.exists():
        return bin_dir
    root.parent.mkdir(parents=True, exist_ok=True)
    made = run([sys.executable, "-m", "venv", "--clear", root], REPO, timeout=300)
    if made.code != 0:
        skip_or_fail(f"cannot create a virtual environment for {name}: {made.err[-500:]}")
    installed = run([bin_dir / "python", "-m", "pip", "install", "-q",
                     "--disable-pip-version-check", *requirements], REPO, timeout=1500)
    if installed.code != 0:
        skip_or_fail(f"cannot install {' '.join(requirements)} from the package index: "
               f"{installed.err[-800:]}")
    done_marker.write_text("\n".join(requirements) + "\n")
    return bin_dir


AIRBYTE_CHECKER = """
import json, sys
from airbyte_protocol.models import AirbyteMessage
for n, line in enumerate(sys.stdin, 1):
    try:
        message = AirbyteMessage.parse_raw(line)
    except Exception as exc:
        print(f"line {n}: {' '.join(str(exc).split())}")
        continue
    back = json.loads(message.json(exclude_unset=True, by_alias=True))
    if back != json.loads(line):
        print(f"line {n}: fits the models only once coerced: {line.strip()[:120]}")
"""


def airbyte_problems(models_bin: Path, lines: Iterable[str]) -> list[str]:
    """Each line that ``AirbyteMessage`` (airbyte-protocol-models) does not parse as it is:
    one that fails, or passes only once pydantic coerced a value (a string for a number)."""
    text = "".join(line + "\n" for line in lines)
    done = subprocess.run([str(models_bin / "python"), "-c", AIRBYTE_CHECKER], input=text,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


# ------------------------------------------------------------------ the README's snippets


def readme_block(heading: str, language: str) -> str:
    """The first ``language`` code block under the README heading ``heading``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    found = re.search(rf"```{language}\n(.*?)```", text[start:], re.DOTALL)
    assert found, f"no {language} block under {heading!r} in the README"
    return found.group(1)


# ------------------------------------------------------------------ the Postman input


def emulator_config(**switches: Any) -> Any:
    """An emulator of 30 days whose newest event is a minute old (so it is in the past)."""
    from datetime import datetime, timedelta, timezone

    from postman_audit.emulator import EmulatorConfig

    switches.setdefault("now", datetime.now(timezone.utc) - timedelta(minutes=1))
    switches.setdefault("events", 400)
    switches.setdefault("days", 30)
    return EmulatorConfig(**switches)


def backfill_start(emulator: Any) -> tuple[str, list[int]]:
    """A start 20 days back, and the ids of the emulator's events since then."""
    from datetime import timedelta

    from postman_audit.timeutil import epoch_of

    start = emulator.now - timedelta(days=20)
    floor = int(start.timestamp())
    ids = [e["id"] for e in emulator.events if (epoch_of(e["timestamp"]) or 0) >= floor]
    return start.strftime("%Y-%m-%dT%H:%M:%SZ"), ids


def postman_config(folder: Path, emulator: Any, start: str, **settings: Any) -> Path:
    """A protocol config file for the emulator: settings and the key side by side."""
    settings.setdefault("page_size", 50)
    settings.setdefault("retry_initial_backoff_seconds", 0.05)
    return write_json(folder / "config.json", {"api_key": emulator.config.api_key,
                                               "base_url": emulator.url,
                                               "backfill_start_time": start, **settings})


def new_events(emulator: Any, n: int) -> list[int]:
    """Add ``n`` events now; their ids."""
    from datetime import datetime, timezone

    emulator.set_now(datetime.now(timezone.utc))
    return [e["id"] for e in emulator.add_events(n)]


def airbyte_read_catalog(catalog_message: Mapping[str, Any], sync_mode: str = "incremental"
                         ) -> dict[str, Any]:
    """The configured catalog PyAirbyte writes for a discovered CATALOG message."""
    stream = catalog_message["catalog"]["streams"][0]
    return {"streams": [{"stream": stream, "sync_mode": sync_mode,
                         "cursor_field": stream.get("default_cursor_field", []),
                         "destination_sync_mode": "append",
                         "primary_key": stream.get("source_defined_primary_key", [])}]}


def airbyte_messages(done: Done) -> list[dict[str, Any]]:
    """stdout's Airbyte messages, parsed."""
    return [json.loads(line) for line in done.lines]


def airbyte_ids(messages: Iterable[Mapping[str, Any]]) -> list[int]:
    """The ids of the RECORD messages."""
    return [m["record"]["data"]["id"] for m in messages if m["type"] == "RECORD"]


def last_airbyte_states(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The last STATE message's state, as the list a client passes back with --state."""
    states = [m["state"] for m in messages if m["type"] == "STATE"]
    return states[-1:]
