"""Hostile local input: generated pipeline files (random YAML, wrong types, unicode, huge
numbers, deep nesting, binary junk) never crash `validate`; a damaged state file is reported
(exit 5) and left byte for byte; a full or read-only output stops the run with the state
unchanged."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import skip_or_fail
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from postman_audit.emulator import EmulatorConfig, PostmanEmulator
from reliability.support import (
    EMULATOR_KEY,
    KEY_ENV,
    Child,
    check_consistent,
    check_delivery,
    cli,
    count,
    days_ago,
    one_error_line,
    read_lines,
    state_show,
    write_pipeline,
)

import plugin_host.cli
from plugin_host import Registry, discover
from plugin_host._secrets import redactor

pytestmark = pytest.mark.reliability

# -- generated pipeline files ------------------------------------------------------------------

EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", "150"))

HOSTILE_TEXT = [
    "", " ", "0", "-1", "null", "~", "yes", "no", "on", "1e999", "NaN", ".inf", "2026-13-45",
    "2026-02-30T25:61:61Z", "9999-12-31T23:59:59Z", "../../../../etc/shadow", "/", ".",
    "https://", "http://example.com", "ftp://x", "http://[::1", "postman_audit", "jsonl",
    "stdout", "a" * 300, "é" * 200, "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ☃", "\u202eevil", "\t\r\n", "\x00", "%s%s%n",
    "{{ secret }}", "${HOME}", "*alias", "&anchor", "!!python/object/apply:os.system",
    "PMAK-" + "f" * 40,
]
keys = st.one_of(st.sampled_from(["version", "name", "input", "type", "settings", "secrets",
                                  "output", "state", "path", "env", "file", "api_key",
                                  "page_size", "rate_limit", "requests", "base_url"]),
                 st.text(max_size=12), st.integers(), st.booleans(), st.none(),
                 st.floats(allow_nan=False))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(), st.sampled_from(HOSTILE_TEXT), st.text(max_size=40),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=16,
)

#: Where a valid pipeline's values live; mutations overwrite or delete them.
PATHS: list[tuple[str, ...]] = [
    ("version",), ("name",), ("input",), ("input", "type"), ("input", "settings"),
    ("input", "settings", "backfill_start_time"), ("input", "settings", "base_url"),
    ("input", "settings", "page_size"), ("input", "settings", "lookback_minutes"),
    ("input", "settings", "rate_limit"), ("input", "settings", "rate_limit", "requests"),
    ("input", "settings", "rate_limit", "per_seconds"),
    ("input", "settings", "retry_budget_seconds"), ("input", "settings", "timeout_seconds"),
    ("input", "settings", "retry_initial_backoff_seconds"), ("input", "secrets"),
    ("input", "secrets", "api_key"), ("input", "secrets", "api_key", "env"),
    ("output",), ("output", "type"), ("output", "settings"), ("output", "settings", "path"),
    ("state",), ("state", "path"),
]


def valid_doc() -> dict[str, Any]:
    return {
        "version": 1,
        "name": "hostile",
        "input": {
            "type": "postman_audit",
            "settings": {"backfill_start_time": days_ago(3), "base_url": "http://127.0.0.1:9",
                         "page_size": 100, "rate_limit": {"requests": 5, "per_seconds": 1}},
            "secrets": {"api_key": {"env": KEY_ENV}},
        },
        "output": {"type": "jsonl", "settings": {"path": "out/events.jsonl"}},
        "state": {"path": "state/state.db"},
    }


@st.composite
def mutated_docs(draw: st.DrawFn) -> Any:
    doc: Any = valid_doc()
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete":
            parent.pop(path[-1], None)
        elif action == "add":
            parent[draw(keys)] = draw(values)
        else:
            parent[path[-1]] = draw(values)
    return doc


def _dump(doc: Any) -> bytes:
    unicode = len(repr(doc)) % 2 == 0  # half the files escape non-ASCII, half hold it raw
    return yaml.safe_dump(doc, allow_unicode=unicode).encode("utf-8", "surrogatepass")


@st.composite
def pipeline_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "anything", "bytes",
                                 "text-edit", "nesting"]))
    if kind == "mutated":
        return _dump(draw(mutated_docs()))
    if kind == "anything":
        return _dump(draw(values))
    if kind == "bytes":
        return draw(st.binary(max_size=400))
    if kind == "nesting":
        depth = draw(st.integers(1, 20_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        where = draw(st.sampled_from(["page_size: 100", "path: out/events.jsonl",
                                      "name: hostile"]))
        nested = opener * depth + "1" + closer * depth
        return yaml.safe_dump(valid_doc()).replace(where, where.split(":")[0] + ": " + nested
                                                   ).encode()
    text = yaml.safe_dump(valid_doc())
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 10))
        text = text[:at] + draw(st.text(max_size=8)) + text[at + cut:]
    return text.encode("utf-8", "surrogatepass")


_COUNT_HEAD = re.compile(r"plugin-host: error: (\d+) errors? in the pipeline:$")
_ENTRY = re.compile(r"  \$[.\[:]")  # `  $.input.settings.x: ...`, `  $['a b']: ...`, `  $: ...`


_REGISTRY: list[Registry] = []


def validate_in_process(path: Path) -> tuple[int, str, str]:
    """``plugin-host validate PATH`` in this process (discovery done once)."""
    if not _REGISTRY:
        _REGISTRY.append(discover())
    out, err = io.StringIO(), io.StringIO()
    remembered = redactor.values()
    real_discover = plugin_host.cli.discover
    plugin_host.cli.discover = lambda: _REGISTRY[0]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = plugin_host.cli.main(["validate", str(path)])
    finally:  # a generated {env: NAME} may resolve: keep the process-wide redactor as it was
        plugin_host.cli.discover = real_discover
        redactor._values = set(remembered)
    return code, out.getvalue(), err.getvalue()


def check_validate_outcome(code: int, out: str, err: str) -> None:
    """Exit 0 or 2, never a traceback; errors on lines of their own naming `$.` paths."""
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 0:
        assert ": valid (input " in out
        return
    head, *rest = err.rstrip("\n").split("\n")
    assert head.startswith("plugin-host: error:"), err
    match = _COUNT_HEAD.match(head)
    if not match:
        assert not rest, err  # one line: an unreadable file, not YAML, not a mapping
        return
    entries = [line for line in rest if _ENTRY.match(line)]
    assert len(entries) == int(match.group(1)), err
    assert len(entries) == len(rest), err  # no raw newline from the file splits an entry


@pytest.fixture
def key_in_env() -> Iterator[None]:
    old = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = EMULATOR_KEY
    yield
    if old is None:
        os.environ.pop(KEY_ENV, None)
    else:
        os.environ[KEY_ENV] = old


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.large_base_example, HealthCheck.data_too_large])
@given(data=pipeline_files())
@example(data=b"\xff\xfe\x00junk")
@example(data=b"[" * 50_000)
@example(data=b"version: 1\nname: x\ninput: &a {type: *a}\n")
@example(data=b"a: &a [*a, *a]\n")
@example(data=b"version: 1\nversion: 1\n")
@example(data=b"!!python/object/apply:os.system ['true']\n")
@example(data=b"--- 1\n--- 2\n")
@example(data=b"")
def test_generated_pipeline_files_never_crash_validate(
    tmp_path: Path, key_in_env: None, data: bytes
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_bytes(data)
    count("hostile_pipeline_files")
    check_validate_outcome(*validate_in_process(path))


def _validate_text(tmp_path: Path, text: str) -> tuple[int, str, str]:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    return validate_in_process(path)


def test_secrets_that_are_not_a_mapping_are_a_config_error(
    tmp_path: Path, key_in_env: None
) -> None:
    doc = valid_doc()
    doc["input"]["secrets"] = ["api_key"]
    code, _, err = _validate_text(tmp_path, yaml.safe_dump(doc))
    assert code == 2 and "$.input.secrets" in err, err


def test_a_path_with_a_name_too_long_is_a_config_error(tmp_path: Path, key_in_env: None) -> None:
    doc = valid_doc()
    doc["output"]["settings"]["path"] = "a" * 300 + ".jsonl"
    code, _, err = _validate_text(tmp_path, yaml.safe_dump(doc))
    assert code == 2 and "$.output.settings.path" in err, err


@pytest.mark.parametrize("setting", ["timeout_seconds", "retry_budget_seconds",
                                     "retry_initial_backoff_seconds"])
def test_a_nan_setting_is_a_config_error(tmp_path: Path, key_in_env: None, setting: str) -> None:
    doc = valid_doc()
    doc["input"]["settings"][setting] = float("nan")
    code, _, err = _validate_text(tmp_path, yaml.safe_dump(doc))
    # refused where it is read, with the line and column: JSON has no NaN
    assert code == 2 and "NaN and infinity are not numbers" in err, err
    assert err.count("\n") == 1 and "line 12" in err.replace(str(tmp_path), ""), err


def test_a_newline_in_a_name_cannot_forge_an_error_line(tmp_path: Path, key_in_env: None) -> None:
    doc = valid_doc()
    doc["input"]["secrets"]["x\n  $.forged: ok"] = {"env": "A\nB"}
    code, _, err = _validate_text(tmp_path, yaml.safe_dump(doc))
    assert code == 2
    assert "forged" not in "".join(line for line in err.split("\n")
                                   if line.startswith("  $.forged")), err


def test_keys_of_mixed_types_in_one_mapping_are_a_config_error(
    tmp_path: Path, key_in_env: None
) -> None:
    doc = valid_doc()
    doc["input"]["secrets"] = {"version": None, 0: None}
    code, _, err = _validate_text(tmp_path, yaml.safe_dump(doc))
    assert code == 2 and "$.input.secrets" in err, err


# -- a damaged state file --------------------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _corruptions() -> dict[str, Callable[[Path], None]]:
    def truncate(size: Callable[[int], int]) -> Callable[[Path], None]:
        return lambda p: os.truncate(p, size(p.stat().st_size))

    def overwrite(at: int, data: bytes) -> Callable[[Path], None]:
        def damage(path: Path) -> None:
            with path.open("r+b") as handle:
                handle.seek(at)
                handle.write(data)
        return damage

    def foreign(path: Path) -> None:
        path.unlink()
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
        db.execute("INSERT INTO invoices VALUES (1, 9.5)")
        db.commit()
        db.close()

    return {
        "truncated to nothing": truncate(lambda n: 0),
        "truncated in the header": truncate(lambda n: 60),
        "truncated to one page": truncate(lambda n: 4096),
        "truncated to half": truncate(lambda n: n // 2),
        "header overwritten": overwrite(0, b"\xde\xad\xbe\xef" * 8),
        "meta page overwritten": overwrite(4096, b"\x00\xff" * 2048),
        "state page overwritten": overwrite(3 * 4096, b"\x13\x37" * 2048),
        "a text file": lambda p: p.write_text("not a database\n" * 100),
        "another program's database": foreign,
    }


@pytest.fixture(scope="module")
def small_emulator() -> Iterator[PostmanEmulator]:
    with PostmanEmulator(EmulatorConfig(events=400, days=30)) as emu:
        yield emu


@pytest.fixture(scope="module")
def good_state(small_emulator: PostmanEmulator, tmp_path_factory: pytest.TempPathFactory
               ) -> bytes:
    """The bytes of a state file after one real run (SQLite folds its WAL in on close)."""
    folder = tmp_path_factory.mktemp("good-state")
    pipeline = write_pipeline(folder, small_emulator.url)
    assert cli("run", pipeline, cwd=folder).code == 0
    assert not (folder / "state.db-wal").exists()
    return (folder / "state.db").read_bytes()


@pytest.mark.parametrize("damage", list(_corruptions()))
def test_a_damaged_state_file_is_reported_and_left_byte_for_byte(
    tmp_path: Path, small_emulator: PostmanEmulator, good_state: bytes, damage: str
) -> None:
    pipeline = write_pipeline(tmp_path, small_emulator.url)
    (tmp_path / "out.jsonl").write_text('{"id": 1}\n')
    state_file = tmp_path / "state.db"
    state_file.write_bytes(good_state)
    _corruptions()[damage](state_file)
    digest = _sha(state_file)
    output_digest = _sha(tmp_path / "out.jsonl")
    count("state_corruptions_tried")
    for command in (("run",), ("state", "show"), ("state", "reset")):
        result = cli(*command, pipeline, cwd=tmp_path)
        line = one_error_line(result, 5, str(state_file))
        assert "damaged or not a plugin-host state file" in line, line
        assert "restore it from a backup, or move it aside" in line, line
        assert _sha(state_file) == digest, f"`{' '.join(command)}` changed the state file"
    assert _sha(tmp_path / "out.jsonl") == output_digest


# -- a full or read-only output ----------------------------------------------------------------


def test_a_full_disk_stops_the_run_with_exit_5_and_the_state_unchanged(tmp_path: Path) -> None:
    with PostmanEmulator(EmulatorConfig(events=2000, days=30)) as emu:
        pipeline = write_pipeline(tmp_path, emu.url)
        output = tmp_path / "out.jsonl"
        assert cli("run", pipeline, cwd=tmp_path).code == 0
        before = state_show(pipeline, tmp_path)
        emu.add_events(3000)
        limit = output.stat().st_size + 200_000  # room for a few pages, not for 3000 events

        def full_disk() -> None:  # writes past `limit` fail with EFBIG, as on a full disk
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        result = Child("run", pipeline, cwd=tmp_path, preexec_fn=full_disk).wait()
        one_error_line(result, 5, f"output {output} cannot be", "File too large",
                       "the state was left at the last delivered records")
        assert state_show(pipeline, tmp_path) == before
        count("faults_injected")

        again = cli("run", pipeline, cwd=tmp_path)  # the disk has room again
        assert again.code == 0, again.err
        assert "cutting" in again.err  # the bytes written past the commit were cut
        check_delivery(read_lines(output), emu.events, complete=True)
        check_consistent(pipeline, tmp_path, output)


def test_an_output_on_dev_full_stops_with_exit_5_and_delivers_nothing(
    tmp_path: Path, small_emulator: PostmanEmulator
) -> None:
    pipeline = write_pipeline(tmp_path, small_emulator.url, output="/dev/full")
    result = cli("run", pipeline, cwd=tmp_path)
    one_error_line(result, 5, "output /dev/full cannot be", "No space left on device")
    assert state_show(pipeline, tmp_path)["state"]["checkpoint"] is None
    count("faults_injected")


@contextlib.contextmanager
def _socket_at(path: Path) -> Iterator[None]:
    """A Unix socket file at ``path``: it passes validation (it is no folder, and writable),
    but opening it fails (ENXIO) for every user, root included. Bound from its folder, as a
    socket's own path is limited to about 100 bytes."""
    sock = socket.socket(socket.AF_UNIX)
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        sock.bind(path.name)
    finally:
        os.chdir(here)
    try:
        yield
    finally:
        sock.close()
        path.unlink()


