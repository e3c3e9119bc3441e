"""The built-in outputs: jsonl (exactly once across restarts) and stdout (JSON lines)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult
from helpers import pipeline_doc, read_jsonl, write_pipeline

from plugin_host import LocalStorageError, OutputContext, Registry, StateStore
from plugin_host.outputs import JsonlOutput

Cli = Callable[..., CliResult]

BIG = 2**64 + 12345
AWKWARD: list[dict[str, Any]] = [
    {"z": 1, "a": 2, "m": 3},
    {"text": "héllo wörld ✓ 😀 日本語", "quote": "a \"b\" \\ c\nd"},
    {"nested": {"list": [1, [2, {"deep": None}], True, False], "empty": {}}, "b": []},
    {"big": BIG, "neg": -(2**70), "unicode": "ünï 🎉"},
    {"float": 1.5, "zero": 0, "": "empty key"},
]


def jsonl(path: Path) -> JsonlOutput:
    logger = logging.getLogger("plugin_host.output.jsonl")
    return JsonlOutput({"path": path.name}, OutputContext("test", path.parent, logger))


def test_records_are_appended_and_the_durable_position_is_the_length(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    out = jsonl(path)
    assert out.open(None) == {"path": str(path), "offset": 0}
    out.write([{"n": 1}, {"n": 2}])
    position = out.durable()
    out.close()
    assert position == {"path": str(path), "offset": path.stat().st_size}
    out = jsonl(path)
    assert out.open(position) == position
    out.write([{"n": 3}])
    out.durable()
    out.close()
    assert read_jsonl(path) == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_a_tail_past_the_committed_offset_is_cut_on_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "out.jsonl"
    out = jsonl(path)
    out.open(None)
    out.write([{"n": 1}])
    committed = out.durable()
    out.write([{"n": 2}, {"n": 3}])
    out.durable()
    out.close()
    with path.open("ab") as f:
        f.write(b'{"n": 4, "par')  # a torn last line
    size = path.stat().st_size
    out = jsonl(path)
    with caplog.at_level(logging.WARNING):
        assert out.open(committed) == committed
    out.close()
    assert read_jsonl(path) == [{"n": 1}]
    cut = size - committed["offset"]
    assert f"cutting {cut} bytes written to {path} after the last commit" in caplog.text


@pytest.mark.parametrize("state", ["empty", "missing"])
def test_an_empty_or_missing_file_is_taken_as_rotated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, state: str
) -> None:
    path = tmp_path / "out.jsonl"
    if state == "empty":
        path.write_bytes(b"")
    committed = {"path": str(path), "offset": 500}
    out = jsonl(path)
    with caplog.at_level(logging.WARNING):
        assert out.open(committed) == {"path": str(path), "offset": 0}
    out.write([{"n": 1}])
    assert out.durable() == {"path": str(path), "offset": len(b'{"n":1}\n')}
    out.close()
    assert "taken as rotated; writing starts afresh" in caplog.text
    assert read_jsonl(path) == [{"n": 1}]


def test_a_shorter_non_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"n":1}\n')
    out = jsonl(path)
    with pytest.raises(LocalStorageError, match="fewer than the 500 plugin-host committed"):
        out.open({"path": str(path), "offset": 500})
    out.close()
    assert path.read_bytes() == b'{"n":1}\n'


def test_a_committed_position_for_another_file_appends(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"n":0}\n')
    out = jsonl(path)
    assert out.open({"path": str(tmp_path / "old.jsonl"), "offset": 3}) == {
        "path": str(path), "offset": 8}
    out.close()


def test_runs_resume_and_append_exactly_once(tmp_path: Path, cli: Cli, token: str) -> None:
    path = write_pipeline(tmp_path / "p.yaml", settings={"total": 10, "page_size": 4})
    assert cli("run", path).code == 0
    assert cli("run", path).code == 0  # nothing new
    write_pipeline(path, settings={"total": 25, "page_size": 4})
    assert cli("run", path).code == 0
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(25)]


def test_a_run_cuts_the_tail_an_interrupted_run_left(
    tmp_path: Path, cli: Cli, token: str
) -> None:
    path = write_pipeline(tmp_path / "p.yaml", settings={"total": 6})
    assert cli("run", path).code == 0
    with (tmp_path / "out.jsonl").open("ab") as f:
        f.write(b'{"n":6}\n{"n":7}\n{"n"')
    write_pipeline(path, settings={"total": 9})
    result = cli("run", path)
    assert result.code == 0
    assert "cutting 20 bytes written to" in result.err
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(9)]


def test_a_rotated_output_file_is_started_afresh(tmp_path: Path, cli: Cli, token: str) -> None:
    path = write_pipeline(tmp_path / "p.yaml", settings={"total": 5})
    assert cli("run", path).code == 0
    (tmp_path / "out.jsonl").rename(tmp_path / "out.jsonl.1")
    write_pipeline(path, settings={"total": 8})
    result = cli("run", path)
    assert result.code == 0
    assert "taken as rotated" in result.err
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(5, 8)]


def test_a_run_refuses_a_shorter_output_file_and_leaves_it(
    tmp_path: Path, cli: Cli, token: str
) -> None:
    path = write_pipeline(tmp_path / "p.yaml", settings={"total": 5})
    assert cli("run", path).code == 0
    (tmp_path / "out.jsonl").write_bytes(b'{"n":0}\n')
    result = cli("run", path)
    assert result.code == 5
    assert "Traceback" not in result.err
    assert result.err.startswith(f"plugin-host: error: output {tmp_path / 'out.jsonl'} holds 8 ")
    assert "Move it aside (a rotated file is fine) and run again" in result.err
    assert len(result.err.splitlines()) == 1
    assert (tmp_path / "out.jsonl").read_bytes() == b'{"n":0}\n'


def _echo(tmp_path: Path, output: dict[str, Any]) -> Path:
    return write_pipeline(tmp_path / "p.yaml", input_type="fixture_echo",
                          settings={"records": AWKWARD}, output=output)


def test_records_reach_a_jsonl_file_unchanged(tmp_path: Path, cli: Cli) -> None:
    assert cli("run", _echo(tmp_path, {"type": "jsonl", "settings": {"path": "o.jsonl"}})).code == 0
    assert_unchanged((tmp_path / "o.jsonl").read_bytes())


def test_stdout_output_emits_the_records_as_json_lines_unchanged(
    tmp_path: Path, cli: Cli
) -> None:
    result = cli("run", "--quiet", _echo(tmp_path, {"type": "stdout"}))
    assert result.code == 0, result.err
    assert result.err == ""
    assert_unchanged(result.out.encode("utf-8"))


def assert_unchanged(data: bytes) -> None:
    assert data.endswith(b"\n")
    lines = data.decode("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == AWKWARD
    for line, record in zip(lines, AWKWARD, strict=True):
        assert list(json.loads(line)) == list(record)  # key order kept
    assert "😀" in lines[1] and "ünï 🎉" in lines[3]  # UTF-8, not \\u escapes
    assert str(BIG) in lines[3]
    assert json.loads(lines[3])["big"] == BIG


def test_state_show_records_the_jsonl_position(
    tmp_path: Path, registry: Registry, cli: Cli, token: str
) -> None:
    path = write_pipeline(tmp_path / "p.yaml", pipeline_doc(state={"path": "s.db"}))
    assert cli("run", path).code == 0
    with StateStore(tmp_path / "s.db") as store:
        saved = store.load("counter")
    assert saved is not None
    assert saved.output == {"path": str(tmp_path / "out.jsonl"),
                            "offset": (tmp_path / "out.jsonl").stat().st_size}
