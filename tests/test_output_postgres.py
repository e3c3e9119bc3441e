"""The postgres output, through the real command in subprocesses, against the emulator and a
real PostgreSQL server: a backfill equals the emulator's truth (in the state's database, in
another one, with a SQLite state), a rerun and a state reset add no row, `check` looks at
the table, and each bad input is one line, a documented exit code, nothing half-written; the
URL's password never shows, at debug level either."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pg import Database
from postman_audit.emulator import EmulatorConfig, PostmanEmulator
from reliability.support import check_delivery, cli, env, one_error_line, write_pipeline

STATE_ENV, OUT_ENV = "OUTPUT_TEST_STATE_URL", "OUTPUT_TEST_OUT_URL"


def pg_output_pipeline(folder: Path, base_url: str, *, state: str = "pg",
                       url: bool = False, table: str = "audit_events",
                       lease_seconds: float | None = None, **kwargs: Any) -> Path:
    """A postman_audit pipeline into the postgres output: its state in $OUTPUT_TEST_STATE_URL
    (``pg``) or a SQLite file (``sqlite``); with ``url``, the output's database is the one in
    $OUTPUT_TEST_OUT_URL, else the state's."""
    path = write_pipeline(folder, base_url, **kwargs)
    doc = yaml.safe_load(path.read_text())
    doc["output"] = {"type": "postgres", "settings": {"table": table}}
    if url:
        doc["output"]["secrets"] = {"url": {"env": OUT_ENV}}
    doc["state"] = {"url": {"env": STATE_ENV}} if state == "pg" else {"path": "state.db"}
    if lease_seconds is not None:
        doc["state"]["lease_seconds"] = lease_seconds
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def rows(db: Database, table: str = "audit_events", pipeline: str = "postman"
         ) -> list[tuple[str, Any]]:
    """The table's (id, record) rows of one pipeline, straight from the database."""
    with db.connect() as conn:
        if not conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]:
            return []
        return [(r[0], r[1]) for r in conn.execute(
            f"SELECT id, record FROM {table} WHERE pipeline = %s ORDER BY id", (pipeline,))]


def check_table(db: Database, events: list[Any], **kwargs: Any) -> None:
    """The table holds every event once, unchanged, by its id."""
    found = rows(db, **kwargs)
    assert all(ident == str(record["id"]) for ident, record in found)
    check_delivery([record for _, record in found], events, complete=True)


@pytest.fixture(scope="module")
def emulator() -> Iterator[PostmanEmulator]:
    """One emulator of 1,500 events for the module."""
    with PostmanEmulator(EmulatorConfig(events=1500, days=30)) as emu:
        yield emu


@pytest.mark.parametrize("layout", ["shared", "separate", "sqlite-state"])
def test_a_backfill_into_the_table_equals_the_emulators_truth(
    tmp_path: Path, pg_db: Database, emulator: PostmanEmulator, layout: str
) -> None:
    out_db = pg_db if layout == "shared" else pg_db.server.new_database()
    pipeline = pg_output_pipeline(tmp_path, emulator.url, url=layout != "shared",
                                  state="sqlite" if layout == "sqlite-state" else "pg")
    environ = env(**{STATE_ENV: pg_db.url, OUT_ENV: out_db.url})
    checked = cli("check", pipeline, cwd=tmp_path, environ=environ)
    assert checked.code == 0, checked.err
    assert "output table audit_events in postgresql://" in checked.out
    assert "reachable (it is created on first run)" in checked.out
    assert ("exactly once" in checked.out) == (layout == "shared")

    first = cli("--log-level", "INFO", "run", pipeline, cwd=tmp_path, environ=environ)
    assert first.code == 0, first.err
    assert "created table audit_events" in first.err
    check_table(out_db, emulator.events)
    assert "ready" in cli("check", pipeline, cwd=tmp_path, environ=environ).out

    again = cli("run", pipeline, cwd=tmp_path, environ=environ)
    assert again.code == 0 and "0 records" in again.err, again.err
    assert cli("state", "reset", pipeline, cwd=tmp_path, environ=environ).code == 0
    redone = cli("--log-level", "INFO", "run", pipeline, cwd=tmp_path, environ=environ)
    assert redone.code == 0 and "1500 records" in redone.err, redone.err
    assert "are in table audit_events already" in redone.err  # sent again, skipped
    check_table(out_db, emulator.events)  # a state reset adds no row


def test_pipelines_sharing_a_table_keep_their_rows_apart(
    tmp_path: Path, pg_db: Database, emulator: PostmanEmulator
) -> None:
    environ = env(**{STATE_ENV: pg_db.url})
    for name in ("alpha", "beta"):
        pipeline = pg_output_pipeline(tmp_path, emulator.url, name=name, file=f"{name}.yaml")
        assert cli("run", pipeline, cwd=tmp_path, environ=environ).code == 0
    for name in ("alpha", "beta"):
        check_table(pg_db, emulator.events, pipeline=name)


