"""A run reuses the validation of a configuration its state remembers, and only that one.

The JSON Schema checks of the pipeline file, the settings and the manifests are skipped when
the validation cache holds the fingerprint of the same file, manifests, host and jsonschema
versions; secrets, paths and each input's own checks run every time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from helpers import TOKEN_ENV, clean_env, pipeline_doc, read_jsonl, write_pipeline

from plugin_host import Registry, _validation_cache
from plugin_host._pipeline import load_pipeline
from plugin_host._validation_cache import fingerprint, remember, remembered
from plugin_host.state.sqlite import StateStore
from plugin_host.testing import PluginObject

Cli = Any


def _first_run(tmp_path: Path, cli: Cli, **kwargs: Any) -> Path:
    pipeline = write_pipeline(tmp_path / "pipeline.yaml", **kwargs)
    assert cli("run", pipeline).code == 0
    return pipeline


def test_a_second_run_reuses_the_validation_and_a_changed_file_is_validated_again(
    tmp_path: Path, registry: Registry, cli: Cli, token: str
) -> None:
    pipeline = _first_run(tmp_path, cli, settings={"total": 5})
    first = load_pipeline(pipeline, registry, reuse=True)
    assert first.validation_reused
    assert remembered(tmp_path / ".plugin-host" / "state.db", "counter") == first.fingerprint

    # the same file, one setting now out of range: the schema check runs and reports it
    write_pipeline(pipeline, settings={"total": -1})
    result = cli("run", pipeline)
    assert result.code == 2
    assert "$.input.settings.total: must be at least 0 (minimum)" in result.err
    write_pipeline(pipeline, settings={"total": 7})
    assert not load_pipeline(pipeline, registry, reuse=True).validation_reused
    assert cli("run", pipeline).code == 0
    assert load_pipeline(pipeline, registry, reuse=True).validation_reused
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 7


def test_secrets_and_paths_are_checked_on_every_run(
    tmp_path: Path, registry: Registry, cli: Cli, token: str, monkeypatch: Any
) -> None:
    pipeline = _first_run(tmp_path, cli)
    monkeypatch.setenv(TOKEN_ENV, "tok-x")  # shorter than the manifest's minLength 8
    result = cli("run", pipeline)
    assert result.code == 2
    assert "$.input.secrets.token: must be at least 8 characters long (minLength)" in result.err
    assert "tok-x" not in result.err
    monkeypatch.setenv(TOKEN_ENV, "nope-12345")  # long enough, not matching ^tok-
    assert "$.input.secrets.token: must start with 'tok-' (pattern)" in cli("run", pipeline).err
    monkeypatch.setenv(TOKEN_ENV, token)
    (tmp_path / "out.jsonl").unlink()
    (tmp_path / "out.jsonl").mkdir()  # the output path is now a folder
    result = cli("run", pipeline)
    assert result.code == 2 and "$.output.settings.path" in result.err


def test_a_changed_manifest_changes_the_fingerprint(
    tmp_path: Path, registry: Registry, token: str
) -> None:
    pipeline = load_pipeline(write_pipeline(tmp_path / "p.yaml"), registry)
    text = pipeline.path.read_text()
    before = fingerprint(text, pipeline.input, pipeline.output)
    assert before == pipeline.fingerprint
    changed = dict(pipeline.input.manifest, description="another")
    moved = type(pipeline.input)(**{**pipeline.input.__dict__, "manifest": changed})
    assert fingerprint(text, moved, pipeline.output) != before
    assert fingerprint(text + " ", pipeline.input, pipeline.output) != before
    assert token not in before


def test_another_jsonschema_version_validates_in_full(
    tmp_path: Path, registry: Registry, cli: Cli, token: str, monkeypatch: Any
) -> None:
    """jsonschema decides what is valid: after an upgrade (or a downgrade) of it, the
    configuration it accepted before is validated in full again, then remembered anew."""
    pipeline = _first_run(tmp_path, cli)
    assert load_pipeline(pipeline, registry, reuse=True).validation_reused
    real = metadata.version
    monkeypatch.setattr(_validation_cache.metadata, "version",
                        lambda name: "0.0.1" if name == "jsonschema" else real(name))
    _validation_cache.jsonschema_version.cache_clear()
    try:
        assert not load_pipeline(pipeline, registry, reuse=True).validation_reused
        assert cli("run", pipeline).code == 0  # validated in full, remembered with 0.0.1
        assert load_pipeline(pipeline, registry, reuse=True).validation_reused
    finally:
        monkeypatch.setattr(_validation_cache.metadata, "version", real)
        _validation_cache.jsonschema_version.cache_clear()
    assert not load_pipeline(pipeline, registry, reuse=True).validation_reused


def test_a_reset_forgets_the_validation(
    tmp_path: Path, registry: Registry, cli: Cli, token: str
) -> None:
    pipeline = _first_run(tmp_path, cli)
    assert load_pipeline(pipeline, registry, reuse=True).validation_reused
    assert cli("state", "reset", pipeline).code == 0
    assert not load_pipeline(pipeline, registry, reuse=True).validation_reused


def test_validate_and_check_always_validate_in_full(
    tmp_path: Path, registry: Registry, cli: Cli, token: str
) -> None:
    pipeline = _first_run(tmp_path, cli)
    assert not load_pipeline(pipeline, registry).validation_reused
    state = tmp_path / ".plugin-host" / "state.db"
    with StateStore(state) as store:
        remember(store, "counter", "0" * 64)  # a fingerprint of something else
    assert not load_pipeline(pipeline, registry, reuse=True).validation_reused


def test_a_bad_manifest_is_never_reused(tmp_path: Path, registry: Registry, token: str) -> None:
    class Broken:
        manifest = {"name": "fixture_counter", "settings": {"type": "nonsense"}}

    assert registry.unchecked("input", "fixture_counter") is not None
    registry.add_plugin(PluginObject(inputs=[Broken]), "second", "second-dist")
    assert registry.unchecked("input", "fixture_counter") is None  # the name is taken twice
    assert [f.plugin for f in registry.failures] == ["second"]
    assert registry.inputs["fixture_counter"].plugin != "second"


def _days_ago(days: int) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_runs_of_a_plain_pipeline_do_not_load_jsonschema(tmp_path: Path) -> None:
    """In a fresh interpreter: neither the first run of a plain pipeline (checked by the
    fast path) nor a later one (its validation reused) imports jsonschema; a pipeline
    with a mistake does, for the message."""
    from postman_audit.emulator import EmulatorConfig, PostmanEmulator

    with PostmanEmulator(EmulatorConfig(events=50, days=2)) as emulator:
        key = tmp_path / "key.txt"
        key.write_text(emulator.config.api_key)
        doc = pipeline_doc(input_type="postman_audit", name="audit",
                           settings={"base_url": emulator.url,
                                     "backfill_start_time": _days_ago(3)},
                           secrets={"api_key": {"file": "key.txt"}})
        pipeline = write_pipeline(tmp_path / "pipeline.yaml", doc)
        probe = ("import sys, plugin_host.cli as c; code = c.main(['run', sys.argv[1]]); "
                 "print(json.dumps([code, 'jsonschema' in sys.modules]))")
        seen = []
        for _ in range(2):
            done = subprocess.run([sys.executable, "-c", "import json; " + probe, pipeline],
                                  cwd=tmp_path, env=clean_env(), capture_output=True,
                                  text=True, timeout=60, check=False)
            seen.append(json.loads(done.stdout.strip().splitlines()[-1]))
        doc["input"]["settings"]["page_size"] = 301
        write_pipeline(tmp_path / "pipeline.yaml", doc)
        done = subprocess.run([sys.executable, "-c", "import json; " + probe, pipeline],
                              cwd=tmp_path, env=clean_env(), capture_output=True,
                              text=True, timeout=60, check=False)
        seen.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert seen == [[0, False], [0, False], [2, True]]
    assert "$.input.settings.page_size: must be at most 300" in done.stderr
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 50


def test_the_pipeline_loader_does_not_import_the_state_store() -> None:
    """Step two of the road (load and validate) never reaches into step five (the state)."""
    code = ("import sys, plugin_host._pipeline; "
            "print(any(m.startswith('plugin_host.state.') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"
