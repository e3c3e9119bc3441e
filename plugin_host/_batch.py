"""The batch between two commits, and the committer that makes it durable.

A run writes pages into a ``Batch``: how many are pending, the checkpoint they end at and
when the last commit was made. ``Batch.due`` is the rule of grouped commits: a batch is
committed once ``CommitPolicy.pages`` pages are pending or ``CommitPolicy.seconds`` have
passed since the last commit. The ``Committer`` commits it: the output made durable, then
the checkpoint and the output's position in one transaction of the state.

An output that splits ``durable`` into ``written`` and ``sync`` (``BackgroundSyncOutput``)
is committed in the background: the sync and the state commit of one batch run on a
thread of their own while the next pages are fetched, one commit at a time and in order.
The last commit of a run (``finish``), also after a failure or a stop, is made in the
foreground, after the commit in flight, so a run never ends with a commit in flight.

An output that writes in the state's own transaction (``TransactionalOutput``, with a
store that has ``shared_transactions``) is never made durable apart: each commit hands the
store its ``write_in``. When it has ``written`` too (the ``postgres`` output), ``written``
hands the group's records over on the run's thread, and the commit transaction, with
``write_in`` writing exactly that group, runs on the commit thread like a background sync
(one at a time, in order; the last one in the foreground). The database's work on a group
(each row parsed, indexed, logged) is the bulk of such a commit, so these groups are
short (``JOINED_PAGES``), keeping the last commit, the one a run waits for, short too; and
a group due while the commit before it still runs is not waited for: it grows until the
commit thread is free, up to ``JOINED_BEHIND`` times its size.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ._contract import BackgroundSyncOutput, Output, StateStore, TransactionalOutput

__all__ = ["JOINED_BEHIND", "JOINED_PAGES", "Batch", "CommitPolicy", "Committer"]

#: A group written in the state's commit transaction (on the commit thread) is due every
#: this many pages.
JOINED_PAGES = 8
#: How many such groups' worth of pages a run gets ahead of the commit in flight, at most.
JOINED_BEHIND = 4


@dataclass(frozen=True)
class CommitPolicy:
    """How often a run makes its output durable and commits the checkpoint."""

    pages: int = 32
    seconds: float = 1.0


@dataclass
class Batch:
    """The pages written since the last commit: how many, and the checkpoint (JSON text)
    that holds once they are committed; with the count of commits made so far."""

    policy: CommitPolicy
    since: float  # when the last commit was made, by time.monotonic()
    checkpoint: str | None = None
    pages: int = 0
    commits: int = 0

    def add(self, checkpoint: str) -> None:
        """One more page written, ending at ``checkpoint``."""
        self.checkpoint = checkpoint
        self.pages += 1

    def due(self, now: float) -> bool:
        """True when pages are pending and they reach the policy's count, or the policy's
        seconds have passed since the last commit."""
        return self.pages > 0 and (self.pages >= self.policy.pages
                                   or now - self.since >= self.policy.seconds)

    def committed(self, now: float) -> None:
        """The pending pages were committed at ``now``: the next batch starts empty."""
        self.checkpoint, self.pages, self.since = None, 0, now
        self.commits += 1


def _nothing() -> None:
    """The sync of a group written in the commit's own transaction: none apart."""


class Committer:
    """Commits a run's batches into ``store`` under the pipeline's and input's names."""

    def __init__(self, output: Output, store: StateStore, names: tuple[str, str],
                 policy: CommitPolicy) -> None:
        self.batch = Batch(policy, since=time.monotonic())
        self._output = output
        self._joined = output if (store.shared_transactions
                                  and isinstance(output, TransactionalOutput)
                                  and output.joins_state()) else None
        self._background = output if isinstance(output, BackgroundSyncOutput) else None
        if self._joined is not None and self._background is not None:
            self.batch.policy = replace(policy, pages=min(policy.pages, JOINED_PAGES))
        self._store, self._names = store, names
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def add(self, checkpoint: str) -> None:
        """A page is written, ending at ``checkpoint``: commit its batch when it is due (in
        the background when the output allows it)."""
        batch = self.batch
        batch.add(checkpoint)
        if batch.due(time.monotonic()):
            background = self._background
            if background is None:
                self._commit_now(checkpoint)
            elif self._joined is not None:  # the group handed over, written in the commit
                if self._busy() and batch.pages < JOINED_BEHIND * batch.policy.pages:
                    return  # the commit before it still runs: the group grows meanwhile
                background.written()
                self._start(checkpoint, None, _nothing)
            else:
                self._start(checkpoint, background.written(), background.sync)
            batch.committed(time.monotonic())

    def finish(self) -> None:
        """Commit what is pending in the foreground, after the commit in flight (whose
        error it raises)."""
        self.wait()
        checkpoint = self.batch.checkpoint
        if checkpoint is not None:
            self._commit_now(checkpoint)
            self.batch.committed(time.monotonic())

    def _commit_now(self, checkpoint: str) -> None:
        """Commit in the foreground: the output made durable, or its records written in the
        commit's own transaction."""
        if self._joined is not None:
            if self._background is not None:
                self._background.written()
            self._store.commit(*self._names, checkpoint, None, within=self._joined.write_in)
        else:
            self._store.commit(*self._names, checkpoint, self._output.durable())

    def _start(self, checkpoint: str, position: Mapping[str, Any] | None,
               sync: Callable[[], None]) -> None:
        """Once the commit in flight is done, commit ``checkpoint`` with ``position`` on a
        thread of its own as soon as the output has synced it."""
        self.wait()
        thread = threading.Thread(target=self._commit, args=(checkpoint, position, sync),
                                  name="plugin-host-commit", daemon=True)
        thread.start()
        self._thread = thread

    def _commit(self, checkpoint: str, position: Mapping[str, Any] | None,
                sync: Callable[[], None]) -> None:
        try:
            sync()
            if self._joined is not None:
                self._store.commit(*self._names, checkpoint, None, within=self._joined.write_in)
            else:
                self._store.commit(*self._names, checkpoint, position)
        except BaseException as exc:  # handed to the run's thread by ``wait``
            self._error = exc

    def _busy(self) -> bool:
        """True while a commit runs on the commit thread."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Wait for the commit in flight, if any; raise what it raised."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    def settle(self) -> None:
        """Wait until no commit is in flight, through a second Ctrl-C too, and drop its
        error: the run is failing already, and the state stays at the last commit made."""
        while self._thread is not None:
            with contextlib.suppress(KeyboardInterrupt):
                self._thread.join()
                self._thread = None
        self._error = None