def test_the_record_is_stored_unchanged_with_the_row_shape_documented(
    tmp_path: Path, pg_db: Database, emulator: PostmanEmulator
) -> None:
    pipeline = pg_output_pipeline(tmp_path, emulator.url)
    assert cli("run", pipeline, cwd=tmp_path, environ=env(**{STATE_ENV: pg_db.url})).code == 0
    with pg_db.connect() as conn:
        columns = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'audit_events' ORDER BY ordinal_position").fetchall()
        raw = conn.execute("SELECT record::text FROM audit_events LIMIT 1").fetchone()[0]
    assert columns == [("pipeline", "text"), ("id", "text"), ("record", "jsonb"),
                       ("written_at", "timestamp with time zone")]
    sent = {e["id"]: e for e in emulator.events}
    record = json.loads(raw)
    assert record == sent[record["id"]]


def test_without_a_url_and_with_a_sqlite_state_the_pipeline_is_invalid(
    tmp_path: Path, emulator: PostmanEmulator
) -> None:
    pipeline = pg_output_pipeline(tmp_path, emulator.url, state="sqlite")
    for command in ("validate", "run", "check"):
        result = cli(command, pipeline, cwd=tmp_path, environ=env())
        assert result.code == 2 and "Traceback" not in result.err, result.err
        assert "$.output.secrets.url: is required unless the state is on PostgreSQL" in (
            result.err)
    assert not (tmp_path / "state.db").exists()


# -- bad input: one line, a documented exit code, nothing half-written ---------------------------


def _nothing_written(tmp_path: Path, pipeline: Path, environ: dict[str, str],
                     state_db: Database) -> None:
    shown = cli("state", "show", pipeline, cwd=tmp_path, environ=environ)
    assert shown.code == 0, shown.err
    assert json.loads(shown.out)["state"] is None  # no checkpoint was committed


def _grant_connect(db: Database) -> tuple[str, str]:
    """A second role that may connect to ``db`` and nothing more: (url, password)."""
    user, password = db.server.new_role("other")
    with db.admin() as conn:
        conn.execute(f'GRANT CONNECT ON DATABASE "{db.name}" TO "{user}"')
    url = f"postgresql://{user}:{password}@127.0.0.1:{db.server.port}/{db.name}"
    return url, password


