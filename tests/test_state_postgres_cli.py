"""A pipeline whose state is on PostgreSQL, through the command (in-process, a real server):
run, state show, state reset and check; bad input as one line and an exit code, nothing
half-written; the URL's password never shown; an output that joins the commit transaction."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import CliResult
from helpers import read_jsonl, write_pipeline
from pg import Database

from plugin_host import OutputContext, Registry, load_pipeline, run_once
from plugin_host._exceptions import Fenced
from plugin_host.state.postgres import PostgresStateStore
from plugin_host.testing.driver import PluginObject

Cli = Callable[..., CliResult]
URL_ENV = "PLUGIN_TEST_STATE_URL"


def pg_pipeline(tmp_path: Path, state: Mapping[str, Any] | None = None, **settings: Any) -> Path:
    """fixture_counter into out.jsonl, its state in the database of $PLUGIN_TEST_STATE_URL."""
    return write_pipeline(tmp_path / "p.yaml", settings=settings,
                          state=state or {"url": {"env": URL_ENV}})


@pytest.fixture
def url(pg_db: Database, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(URL_ENV, pg_db.url)
    return pg_db.url


def one_error(result: CliResult, code: int, *needles: str) -> str:
    assert result.code == code, result.err
    assert "Traceback" not in result.err
    errors = [line for line in result.err.splitlines() if line.startswith("plugin-host:")]
    assert len(errors) == 1, result.err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_run_show_check_and_reset_on_postgresql(
    tmp_path: Path, cli: Cli, token: str, pg_db: Database, url: str
) -> None:
    pipeline = pg_pipeline(tmp_path, total=7)
    assert cli("run", pipeline).code == 0
    assert [r["n"] for r in read_jsonl(tmp_path / "out.jsonl")] == list(range(7))
    assert not (tmp_path / ".plugin-host").exists()  # no SQLite file on the side

    shown = cli("state", "show", pipeline)
    assert shown.code == 0, shown.err
    data = json.loads(shown.out)
    where = f"postgresql://{pg_db.user}@127.0.0.1:{pg_db.server.port}/{pg_db.name}"
    assert data["state_database"] == where
    assert data["state"]["checkpoint"] == {"next": 7}
    assert data["lease"] == {"held": False, "holder": None, "epoch": 1, "until": None}

    checked = cli("check", pipeline)
    assert checked.code == 0, checked.err
    assert f"state database {where} ready" in checked.out

    reset = cli("state", "reset", pipeline)
    assert reset.code == 0 and f"state cleared in {where}" in reset.out
    assert json.loads(cli("state", "show", pipeline).out)["state"] is None
    assert "already empty" in cli("state", "reset", pipeline).out


def test_run_and_reset_exit_6_while_another_run_holds_the_lease(
    tmp_path: Path, cli: Cli, token: str, url: str
) -> None:
    pipeline = pg_pipeline(tmp_path, total=5)
    assert cli("run", pipeline).code == 0
    with PostgresStateStore(url) as store, store.lease("counter") as lease:
        busy = cli("run", pipeline)
        one_error(busy, 6, "pipeline counter is already running", lease.me.split(",")[0],
                  "epoch 2")
        one_error(cli("state", "reset", pipeline), 6, "already running")
        assert json.loads(cli("state", "show", pipeline).out)["lease"]["held"] is True
    assert json.loads(cli("state", "show", pipeline).out)["state"]["checkpoint"] == {"next": 5}


def test_the_url_and_its_password_never_show(
    tmp_path: Path, cli: Cli, token: str, pg_db: Database, url: str
) -> None:
    """At DEBUG, in every line, error, state row, output and ownership record; with a
    literal URL in the file too, and when the database refuses the password."""
    pipeline = pg_pipeline(tmp_path, total=12, page_size=5)
    seen = [cli("--log-level", "DEBUG", "run", pipeline),
            cli("--log-level", "DEBUG", "state", "show", pipeline),
            cli("--log-level", "DEBUG", "check", pipeline)]
    literal = pg_pipeline(tmp_path / "literal", state={"url": url}, total=3)
    seen.append(cli("--log-level", "DEBUG", "run", literal))
    assert "$.state.url is written into the pipeline file" in seen[-1].err
    wrong = url.replace(pg_db.password, pg_db.password[::-1])
    refused = pg_pipeline(tmp_path / "refused", state={"url": wrong})
    seen.append(cli("--log-level", "DEBUG", "--debug", "run", refused))  # a traceback too
    assert seen[-1].code == 5 and "refused the password" in seen[-1].err
    assert [r.code for r in seen[:4]] == [0, 0, 0, 0], [r.err for r in seen]
    files = [p.read_text() for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".yaml"]
    with pg_db.connect() as conn:
        rows = [json.dumps(r[0]) for table in ("plugin_host_meta", "plugin_host_state",
                                               "plugin_host_key_leases")
                for r in conn.execute(f"SELECT row_to_json(t) FROM {table} t")]
    text = "\n".join([r.out + r.err for r in seen] + files + rows)
    assert "DEBUG" in text and "records in" in text  # the runs did log
    for secret in (pg_db.password, pg_db.password[::-1], url):
        assert secret not in text


@pytest.mark.parametrize("case", ["unreachable", "wrong password", "missing privilege",
                                  "newer schema"])
def test_a_database_problem_is_one_line_exit_5_and_nothing_written(
    tmp_path: Path, cli: Cli, token: str, pg_db: Database, monkeypatch: pytest.MonkeyPatch,
    case: str
) -> None:
    url = pg_db.url
    if case == "unreachable":
        url = url.replace(f":{pg_db.server.port}/", ":1/")
    elif case == "wrong password":
        url = url.replace(pg_db.password, "x" + pg_db.password)
    else:
        PostgresStateStore(url).close()  # the tables, as the owner made them
        with pg_db.connect() as conn:
            if case == "newer schema":
                conn.execute("UPDATE plugin_host_meta SET value = '3' "
                             "WHERE key = 'schema_version'")
            else:
                user, password = pg_db.server.new_role("ro")
                conn.execute(f'GRANT SELECT ON plugin_host_meta, plugin_host_state, '
                             f'plugin_host_key_leases TO "{user}"')
                url = url.replace(f"{pg_db.user}:{pg_db.password}", f"{user}:{password}")
    monkeypatch.setenv(URL_ENV, url)
    pipeline = pg_pipeline(tmp_path, total=5)
    expected = {"unreachable": "it is unreachable (connection refused)",
                "wrong password": "refused the password",
                "missing privilege": "lacks a privilege",
                "newer schema": "schema version 3, newer than this plugin-host knows (2)"}[case]
    line = one_error(cli("run", pipeline), 5, "state database postgresql://", expected)
    assert pg_db.password not in line
    assert not (tmp_path / "out.jsonl").exists()  # nothing written, nothing claimed
    assert list(tmp_path.iterdir()) == [tmp_path / "p.yaml"]
    if case == "missing privilege":
        checked = cli("check", pipeline)
        one_error(checked, 5, "lacks INSERT on plugin_host_state, UPDATE on plugin_host_state")
    else:
        one_error(cli("check", pipeline), 5, expected)
    if case != "newer schema":
        return
    with pg_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM plugin_host_state").fetchone()[0] == 0


@pytest.mark.parametrize("state, error", [
    ({"url": "mysql://u:p@host/db"}, "$.state.url: must be a postgresql:// URL"),
    ({"url": {"env": "UNSET_STATE_URL_VAR"}},
     "$.state.url: environment variable UNSET_STATE_URL_VAR is not set"),
    ({"url": {"env": URL_ENV}, "path": "state.db"}, "$.state: takes path"),
    ({"path": "state.db", "lease_seconds": 5}, "$.state.lease_seconds: applies only to"),
    ({"url": {"env": URL_ENV}, "lease_seconds": 0}, "$.state.lease_seconds: must be"),
])
def test_a_bad_state_section_is_a_configuration_error(
    tmp_path: Path, cli: Cli, token: str, url: str, state: dict[str, Any], error: str
) -> None:
    result = cli("validate", pg_pipeline(tmp_path, state=state))
    assert result.code == 2, result.err
    assert error in result.err
    assert "u:p@" not in result.err


class RowsOutput:
    """A test double of a TransactionalOutput: records into a table of the state's
    database, in the state's commit transaction. ``takeover_at`` (a class attribute)
    makes the Nth commit find the lease taken over, as a run frozen past it would."""

    manifest: ClassVar[Mapping[str, Any]] = {
        "name": "fixture_rows", "description": "Rows in the state's database (a test double).",
        "settings": {"type": "object", "properties": {}, "additionalProperties": False},
    }
    takeover_at = 0

    def __init__(self, settings: Mapping[str, Any], context: OutputContext) -> None:
        self._url = context.state_url
        self._buffer: list[int] = []
        self.commits = 0

    def open(self, committed: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        return committed

    def joins_state(self) -> bool:
        return bool(self._url)

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        self._buffer += [int(r["n"]) for r in records]

    def durable(self) -> Mapping[str, Any] | None:
        raise AssertionError("a joined output is committed through write_in only")

    def write_in(self, connection: Any) -> Mapping[str, Any] | None:
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO delivered VALUES (%s)",
                               [(n,) for n in self._buffer])
        self.commits += 1
        if self.commits == self.takeover_at:  # another run takes the lease meanwhile
            thread = threading.Thread(target=_take_over, args=(self._url,))
            thread.start()
            thread.join()
        self._buffer = []
        return {"commits": self.commits}

    def close(self) -> None:
        pass


def _take_over(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE plugin_host_state SET epoch = epoch + 1, holder = 'another'")


def test_a_joined_outputs_rows_and_checkpoint_commit_together_or_not_at_all(
    tmp_path: Path, registry: Registry, token: str, pg_db: Database, url: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.add_plugin(PluginObject(outputs=[RowsOutput]), "rows", "rows-dist")
    with pg_db.connect() as conn:
        conn.execute("CREATE TABLE delivered (n int PRIMARY KEY)")
    path = write_pipeline(tmp_path / "p.yaml", settings={"total": 40, "page_size": 4},
                          output={"type": "fixture_rows"}, state={"url": {"env": URL_ENV}})
    from plugin_host._runner import CommitPolicy

    monkeypatch.setattr(RowsOutput, "takeover_at", 3)
    with pytest.raises(Fenced, match="another runner took pipeline counter over"):
        run_once(load_pipeline(path, registry), policy=CommitPolicy(pages=2, seconds=3600))
    with pg_db.connect() as conn:
        delivered = [r[0] for r in conn.execute("SELECT n FROM delivered ORDER BY n")]
        checkpoint = conn.execute("SELECT checkpoint FROM plugin_host_state").fetchone()[0]
    assert delivered == list(range(16))  # two commits of two pages; the third rolled back
    assert json.loads(checkpoint) == {"next": 16}

    with pg_db.connect() as conn:
        conn.execute("UPDATE plugin_host_state SET holder = NULL")
    monkeypatch.setattr(RowsOutput, "takeover_at", 0)
    run_once(load_pipeline(path, registry), policy=CommitPolicy(pages=2, seconds=3600))
    with pg_db.connect() as conn:
        delivered = [r[0] for r in conn.execute("SELECT n FROM delivered ORDER BY n")]
    assert delivered == list(range(40))  # the rest, once


def test_only_a_postgresql_state_loads_the_driver(tmp_path: Path, pg_db: Database) -> None:
    """A run on a SQLite state imports no psycopg (start-up stays as it was); a run on a
    PostgreSQL state does. Fresh interpreters, the real command."""
    import subprocess
    import sys

    from helpers import clean_env, pipeline_doc
    from postman_audit.emulator import EmulatorConfig, PostmanEmulator

    probe = ("import json, sys, plugin_host.cli as c; code = c.main(['run', sys.argv[1]]); "
             "print(json.dumps([code, 'psycopg' in sys.modules]))")
    seen = []
    with PostmanEmulator(EmulatorConfig(events=50, days=2)) as emulator:
        for state in ({"path": "state.db"}, {"url": {"env": URL_ENV}}):
            folder = tmp_path / next(iter(state))
            (folder / "key.txt").parent.mkdir()
            (folder / "key.txt").write_text(emulator.config.api_key)
            doc = pipeline_doc(input_type="postman_audit", name="audit", state=state,
                               settings={"base_url": emulator.url,
                                         "backfill_start_time": "2020-01-01T00:00:00Z"},
                               secrets={"api_key": {"file": "key.txt"}})
            path = write_pipeline(folder / "p.yaml", doc)
            done = subprocess.run([sys.executable, "-c", probe, str(path)], cwd=folder,
                                  env=clean_env(**{URL_ENV: pg_db.url}), capture_output=True,
                                  text=True, timeout=60, check=False)
            seen.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert seen == [[0, False], [0, True]]
