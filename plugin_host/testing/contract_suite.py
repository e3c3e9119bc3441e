"""The input contract suite: the rules every input must keep, as tests any input can run.

Subclass ``InputContract`` in a test module, name the input class, give settings and
secrets that reach a test upstream, and say how to add records to that upstream::

    import pytest
    from plugin_host.testing import InputContract

    class TestMyInput(InputContract):
        input_class = MyInput

        @pytest.fixture(autouse=True)
        def upstream(self):
            with FakeServer(items=25) as server:          # one fresh upstream per test
                self.server = server
                self.settings = {"base_url": server.url, "page_size": 10}
                self.secrets = {"api_key": server.api_key}
                yield server

        def add_records(self, n):
            return self.server.add_items(n)              # the new records, or None

The tests use the fixtures of ``plugin_host.testing.pytest_plugin`` (``run_input``,
``register_plugin``), which pytest loads when plugin-host is installed. Class attributes
tune the suite (see ``InputContract``); every test runs the input for real.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from .._contract import InputContext
from .._exceptions import AuthError, PluginHostError
from .._manifest import documentation, manifest_errors, secret_names
from .._words import plural
from .driver import InputRun, InputRunner, PluginObject, checkpoint_text, prepare, read_pages

__all__ = ["InputContract"]

_LOGGERS = ("", "plugin_host", "httpx", "httpcore", "urllib3")


class InputContract:
    """Base class of an input's contract tests (pytest collects the ``test_*`` methods).

    Set:
        input_class: the input under test.
        settings, secrets: what a pipeline would pass it (class attributes, or set them on
            ``self`` in an autouse fixture that starts the test upstream).
        add_records(n): add ``n`` new records upstream; return them (the suite then checks
            the next run delivers those very records, by ``record_key``) or None.

    Tune:
        new_records: records added between runs (default 5).
        min_first_run_records: the first run must deliver at least this many (default 1).
        bounded_rounds, bounded_batch: the state-size test runs ``bounded_rounds``
            incremental runs of ``bounded_batch`` new records each (defaults 4 and 25).
        state_growth_allowance: bytes the checkpoint may grow over those runs (default 200).
        checkpoint_version_key: the key that versions a checkpoint (default "version").
        wrong_secret_error: what ``check()`` raises for a wrong secret (default AuthError).
        record_key(record): a record's identity (default: its ``id``, else its JSON).
    """

    input_class: ClassVar[type[Any]]
    settings: Mapping[str, Any] = {}
    secrets: Mapping[str, str] = {}
    new_records: ClassVar[int] = 5
    min_first_run_records: ClassVar[int] = 1
    bounded_rounds: ClassVar[int] = 4
    bounded_batch: ClassVar[int] = 25
    state_growth_allowance: ClassVar[int] = 200
    checkpoint_version_key: ClassVar[str | None] = "version"
    wrong_secret_error: ClassVar[type[Exception]] = AuthError

    # -- hooks a subclass provides -------------------------------------------------------

    def add_records(self, n: int) -> Sequence[Mapping[str, Any]] | None:
        """Add ``n`` new records to the test upstream; return them, or None."""
        raise NotImplementedError(
            f"{type(self).__name__} must define add_records(self, n): add n new records to "
            "the test upstream (the contract checks the next run delivers exactly those)"
        )

    def record_key(self, record: Mapping[str, Any]) -> str:
        """A record's identity, to tell new records from repeats: its ``id`` when it has a
        string or integer one, else its canonical JSON. Override for other identities."""
        ident = record.get("id") if isinstance(record, Mapping) else None
        if isinstance(ident, (str, int)) and not isinstance(ident, bool):
            return f"id:{ident!r}"
        return json.dumps(record, sort_keys=True, default=repr)

    # -- helpers ---------------------------------------------------------------------------

    def run(self, run_input: InputRunner, **kwargs: Any) -> InputRun:
        """One run of the input under test with this test's settings and secrets."""
        return run_input(self.input_class, self.settings, self.secrets, **kwargs)

    def keys(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """The identities of ``records``, sorted."""
        return sorted(self.record_key(r) for r in records)

    def _added(self, n: int) -> list[str] | None:
        added = self.add_records(n)
        if added is None:
            return None
        assert len(added) == n, f"add_records({n}) returned {plural(len(added), 'record')}"
        return self.keys(added)

    def _assert_once(self, records: Sequence[Mapping[str, Any]], what: str) -> list[str]:
        keys = self.keys(records)
        repeated = sorted(k for k, count in Counter(keys).items() if count > 1)
        assert not repeated, (
            f"{what} delivered {plural(len(repeated), 'record')} more than once: "
            + ", ".join(k[:80] for k in repeated[:3]))
        return keys

    def _first(self, run_input: InputRunner) -> InputRun:
        first = self.run(run_input)
        assert len(first.records) >= self.min_first_run_records, (
            f"the first run delivered {plural(len(first.records), 'record')}; the test upstream "
            f"should hold at least {self.min_first_run_records} (min_first_run_records)"
        )
        return first

    # -- the contract ------------------------------------------------------------------------

    def test_manifest_is_valid_and_secrets_write_only(self, register_plugin: Any) -> None:
        """The manifest passes the meta-schema, its documentation is a URL or an installed
        file, every secret is writeOnly, the registry accepts the class, and this test's
        settings and secrets satisfy the manifest."""
        cls = self.input_class
        manifest = getattr(cls, "manifest", None)
        assert manifest_errors(manifest) == []
        assert isinstance(manifest, Mapping)
        if "documentation" in manifest:
            assert documentation(manifest, cls) is not None, (
                f"documentation {manifest['documentation']!r} is neither a URL nor a file "
                "beside the input's module (ship it as package data)")
        secrets_schema = manifest.get("secrets") or {}
        for name, prop in (secrets_schema.get("properties") or {}).items():
            assert prop.get("writeOnly") is True, f"secret {name} is not marked writeOnly: true"
        for method in ("check", "read", "close"):
            assert callable(getattr(cls, method, None)), f"{cls.__name__} has no {method}()"
        registry = register_plugin(PluginObject(inputs=[cls]))
        assert registry.failures == []
        assert registry.input(str(manifest["name"])).cls is cls
        prepare(cls, self.settings, self.secrets, Path.cwd())

    def test_check_succeeds(self, run_input: InputRunner) -> None:
        """``check()`` makes its authenticated call and returns; ``close()`` follows."""
        source = self._instance(run_input, self.secrets)
        try:
            result = source.check()
        except Exception as exc:  # any failure of check() breaks this rule
            pytest.fail(f"check() with the test's settings and secrets raised "
                        f"{type(exc).__name__}: {exc}")
        finally:
            source.close()
        assert result is None, f"check() returned {result!r}; it returns None"

    def test_check_refuses_a_wrong_secret(self, run_input: InputRunner) -> None:
        """With every secret wrong, ``check()`` raises (AuthError by default) and its
        message does not repeat the wrong value."""
        names = secret_names(self.input_class.manifest)
        if not names:
            assert not self.secrets, "secrets given, but the manifest declares none"
            return
        wrong = {name: _wrong(value) for name, value in self.secrets.items()}
        source = self._instance(run_input, wrong)
        try:
            with pytest.raises(self.wrong_secret_error) as caught:
                source.check()
        finally:
            source.close()
        assert isinstance(caught.value, PluginHostError)
        for value in wrong.values():
            assert value not in str(caught.value), "the error message repeats the secret"

    def test_second_run_delivers_only_new_records_once(self, run_input: InputRunner) -> None:
        """Run, add records upstream, run again: the second run delivers exactly the new
        records, each once; a third run with nothing new delivers nothing."""
        first = self._first(run_input)
        first_keys = set(self._assert_once(first.records, "the first run"))
        assert first.checkpoint is not None, "the first run committed no checkpoint"
        added = self._added(self.new_records)
        second = self.run(run_input)
        second_keys = self._assert_once(second.records, "the second run")
        again = sorted(set(second_keys) & first_keys)
        assert not again, f"the second run delivered {plural(len(again), 'record')} the first had"
        assert len(second.records) == self.new_records, (
            f"{plural(self.new_records, 'record')} added; the second run delivered "
            f"{len(second.records)}"
        )
        if added is not None:
            assert second_keys == added, "the second run did not deliver the added records"
        third = self.run(run_input)
        assert third.records == [], f"nothing was added; a third run delivered {len(third.records)}"

    def test_records_are_json_objects(self, run_input: InputRunner) -> None:
        """Every record is a mapping that serializes to JSON (no NaN, no stray types)."""
        first = self._first(run_input)
        for index, record in enumerate(first.records):
            assert isinstance(record, Mapping), f"record {index} is a {type(record).__name__}"
            try:
                json.dumps(record, allow_nan=False)
            except (TypeError, ValueError) as exc:
                pytest.fail(f"record {index} is not JSON: {exc}")

    def test_checkpoints_are_json_and_versioned(self, run_input: InputRunner) -> None:
        """Each page's checkpoint is a JSON object that survives a JSON round trip
        unchanged (no tuples, sets, dates), carries a version, and is what gets committed."""
        first = self._first(run_input)
        assert first.pages, "the first run yielded no page"
        for index, page in enumerate(first.pages):
            where = f"page {index}'s checkpoint"
            assert isinstance(page.checkpoint, Mapping), f"{where} is not a mapping"
            assert page.checkpoint_json is not None, f"{where} is not JSON-serializable"
            assert json.loads(page.checkpoint_json) == page.checkpoint, (
                f"{where} differs from its JSON round trip: it holds a tuple, a set or a "
                "non-string key, or it was changed after it was yielded")
            if self.checkpoint_version_key is not None:
                assert self.checkpoint_version_key in page.checkpoint, (
                    f"{where} has no {self.checkpoint_version_key!r} key")
        last = first.pages[-1].checkpoint_json
        assert last is not None
        assert first.checkpoint == json.loads(last)

    def test_yielded_checkpoints_are_never_mutated(self, run_input: InputRunner) -> None:
        """A checkpoint, once yielded, stays as it was: the input builds a fresh one per page."""
        first = self._first(run_input)
        self._added(self.new_records)
        second = self.run(run_input)
        for run, label in ((first, "first"), (second, "second")):
            for index, page in enumerate(run.pages):
                assert checkpoint_text(page.checkpoint) == page.checkpoint_json, (
                    f"the {label} run changed page {index}'s checkpoint after yielding it")

    def test_resume_from_round_tripped_checkpoints(self, run_input: InputRunner) -> None:
        """Resuming from a page's checkpoint, as yielded or after ``json.loads(json.dumps())``,
        delivers the same records: the rest of the run from a mid-run checkpoint, and
        exactly the new records from the final one."""
        first = self._first(run_input)
        folder = run_input.folder
        for index in sorted({0, len(first.pages) // 2} - {len(first.pages) - 1}):
            raw = first.pages[index].checkpoint
            rest = [r for p in first.pages[index + 1:] for r in p.records]
            expected = self.keys(rest)
            as_yielded = self._direct(copy.deepcopy(raw), folder)
            tripped = json.loads(json.dumps(raw))
            assert self.keys(as_yielded) == expected, (
                f"resuming from page {index}'s checkpoint did not deliver the rest of the run")
            assert self.keys(self._direct(tripped, folder)) == expected
            resumed = self.run(run_input, checkpoint=tripped)
            assert self.keys(resumed.records) == expected
        final = first.pages[-1].checkpoint
        added = self._added(self.new_records)
        from_raw = self.keys(self._direct(copy.deepcopy(final), folder))
        from_json = self.keys(self._direct(json.loads(json.dumps(final)), folder))
        assert from_raw == from_json, "the round-tripped checkpoint resumes differently"
        assert len(from_json) == self.new_records
        if added is not None:
            assert from_json == added

    def test_state_stays_bounded(self, run_input: InputRunner) -> None:
        """The committed checkpoint does not grow with the number of records delivered."""
        self._first(run_input)
        sizes: list[int] = []
        for _ in range(self.bounded_rounds):
            self._added(self.bounded_batch)
            run = self.run(run_input)
            assert len(run.records) == self.bounded_batch
            text = checkpoint_text(run.checkpoint)
            assert text is not None
            sizes.append(len(text))
        assert max(sizes) <= sizes[0] + self.state_growth_allowance, (
            f"the checkpoint grew with the records delivered: {sizes} bytes after runs of "
            f"{plural(self.bounded_batch, 'new record')} each "
            f"(allowance {self.state_growth_allowance})"
        )

    def test_no_secret_in_logs_state_or_output(
        self, run_input: InputRunner, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """With every logger at DEBUG (httpx's too), no secret value appears in a log line,
        a record, a checkpoint, the state file, standard output and error, or the error
        ``check()`` raised (if it did: ``test_check_succeeds`` fails that)."""
        for name in _LOGGERS:
            caplog.set_level(logging.DEBUG, logger=name or None)
        source = self._instance(run_input, self.secrets)
        check_error = ""
        try:
            source.check()
        except PluginHostError as exc:  # test_check_succeeds fails it; here: is it secret?
            check_error = str(exc)
        finally:
            source.close()
        first = self._first(run_input)
        self._added(self.new_records)
        second = self.run(run_input)
        out, err = capsys.readouterr()
        places = {
            "the logs": caplog.text + "\n".join(
                f"{r.getMessage()} {r.args!r}" for r in caplog.records),
            "the records": json.dumps([*first.records, *second.records], default=repr),
            "the checkpoints": "\n".join(
                str(p.checkpoint_json) for p in [*first.pages, *second.pages]),
            "standard output and error": out + err,
            "the error check() raised": check_error,
        }
        state_bytes = b"".join(
            p.read_bytes() for p in sorted(run_input.folder.glob("state.db*")))
        for name, value in self.secrets.items():
            for place, text in places.items():
                leaked = value in text
                assert not leaked, f"secret {name} appears in {place}"
            leaked = value.encode() in state_bytes
            assert not leaked, f"secret {name} appears in the state file"

    # -- internals ---------------------------------------------------------------------------

    def _instance(self, run_input: InputRunner, secrets: Mapping[str, str]) -> Any:
        settings, values = prepare(self.input_class, self.settings, secrets, run_input.folder)
        context = InputContext("test", logging.getLogger(
            f"plugin_host.input.{self.input_class.manifest['name']}"))
        return self.input_class(settings, values, context)

    def _direct(self, checkpoint: Mapping[str, Any], folder: Path) -> list[Mapping[str, Any]]:
        pages = read_pages(self.input_class, self.settings, self.secrets, checkpoint,
                           base_dir=folder)
        return [r for p in pages for r in p.records]


def _wrong(value: str) -> str:
    """A different value of the same length and alphabet."""
    flipped = value[::-1]
    if flipped == value:
        flipped = value[1:] + value[:1]
    if flipped == value:
        flipped = ("x" if value[:1] != "x" else "y") * len(value)
    return flipped

