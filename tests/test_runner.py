"""run_once: what is committed with which records, the commit policy, stopping early."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers import read_jsonl, write_pipeline

from plugin_host import (
    CommitPolicy,
    InputContext,
    LocalStorageError,
    Page,
    PluginHostError,
    Registry,
    StateStore,
    UpstreamError,
    hookimpl,
    load_pipeline,
    run_once,
)
from plugin_host._pipeline import Pipeline
from plugin_host._secrets import redactor
from plugin_host._service import check_pipeline
from plugin_host.outputs import JsonlOutput

_EMPTY = {"type": "object", "properties": {}, "additionalProperties": False}


class ReusedCursor:
    """Keeps one cursor mapping, advances it before each fetch, and fails fetching 4..5."""

    manifest: Mapping[str, Any] = {"name": "reused_cursor", "description": "test input",
                                   "settings": _EMPTY}
    fail = True

    def __init__(self, settings: Any, secrets: Any, context: InputContext) -> None:
        pass

    def check(self) -> None:
        pass

    def read(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        cursor = {"next": checkpoint["next"] if checkpoint else 0}
        while cursor["next"] < 8:
            start = cursor["next"]
            cursor["next"] = start + 2
            if start == 4 and self.fail:
                raise RuntimeError("the upstream failed while fetching 4..5")
            yield Page([{"n": start}, {"n": start + 1}], cursor)

    def close(self) -> None:
        pass


class BadCheckpoint(ReusedCursor):
    """Its third page's checkpoint is not JSON, or holds the secret."""

    manifest: Mapping[str, Any] = {
        "name": "bad_checkpoint", "description": "test input",
        "settings": {"type": "object", "additionalProperties": False, "properties": {
            "leak": {"type": "boolean", "description": "put the secret in the checkpoint"}}},
        "secrets": {"type": "object", "additionalProperties": False, "properties": {
            "key": {"type": "string", "writeOnly": True, "description": "a key"}}},
    }

    def __init__(self, settings: Any, secrets: Any, context: InputContext) -> None:
        self.bad: Any = {"key": secrets["key"]} if settings.get("leak") else {"at": object()}

    def read(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        for i in range(0, 8, 2):
            yield Page([{"n": i}, {"n": i + 1}], self.bad if i == 4 else {"next": i + 2})


class QuotesItsKey(ReusedCursor):
    """An upstream that quotes the key back in its error text, on check and on read."""

    manifest: Mapping[str, Any] = {**BadCheckpoint.manifest, "name": "quotes_its_key"}

    def __init__(self, settings: Any, secrets: Any, context: InputContext) -> None:
        self.key = secrets["key"]
        self.log = context.logger

    def check(self) -> None:
        raise UpstreamError(f"upstream said: key {self.key} is not allowed here")

    def read(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        self.log.warning("about to use %s", self.key)
        raise UpstreamError(f"upstream said: key {self.key} is not allowed here")
        yield  # a generator all the same


class SlowSync(JsonlOutput):
    """The jsonl output with a slow disk: each ``sync`` takes 50 ms, and one may fail."""

    manifest: Mapping[str, Any] = {**JsonlOutput.manifest, "name": "slow_sync"}
    events: list[tuple[str, Any, str]] = []
    fail_sync: int | None = None  # which sync (0, 1, ...) fails

    fail_write: int | None = None  # which record number's write fails

    def write(self, records: Any) -> None:
        self.events.append(("write", records[0]["n"], threading.current_thread().name))
        if records[0]["n"] == self.fail_write:
            raise LocalStorageError("output out.jsonl cannot be written (test: disk gone)")
        super().write(records)

    def close(self) -> None:
        self.events.append(("close", None, threading.current_thread().name))
        super().close()

    def sync(self) -> None:
        n = sum(1 for e in self.events if e[0] == "sync")
        self.events.append(("sync", n, threading.current_thread().name))
        time.sleep(0.05)
        if n == self.fail_sync:
            raise LocalStorageError("output out.jsonl cannot be made durable (test: disk full)")
        super().sync()
        self.events.append(("synced", n, threading.current_thread().name))


class _Plugin:
    @hookimpl
    def plugin_host_register_inputs(self, register: Any) -> None:
        register(ReusedCursor)
        register(BadCheckpoint)
        register(QuotesItsKey)

    @hookimpl
    def plugin_host_register_outputs(self, register: Any) -> None:
        register(SlowSync)


@pytest.fixture
def local_registry(registry: Registry) -> Registry:
    assert registry.add_plugin(_Plugin(), "runner_tests", "tests")
    return registry


def _pipeline(tmp_path: Path, input_type: str, **kwargs: Any) -> Path:
    return write_pipeline(tmp_path / "p.yaml", input_type=input_type, state={"path": "s.db"},
                          **kwargs)


def _committed(tmp_path: Path, name: str) -> Any:
    with StateStore(tmp_path / "s.db") as store:
        saved = store.load(name)
    return saved.checkpoint if saved else None


def test_a_reused_checkpoint_mapping_commits_what_was_delivered(
    tmp_path: Path, local_registry: Registry
) -> None:
    pipeline = load_pipeline(_pipeline(tmp_path, "reused_cursor", name="reused"),
                             local_registry)
    with pytest.raises(RuntimeError):
        run_once(pipeline, policy=CommitPolicy(pages=100, seconds=3600))
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(4)]
    assert _committed(tmp_path, "reused") == {"next": 4}
    ReusedCursor.fail = False
    try:
        run_once(pipeline)
    finally:
        ReusedCursor.fail = True
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(8)]


