"""The ``jsonl`` output: JSON lines appended to a file, exactly once across crashes: the
host commits the file's durable length with each checkpoint, and ``open`` cuts any tail
written after the last commit. A file belongs to one pipeline (``_ownership``): another
pipeline's run is refused before anything is cut or written.

With a state that another run can take over (PostgreSQL), each write to the file, and the
cut at ``open``, hold the file's ``flock``; a write first checks the run's fence
(``OutputContext.fence``) under that lock. So a run frozen past its lease writes nothing
once it wakes, and a write that passed its fence before the freeze ends before the run
that took over cuts the file back to the last commit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from .._contract import OutputContext
from .._exceptions import LocalStorageError
from .._jsonl import dumps_lines
from .._ownership import Owner, claim, owned_by
from .._paths import creatable_problem, resolve_path
from .._words import plural

__all__ = ["JsonlOutput"]

_FLUSH_BYTES = 1 << 20


class JsonlOutput:
    """JSON lines appended to a file, exactly once across crashes."""

    manifest: ClassVar[Mapping[str, Any]] = {
        "name": "jsonl",
        "description": "Appends each record as one JSON line to a file; exactly once across "
        "crashes (a restart cuts any tail written after the last commit).",
        "settings": {
            "type": "object",
            "required": ["path"],
            "additionalProperties": False,
            "properties": {
                "path": {
                    "type": "string",
                    "minLength": 1,
                    "description": "The file to append to; relative to the pipeline file's "
                    "folder. Missing folders are created.",
                }
            },
        },
    }

    @classmethod
    def validate_settings(
        cls, settings: Mapping[str, Any], base_dir: Path
    ) -> Iterable[tuple[str, str]]:
        """Refuse a path that cannot be created or written."""
        problem = creatable_problem(resolve_path(str(settings["path"]), base_dir))
        if problem:
            yield "path", problem

    def __init__(self, settings: Mapping[str, Any], context: OutputContext) -> None:
        self.path = resolve_path(str(settings["path"]), context.base_dir)
        self._log = context.logger
        self._fence = context.fence
        self._owner = Owner(context.pipeline_name, context.state_id,
                            context.state_location or "unknown")
        self._fd = -1
        self._offset = 0
        self._buffer = bytearray()
        self._dir_synced = True
        self._regular = True

    def _fail(self, action: str, exc: OSError) -> LocalStorageError:
        reason = exc.strerror or type(exc).__name__
        return LocalStorageError(
            f"output {self.path} cannot be {action} ({reason}); the state was left at the last "
            "delivered records, so the next run resumes from there"
        )

    def open(self, committed: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """Claim the file for this pipeline (another pipeline's file is refused, nothing
        cut), open it, cut this pipeline's uncommitted tail, return the start position."""
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fail("opened", exc) from None
        # a device or a pipe (/dev/null, a FIFO) is no file to own or cut back
        self._regular = not self.path.exists() or self.path.is_file()
        held = owned_by(self.path, self._owner) if self._regular else True
        try:
            existed = self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._dir_synced = existed
        except OSError as exc:
            raise self._fail("opened", exc) from None
        with self._locked():  # a frozen run's write in progress ends before the cut
            try:
                size = os.fstat(self._fd).st_size
            except OSError as exc:
                raise self._fail("opened", exc) from None
            offset = size
            if committed and committed.get("path") == str(self.path):
                offset = self._recover(size, int(committed.get("offset", 0)), held)
        if not held:  # recorded once nothing can fail before the first write
            claim(self.path, self._owner)
        os.lseek(self._fd, offset, os.SEEK_SET)
        self._offset = offset
        return {"path": str(self.path), "offset": offset}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the file's ``flock`` (a device or a pipe: nothing to hold)."""
        if not self._regular:
            yield
            return
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._log.warning("waiting for another run's write to %s to end", self.path)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise self._fail("locked", exc) from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _recover(self, size: int, offset: int, held: bool) -> int:
        """Where writing resumes, given the file's size and the committed length."""
        if size > offset and not held:
            return self._keep_unclaimed_tail(size, offset)
        if size > offset:
            self._log.warning(
                "cutting %s written to %s after the last commit (an interrupted run); "
                "they will be collected again", plural(size - offset, "byte"), self.path,
            )
            try:
                os.ftruncate(self._fd, offset)
                os.fsync(self._fd)
            except OSError as exc:
                raise self._fail("cut back", exc) from None
        elif size < offset:
            if size != 0:
                raise LocalStorageError(
                    f"output {self.path} holds {plural(size, 'byte')}, fewer than the {offset} "
                    "plugin-host committed: it was cut or replaced outside plugin-host. "
                    "Move it aside (a rotated file is fine) and run again"
                )
            self._log.warning(
                "%s is empty or new, shorter than the %d bytes committed: taken as "
                "rotated; writing starts afresh", self.path, offset,
            )
            return 0
        return offset

    def _keep_unclaimed_tail(self, size: int, offset: int) -> int:
        """A tail past the commit that no ownership record says is this pipeline's: kept
        whole (at worst records repeat), or refused when its last line is torn."""
        try:
            last = os.pread(self._fd, 1, size - 1)
        except OSError as exc:
            raise self._fail("read", exc) from None
        if last != b"\n":
            raise LocalStorageError(
                f"output {self.path} ends in an incomplete line after byte {offset}, the "
                f"length pipeline {self._owner.pipeline} last committed, and no ownership "
                "record said it was this pipeline's to cut: nothing was cut. Remove the "
                "incomplete last line (or move the file aside) and run again"
            )
        self._log.warning(
            "%s holds %s after this pipeline's last commit and had no ownership record; they "
            "were kept (records in them may be delivered again)", self.path,
            plural(size - offset, "byte"),
        )
        return size

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Buffer the records as JSON lines; large buffers are written straight away."""
        self._buffer += dumps_lines(records)
        if len(self._buffer) >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        with self._locked():
            self._fence()  # under the lock: no other run cuts the file meanwhile
            view = memoryview(self._buffer)
            try:
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
                    self._offset += written
            except OSError as exc:
                raise self._fail("written", exc) from None
            finally:
                view.release()
                self._buffer = bytearray()

    def durable(self) -> Mapping[str, Any] | None:
        """Write out the buffer, fsync the file (and its folder once), return the length."""
        position = self.written()
        self.sync()
        return position

    def written(self) -> Mapping[str, Any]:
        """Hand the buffer to the system; return the length ``sync`` makes durable."""
        self._flush()
        return {"path": str(self.path), "offset": self._offset}

    def sync(self) -> None:
        """Fsync what was written (and the folder, once); safe beside ``write`` on another
        thread, which only adds bytes past the position ``written`` returned."""
        if not self._regular:  # a device or a pipe: nothing to make durable
            return
        try:
            os.fsync(self._fd)
            if not self._dir_synced:
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
                self._dir_synced = True
        except OSError as exc:
            raise self._fail("made durable", exc) from None

    def close(self) -> None:
        """Close the file; anything not made durable is cut by the next ``open``."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
