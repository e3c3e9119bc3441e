"""The README's main command: `plugin-host demo` runs offline against the bundled emulator."""

from __future__ import annotations

import json
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import Venv, clean_env, read_jsonl
from ocsf_check import assert_valid

from plugin_host._demo import _file_names


def _demo(folder: Path, events: int, *more: str) -> tuple[dict, list[dict]]:
    result = subprocess.run(
        [sys.executable, "-m", "plugin_host", "demo", "--dir", str(folder),
         "--events", str(events), *more],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    lines = (folder / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return summary, [json.loads(line) for line in lines]


def test_demo_collects_every_emulated_event_once_and_says_what_it_did(tmp_path: Path) -> None:
    summary, records = _demo(tmp_path / "demo", 2000)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 2000
    assert summary["records"] == 2000
    assert summary["requests"] == summary["pages"] >= 2000 // 300
    assert summary["output"] == str(tmp_path / "demo" / "events.jsonl")
    assert all({"action", "timestamp", "data"} <= r.keys() for r in records)


def test_demo_with_ocsf_writes_one_valid_ocsf_event_per_emulated_event(tmp_path: Path) -> None:
    """``--ocsf``: every event of the emulator becomes OCSF 1.5.0 events (one per user of a
    role change) that the official schema accepts, each once, its original in raw_data."""
    summary, events = _demo(tmp_path / "demo", 600, "--ocsf")
    pipeline = yaml.safe_load((tmp_path / "demo" / "pipeline.yaml").read_text())
    assert pipeline["transforms"] == [{"type": "ocsf"}]
    assert summary["records"] == len(events) > 600
    originals = {}
    for event in events:
        assert_valid(event)
        original = json.loads(event["raw_data"])
        assert event["metadata"]["event_code"] == original["action"]
        originals.setdefault(original["id"], []).append(event["metadata"]["uid"])
    assert len(originals) == 600
    assert all(len(uids) == len(set(uids)) for uids in originals.values())


def test_a_second_demo_in_the_same_folder_starts_afresh(tmp_path: Path) -> None:
    _demo(tmp_path / "demo", 500)
    summary, records = _demo(tmp_path / "demo", 500)
    assert summary["records"] == len(records) == 500


def test_an_input_whose_secret_is_named_token_demos_as_well(
    plugin_venv: Venv, tmp_path: Path
) -> None:
    """The fixture input fixture_feed (tests/fixtures/dist_demo), installed as a
    distribution, serves its demo only to the token its demo_environment yields."""
    token = "tok-" + secrets.token_hex(16)
    folder = tmp_path / "demo"
    result = plugin_venv.plugin_host(
        "--log-level", "DEBUG", "demo", "fixture_feed", "--dir", folder, "--events", "130",
        cwd=tmp_path, env=clean_env(FIXTURE_DEMO_TOKEN=token))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["records"] == 130
    records = read_jsonl(folder / "events.jsonl")
    assert [r["id"] for r in records] == list(range(1, 131))

    assert sorted(p.name for p in folder.glob("demo-*")) == ["demo-token.secret"]
    secret_file = folder / "demo-token.secret"
    assert secret_file.read_text(encoding="utf-8") == token + "\n"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    pipeline = yaml.safe_load((folder / "pipeline.yaml").read_text(encoding="utf-8"))
    assert pipeline["input"]["secrets"] == {"token": {"file": "demo-token.secret"}}
    for place in (result.stdout, result.stderr):
        assert token not in place
    for path in folder.iterdir():
        if path != secret_file:
            assert token.encode() not in path.read_bytes(), path.name


def test_each_secret_gets_a_file_of_its_own_whatever_its_name() -> None:
    names = ["api_key", "token", "Token", "../../etc/passwd", "a b", "secret-3"]
    files = _file_names(names)
    assert files["api_key"] == "demo-api_key.secret"
    assert files["token"] == "demo-token.secret"
    assert len({f.lower() for f in files.values()}) == len(names)
    assert all(re.fullmatch(r"demo-[A-Za-z0-9_-]+\.secret", f) for f in files.values())