@pytest.mark.parametrize(("leak", "message"), [
    (False, "input bad_checkpoint yielded a checkpoint that is not JSON"),
    (True, "input bad_checkpoint put a secret into its checkpoint; it was not saved"),
])
def test_a_bad_checkpoint_is_refused_before_its_records_are_written(
    tmp_path: Path, local_registry: Registry, leak: bool, message: str
) -> None:
    key = "key-never-stored-5150"
    path = _pipeline(tmp_path, "bad_checkpoint", name="bad", settings={"leak": leak},
                     secrets={"key": key})
    with pytest.raises(PluginHostError, match=message):
        run_once(load_pipeline(path, local_registry), policy=CommitPolicy(pages=100))
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(4)]
    assert _committed(tmp_path, "bad") == {"next": 4}
    for state_file in tmp_path.glob("s.db*"):
        assert key.encode() not in state_file.read_bytes()


def test_the_commit_policy_groups_pages(
    tmp_path: Path, registry: Registry, token: str
) -> None:
    path = write_pipeline(tmp_path / "p.yaml", settings={"total": 30, "page_size": 3})
    summary = run_once(load_pipeline(path, registry), policy=CommitPolicy(pages=4, seconds=3600))
    assert (summary.records, summary.pages, summary.commits) == (30, 10, 3)
    assert summary.stopped_early is False
    assert summary.as_dict()["records"] == 30
    assert summary.line().startswith("counter: 30 records in 10 pages, 10 requests, ")


def test_a_stop_request_ends_the_run_after_the_page_in_hand(
    tmp_path: Path, registry: Registry, token: str
) -> None:
    path = write_pipeline(tmp_path / "p.yaml", settings={"total": 30, "page_size": 3},
                          state={"path": "s.db"})
    stop = threading.Event()
    stop.set()
    summary = run_once(load_pipeline(path, registry), stop_event=stop)
    assert (summary.records, summary.stopped_early) == (3, True)
    assert summary.line().endswith("[stopped early]")
    assert _committed(tmp_path, "counter") == {"next": 3}
    summary = run_once(load_pipeline(path, registry))
    assert summary.records == 27
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(30)]


