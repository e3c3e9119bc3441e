"""When a run commits: the batch's rule on plain values (pages pending, seconds since the
last commit, the commit policy), and the groups of an output written in the commit."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from plugin_host import CommitPolicy
from plugin_host._batch import JOINED_BEHIND, JOINED_PAGES, Batch, Committer


def _batch(pages: int = 32, seconds: float = 1.0) -> Batch:
    return Batch(CommitPolicy(pages=pages, seconds=seconds), since=100.0)


def test_a_batch_is_due_once_it_holds_the_policys_pages() -> None:
    batch = _batch(pages=3, seconds=3600)
    for checkpoint in ('{"n": 1}', '{"n": 2}'):
        batch.add(checkpoint)
        assert not batch.due(100.5)
    batch.add('{"n": 3}')
    assert batch.due(100.5)
    assert (batch.pages, batch.checkpoint) == (3, '{"n": 3}')  # the last page's checkpoint


def test_a_batch_is_due_once_the_policys_seconds_have_passed_since_the_last_commit() -> None:
    batch = _batch(pages=32, seconds=1.0)
    batch.add('{"n": 1}')
    assert not batch.due(100.99)
    assert batch.due(101.0)


def test_an_empty_batch_is_never_due() -> None:
    batch = _batch(pages=1, seconds=0.0)
    assert not batch.due(100.0)
    assert not batch.due(1e9)


def test_a_commit_starts_the_next_batch_empty_and_counts_itself() -> None:
    batch = _batch(pages=2, seconds=1.0)
    batch.add('{"n": 1}')
    batch.add('{"n": 2}')
    batch.committed(100.5)
    assert (batch.checkpoint, batch.pages, batch.since, batch.commits) == (None, 0, 100.5, 1)
    batch.add('{"n": 3}')
    assert not batch.due(101.4)  # the seconds count from the commit, not from the start
    assert batch.due(101.5)
    batch.committed(101.5)
    assert batch.commits == 2


class _RowsOutput:
    """An output writing its rows in the state's commit transaction (as ``postgres`` does in
    the state's database): each group handed over by ``written`` is written by ``write_in``."""

    manifest: ClassVar[Mapping[str, Any]] = {"name": "rows"}

    def __init__(self) -> None:
        self.buffered: list[int] = []
        self.handed: list[list[int]] = []

    def open(self, committed: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        return None

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.buffered += [int(r["n"]) for r in records]

    def durable(self) -> Mapping[str, Any] | None:
        raise AssertionError("a joined output is never made durable apart")

    def written(self) -> Mapping[str, Any] | None:
        self.handed.append(self.buffered)
        self.buffered = []
        return None

    def sync(self) -> None:
        raise AssertionError("a joined output is never synced apart")

    def close(self) -> None:
        pass

    def joins_state(self) -> bool:
        return True

    def write_in(self, connection: Any) -> Mapping[str, Any] | None:
        connection.extend(self.handed.pop(0))
        return None


class _SlowStore:
    """A store whose first commit waits until ``release`` is set (a database that is behind);
    it keeps each commit's rows and checkpoint."""

    shared_transactions = True

    def __init__(self) -> None:
        self.release = threading.Event()
        self.commits: list[tuple[str, list[int]]] = []

    def commit(self, name: str, input_type: str, checkpoint: str, output: Any, *,
               within: Any = None) -> None:
        if not self.commits:
            self.release.wait(timeout=10)  # a run that waited for this commit ends here
        rows: list[int] = []
        within(rows)
        self.commits.append((checkpoint, rows))


def test_rows_written_in_the_commit_keep_coming_while_the_database_is_behind() -> None:
    output, store = _RowsOutput(), _SlowStore()
    committer = Committer(output, store, ("p", "demo"), CommitPolicy(pages=32, seconds=3600))
    pages = JOINED_PAGES * JOINED_BEHIND - 1  # the most a run gets ahead of a slow commit
    for n in range(1, pages + 1):
        output.write([{"n": n}])
        committer.add(json.dumps({"n": n}))
    store.release.set()  # the first group's commit, in flight all along, gets through
    committer.finish()
    # the first group is short; the pages written while it was in flight, one group after it
    assert store.commits == [
        (json.dumps({"n": JOINED_PAGES}), list(range(1, JOINED_PAGES + 1))),
        (json.dumps({"n": pages}), list(range(JOINED_PAGES + 1, pages + 1))),
    ]