def test_an_output_that_cannot_be_opened_stops_the_run_with_exit_5_and_the_state_unchanged(
    tmp_path: Path,
) -> None:
    """An output that passes validation and then refuses to open (as on a read-only mount, or
    with the append-only attribute): here a socket where the file was, which refuses root too."""
    with PostmanEmulator(EmulatorConfig(events=500, days=30)) as emu:
        pipeline = write_pipeline(tmp_path, emu.url)
        output, aside = tmp_path / "out.jsonl", tmp_path / "aside.jsonl"
        assert cli("run", pipeline, cwd=tmp_path).code == 0
        before = state_show(pipeline, tmp_path)
        emu.add_events(100)
        output.rename(aside)
        digest = _sha(aside)
        with _socket_at(output):
            result = cli("run", pipeline, cwd=tmp_path)
            one_error_line(result, 5, f"output {output} cannot be opened",
                           "the state was left at the last delivered records")
            assert state_show(pipeline, tmp_path) == before
        count("faults_injected")
        aside.rename(output)
        assert _sha(output) == digest

        # a folder in the way: validation says so
        folder_pipeline = write_pipeline(tmp_path, emu.url, file="folder.yaml", output="adir")
        (tmp_path / "adir").mkdir()
        result = cli("run", folder_pipeline, cwd=tmp_path)
        one_error_line(result, 2)
        assert "$.output.settings.path:" in result.err and "is a folder" in result.err
        assert state_show(pipeline, tmp_path) == before

        assert cli("run", pipeline, cwd=tmp_path).code == 0
        check_delivery(read_lines(output), emu.events, complete=True)
        check_consistent(pipeline, tmp_path, output)