def test_a_secret_quoted_back_by_an_upstream_is_redacted_for_a_library_caller(
    tmp_path: Path, local_registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """A Pipeline built by hand (no load_pipeline, which registers secrets on the CLI's
    path): the host still keeps the key out of errors and of every redacted log line."""
    key = "k-" + secrets.token_hex(8)
    pipeline = Pipeline(
        path=tmp_path / "p.yaml", name="quoting", input=local_registry.input("quotes_its_key"),
        settings={}, secrets={"key": key}, output=local_registry.output("jsonl"),
        output_settings={"path": str(tmp_path / "out.jsonl")}, state_path=tmp_path / "s.db")
    for drive in (run_once, check_pipeline):
        with pytest.raises(UpstreamError) as caught:
            drive(pipeline)
        assert key not in str(caught.value) and "upstream said: key *** is not" in str(
            caught.value)
    assert key not in redactor(caplog.text) and "about to use ***" in redactor(caplog.text)


def _slow_sync_pipeline(tmp_path: Path) -> Path:
    return write_pipeline(tmp_path / "p.yaml", settings={"total": 30, "page_size": 3},
                          output={"type": "slow_sync", "settings": {"path": "out.jsonl"}},
                          state={"path": "s.db"})


def test_pages_are_fetched_and_written_while_a_commit_waits_for_the_disk(
    tmp_path: Path, local_registry: Registry, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SlowSync, "events", [])
    pipeline = load_pipeline(_slow_sync_pipeline(tmp_path), local_registry)
    summary = run_once(pipeline, policy=CommitPolicy(pages=4, seconds=3600))
    events = SlowSync.events
    syncs = [e for e in events if e[0] == "sync"]
    assert (summary.records, summary.commits, len(syncs)) == (30, 3, 3)
    # the commits after pages 4 and 8 ran on the commit thread while pages went on; the
    # last one (pages 9 and 10) was made before the run returned
    assert [e[2] for e in syncs] == ["plugin-host-commit"] * 2 + ["MainThread"]
    overlapped = [n for n in range(2) if any(
        e[0] == "write" for e in events[events.index(syncs[n]):events.index(
            ("synced", n, "plugin-host-commit"))])]
    assert overlapped, events
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(30)]
    assert _committed(tmp_path, "counter") == {"next": 30}


def test_a_commit_that_fails_in_the_background_stops_the_run_at_the_last_good_commit(
    tmp_path: Path, local_registry: Registry, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SlowSync, "events", [])
    monkeypatch.setattr(SlowSync, "fail_sync", 1)
    path = _slow_sync_pipeline(tmp_path)
    with pytest.raises(LocalStorageError, match="test: disk full"):
        run_once(load_pipeline(path, local_registry), policy=CommitPolicy(pages=2, seconds=3600))
    assert _committed(tmp_path, "counter") == {"next": 6}  # the first commit, and no other
    monkeypatch.setattr(SlowSync, "fail_sync", None)
    run_once(load_pipeline(path, local_registry), policy=CommitPolicy(pages=2, seconds=3600))
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(30)]


def test_the_output_is_closed_only_after_the_commit_in_flight_has_ended(
    tmp_path: Path, local_registry: Registry, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write fails while the commit of the pages before it waits for the disk: the run
    stops with the write's error, after that commit, and the next run goes on from it."""
    monkeypatch.setattr(SlowSync, "events", [])
    monkeypatch.setattr(SlowSync, "fail_write", 6)  # the page after the first commit
    path = _slow_sync_pipeline(tmp_path)
    with pytest.raises(LocalStorageError, match="test: disk gone"):
        run_once(load_pipeline(path, local_registry), policy=CommitPolicy(pages=2, seconds=3600))
    kinds = [e[0] for e in SlowSync.events]
    assert kinds.index("synced") < kinds.index("close")
    assert _committed(tmp_path, "counter") == {"next": 6}
    monkeypatch.setattr(SlowSync, "fail_write", None)
    run_once(load_pipeline(path, local_registry))
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(30)]
