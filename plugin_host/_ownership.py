"""Which pipeline an output file belongs to: a small record kept beside the file.

An output file is written by one pipeline only. The first run that opens it writes
``.NAME.owner`` beside it (the pipeline's name and the id of its state store), whole and
durable before any record is written. Every later run compares: a run of another
pipeline, or of the same name on another state store, is refused before anything is
cut, written or fetched. Only the owner may cut a tail that its own state did not commit.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ._exceptions import ConfigError, LocalStorageError

__all__ = ["Owner", "claim", "owned_by", "owner_path"]


@dataclass(frozen=True)
class Owner:
    """A pipeline as an output knows it: its name and its state store's id and location."""

    pipeline: str
    state_id: str
    state: str

    def same(self, other: Owner) -> bool:
        """True when both name the same pipeline of the same state store."""
        return (self.pipeline, self.state_id) == (other.pipeline, other.state_id)


def owner_path(output: Path) -> Path:
    """The ownership record of the output file ``output``."""
    real = output.resolve()
    return real.with_name(f".{real.name}.owner")


def _read(record: Path) -> Owner | None:
    try:
        text = record.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LocalStorageError(
            f"ownership record {record} cannot be read ({exc.strerror or exc})"
        ) from None
    try:
        data = json.loads(text)
        return Owner(str(data["pipeline"]), str(data["state_id"]), str(data.get("state", "")))
    except (ValueError, KeyError, TypeError):
        raise LocalStorageError(
            f"ownership record {record} is damaged; if you know which pipeline writes "
            f"{record.name[1:-len('.owner')]}, delete the record and run that pipeline again"
        ) from None


def _write(record: Path, owner: Owner) -> bool:
    """Write the record whole under another name and link it into place; False if one
    was there first (another run claimed the file a moment before)."""
    temp = record.with_name(f"{record.name}.{os.getpid()}.{threading.get_ident()}.new")
    body = json.dumps({
        "pipeline": owner.pipeline,
        "state_id": owner.state_id,
        "state": owner.state,
        "claimed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=1) + "\n"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, body.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, record)
        except FileExistsError:
            return False
        dir_fd = os.open(record.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True
    except OSError as exc:
        raise LocalStorageError(
            f"ownership record {record} cannot be written ({exc.strerror or exc})"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


def _refuse(output: Path, record: Path, holder: Owner, me: Owner) -> ConfigError:
    if holder.pipeline != me.pipeline:
        who = f"pipeline {holder.pipeline} (state {holder.state})"
        what = f"pipeline {me.pipeline} cannot write to it"
    else:
        who = f"pipeline {holder.pipeline} of another state store ({holder.state})"
        what = f"this run of {me.pipeline} uses state {me.state}"
    return ConfigError(
        f"output {output} belongs to {who}; {what}. Give {me.pipeline} an output path of its "
        f"own, or, if {holder.pipeline} of {holder.state} no longer writes there, delete "
        f"{record} to hand the file over"
    )


def owned_by(output: Path, me: Owner) -> bool:
    """True when ``output``'s record names ``me``, False when it has none; a ConfigError
    when it names another pipeline."""
    record = owner_path(output)
    holder = _read(record)
    if holder is not None and not holder.same(me):
        raise _refuse(output, record, holder, me)
    return holder is not None


def claim(output: Path, me: Owner) -> None:
    """Record ``me`` as the owner of ``output``, which had no record; a ConfigError when
    another run recorded its own pipeline a moment before."""
    record = owner_path(output)
    if _write(record, me):
        return
    holder = _read(record)
    if holder is None:
        raise LocalStorageError(f"ownership record {record} changed while it was written")
    if not holder.same(me):
        raise _refuse(output, record, holder, me)