@pytest.mark.parametrize("blocked", ["state.db-wal", "state.db-shm"])
def test_a_state_file_that_cannot_be_written_stops_the_run_with_exit_5(
    tmp_path: Path, small_emulator: PostmanEmulator, blocked: str
) -> None:
    """A state file that passes validation and then cannot be written (as on a read-only
    mount): here a folder where SQLite keeps its write-ahead log (it cannot open the state)
    or its shared memory (it opens the state read-only), which stops root too."""
    pipeline = write_pipeline(tmp_path, small_emulator.url)
    assert cli("run", pipeline, cwd=tmp_path).code == 0
    state_file, output = tmp_path / "state.db", tmp_path / "out.jsonl"
    digests = _sha(state_file), _sha(output)
    (tmp_path / blocked).mkdir()
    for command in (("run",), ("state", "reset")):
        result = cli(*command, pipeline, cwd=tmp_path)
        one_error_line(result, 5, f"state file {state_file} cannot be written")
    count("faults_injected")
    assert (_sha(state_file), _sha(output)) == digests
    (tmp_path / blocked).rmdir()
    again = cli("run", pipeline, cwd=tmp_path)
    assert again.code == 0, again.err
    check_delivery(read_lines(output), small_emulator.events, complete=True)
    check_consistent(pipeline, tmp_path, output)

    # a folder in the way: validation says so
    folder_pipeline = write_pipeline(tmp_path, small_emulator.url, file="folder.yaml",
                                     state="statedir")
    (tmp_path / "statedir").mkdir()
    result = cli("run", folder_pipeline, cwd=tmp_path)
    one_error_line(result, 2)
    assert "$.state.path:" in result.err and "is a folder" in result.err