def test_an_unreachable_output_database_is_one_line_exit_5(
    tmp_path: Path, pg_db: Database, emulator: PostmanEmulator
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://someone:s3cret-pw-never-shown@127.0.0.1:{port}/nowhere"
    pipeline = pg_output_pipeline(tmp_path, emulator.url, url=True)
    environ = env(**{STATE_ENV: pg_db.url, OUT_ENV: url})
    for command in ("run", "check"):
        result = cli(command, pipeline, cwd=tmp_path, environ=environ)
        line = one_error_line(result, 5, f"output database postgresql://someone@127.0.0.1:{port}"
                              "/nowhere", "unreachable (connection refused)")
        assert "s3cret-pw-never-shown" not in result.err + result.out, line
    _nothing_written(tmp_path, pipeline, environ, pg_db)


def test_a_wrong_password_is_one_line_exit_5(
    tmp_path: Path, pg_db: Database, emulator: PostmanEmulator
) -> None:
    out_db = pg_db.server.new_database()
    wrong = "wrong-" + out_db.password[::-1]
    url = out_db.url.replace(out_db.password, wrong)
    pipeline = pg_output_pipeline(tmp_path, emulator.url, url=True)
    environ = env(**{STATE_ENV: pg_db.url, OUT_ENV: url})
    for command in ("run", "check"):
        result = cli(command, pipeline, cwd=tmp_path, environ=environ)
        one_error_line(result, 5, f"output database postgresql://{out_db.user}@",
                       f"refused the password of user {out_db.user}",
                       "check the password in output.secrets.url")
        assert wrong not in result.err + result.out
    _nothing_written(tmp_path, pipeline, environ, pg_db)
    assert rows(out_db) == []


def test_no_create_privilege_is_one_line_exit_5_and_no_table(
    tmp_path: Path, pg_db: Database, emulator: PostmanEmulator
) -> None:
    out_db = pg_db.server.new_database()
    url, password = _grant_connect(out_db)
    with out_db.connect() as conn:  # PostgreSQL 15+ has no CREATE for others on public
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    pipeline = pg_output_pipeline(tmp_path, emulator.url, url=True)
    environ = env(**{STATE_ENV: pg_db.url, OUT_ENV: url})
    result = cli("run", pipeline, cwd=tmp_path, environ=environ)
    one_error_line(result, 5, "may not create table audit_events (no CREATE on schema public)",
                   "GRANT CREATE ON SCHEMA public TO", "nothing was written")
    checked = cli("check", pipeline, cwd=tmp_path, environ=environ)
    one_error_line(checked, 5, "lacks CREATE on schema public (to create table audit_events)")
    assert password not in result.err + checked.err
    _nothing_written(tmp_path, pipeline, environ, pg_db)
    with out_db.connect() as conn:
        assert conn.execute("SELECT to_regclass('audit_events')").fetchone()[0] is None


def test_no_insert_privilege_is_one_line_exit_5_and_no_row(
    tmp_path: Path, pg_db: Database, emulator: PostmanEmulator
) -> None:
    out_db = pg_db.server.new_database()
    url, _ = _grant_connect(out_db)
    user = url.split("//")[1].split(":")[0]
    with out_db.connect() as conn:
        conn.execute("CREATE TABLE audit_events (pipeline text NOT NULL, id text NOT NULL, "
                     "record jsonb NOT NULL, UNIQUE (pipeline, id))")
        conn.execute(f'GRANT SELECT ON audit_events TO "{user}"')
    pipeline = pg_output_pipeline(tmp_path, emulator.url, url=True)
    environ = env(**{STATE_ENV: pg_db.url, OUT_ENV: url})
    result = cli("run", pipeline, cwd=tmp_path, environ=environ)
    one_error_line(result, 5, f"user {user} may not insert into table audit_events",
                   f"GRANT INSERT ON audit_events TO {user}")
    checked = cli("check", pipeline, cwd=tmp_path, environ=environ)
    one_error_line(checked, 5, "lacks INSERT on table audit_events")
    _nothing_written(tmp_path, pipeline, environ, pg_db)
    assert rows(out_db) == []


@pytest.mark.parametrize("create", [
    "CREATE TABLE audit_events (a integer, b text)",
    "CREATE TABLE audit_events (pipeline text, id bigint, record jsonb)",
    "CREATE TABLE audit_events (pipeline text, id text, record json, UNIQUE (pipeline, id))",
    "CREATE TABLE audit_events (pipeline text, id text, record jsonb)",  # no unique key
    "CREATE TABLE audit_events (pipeline text, id text, record jsonb, must text NOT NULL, "
    "UNIQUE (pipeline, id))",
])
def test_a_table_with_other_columns_is_one_line_exit_2(
    tmp_path: Path, pg_db: Database, emulator: PostmanEmulator, create: str
) -> None:
    with pg_db.connect() as conn:
        conn.execute(create)
    pipeline = pg_output_pipeline(tmp_path, emulator.url)
    environ = env(**{STATE_ENV: pg_db.url})
    for command in ("run", "check"):
        result = cli(command, pipeline, cwd=tmp_path, environ=environ)
        one_error_line(result, 2, "table audit_events exists with other columns",
                       "Name another table")
    _nothing_written(tmp_path, pipeline, environ, pg_db)
    with pg_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM audit_events").fetchone()[0] == 0


def test_the_password_never_shows_at_debug_level(
    tmp_path: Path, pg_db: Database, emulator: PostmanEmulator
) -> None:
    out_db = pg_db.server.new_database()
    pipeline = pg_output_pipeline(tmp_path, emulator.url, url=True)
    environ = env(**{STATE_ENV: pg_db.url, OUT_ENV: out_db.url})
    seen = ""
    for command in (("check",), ("run",), ("state", "show")):
        result = cli("--log-level", "DEBUG", *command, pipeline, cwd=tmp_path, environ=environ)
        assert result.code == 0, result.err
        seen += result.out + result.err
    assert " DEBUG " in seen
    for db in (pg_db, out_db):
        assert db.password not in seen
        with db.connect() as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            for table in tables:
                text = conn.execute(f"SELECT coalesce(string_agg(t::text, ''), '') "
                                    f"FROM {table} t").fetchone()[0]
                assert out_db.password not in text and pg_db.password not in text
    check_table(out_db, emulator.events)


def test_awkward_records_and_ids_are_stored_exactly(
    tmp_path: Path, pg_db: Database, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records whose text COPY must escape, ids of every kind, a repeat within one page (kept
    once), an integer beyond 64 bits (the slow serializer), a record without an id (named
    by a hash of its JSON): each stored as it came, in-process through the command."""
    from helpers import write_pipeline as write_doc

    records = [
        {"id": 1, "text": "tab\there, newline\nthere, back\\slash, quote \" and \\N"},
        {"id": "a\tb\\c\nd\re", "v": "é ☃ 𝄞"},
        {"id": "plain", "nested": {"list": [1, 2.5, None, True], "empty": {}}},
        {"id": 1, "text": "the same id again: skipped"},
        {"id": 2, "big": 123456789012345678901234567890},
        {"no_id": "named by its JSON"},
        {"id": True, "bool_id": "named by its JSON too"},
    ]
    monkeypatch.setenv(STATE_ENV, pg_db.url)
    path = write_doc(tmp_path / "p.yaml", name="echo", input_type="fixture_echo",
                     settings={"records": records},
                     output={"type": "postgres", "settings": {"table": "awkward"}},
                     state={"url": {"env": STATE_ENV}})
    result = cli("run", path)
    assert result.code == 0, result.err
    found = dict(rows(pg_db, table="awkward", pipeline="echo"))
    hashed = {k: v for k, v in found.items() if k.startswith("h:")}
    assert {k: v for k, v in found.items() if not k.startswith("h:")} == {
        "1": records[0], "a\tb\\c\nd\re": records[1], "plain": records[2], "2": records[4]}
    assert sorted(hashed.values(), key=json.dumps) == sorted([records[5], records[6]],
                                                            key=json.dumps)
    assert all(len(k) == 2 + 64 for k in hashed)
