"""When a run commits: the batch's rule on plain values (pages pending, seconds since the
last commit, the commit policy)."""

from __future__ import annotations

from plugin_host import CommitPolicy
from plugin_host._batch import Batch


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