@contextlib.contextmanager
def _unwritable(path: Path) -> Iterator[None]:
    """``path`` not writable for this user: read-only permissions, and as root (whom they do
    not stop) the immutable attribute as well (``chattr +i``)."""
    mode = path.stat().st_mode
    path.chmod(0o444)
    immutable = False
    try:
        if os.access(path, os.W_OK) and shutil.which("chattr"):
            immutable = subprocess.run(["chattr", "+i", str(path)], capture_output=True,
                                       check=False).returncode == 0
        if os.access(path, os.W_OK):
            skip_or_fail(f"{path} stays writable: root ignores read-only permissions, and "
                    "`chattr +i` is not available or not supported on this file system")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


@pytest.mark.parametrize("which", ["output", "state"])
def test_an_output_or_state_file_that_is_not_writable_is_refused_by_validation(
    tmp_path: Path, small_emulator: PostmanEmulator, which: str
) -> None:
    pipeline = write_pipeline(tmp_path, small_emulator.url)
    assert cli("run", pipeline, cwd=tmp_path).code == 0
    state_file, output = tmp_path / "state.db", tmp_path / "out.jsonl"
    target, where = ((output, "$.output.settings.path") if which == "output"
                     else (state_file, "$.state.path"))
    digests = _sha(state_file), _sha(output)
    with _unwritable(target):
        result = cli("run", pipeline, cwd=tmp_path)
    one_error_line(result, 2)
    assert f"{where}: {target} is not writable" in result.err
    assert (_sha(state_file), _sha(output)) == digests
