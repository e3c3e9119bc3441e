"""The Postman input's OCSF 1.5.0 mapping: every action Postman is known to emit, the
emulator's whole catalogue, the real sample and generated records become events the
official schema accepts; an unknown action, a record missing fields, a field of a type
nobody expects still map; a record that cannot map is delivered as it came."""

from __future__ import annotations

import copy
import json
import logging
import random
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocsf_check import assert_valid, caption, export, problems
from postman_audit import ocsf, ocsf_fields, ocsf_rules
from postman_audit.emulator.fakedata import ACTIONS, make_event
from postman_audit.input import PostmanAuditInput
from postman_audit.ocsf import map_record
from postman_audit.timeutil import epoch_of

from plugin_host import TransformContext
from plugin_host.transforms.ocsf import OcsfTransform

REFERENCE = Path(__file__).resolve().parent / "reference"
README = Path(__file__).resolve().parent.parent / "plugins" / "postman_audit" / "README.md"
SAMPLE = json.loads((REFERENCE / "postman_audit_logs.sample.ndjson").read_text())["trails"]
CLASSES = {3001, 3002, 3004, 3005, 3006}


def spec_actions() -> set[str]:
    """Every action named in Postman's own OpenAPI cut: the /audit-actions example, the
    response examples, the parameter examples."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("name", "action", "example") and isinstance(item, str) and re.fullmatch(
                        r"(user|team|admin)\.[a-z_.]+", item):
                    found.add(item)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(json.loads((REFERENCE / "postman-api-audit-logs.openapi.json").read_text()))
    return found


EVERY_ACTION = sorted(set(ocsf_rules.KNOWN_ACTIONS) | {name for name, _ in ACTIONS}
                      | spec_actions() | {t["action"] for t in SAMPLE})


def events_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """``record``'s events, each checked valid, its code the action, its time in ms."""
    events = map_record(record)
    assert events, record
    for event in events:
        assert_valid(event)
        assert event["metadata"]["event_code"] == record["action"]
        assert event["class_uid"] in CLASSES and event["class_uid"] != 6003
    return events


def millis(timestamp: str) -> int:
    instant = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return int(instant.timestamp() * 1000)


@pytest.fixture
def transform() -> OcsfTransform:
    context = TransformContext("postman", "postman_audit", PostmanAuditInput,
                               logging.getLogger("plugin_host.transform.ocsf"))
    return OcsfTransform({"raw_data": True}, context)


# -- every known action, the sample, the emulator ----------------------------------------


def test_the_actions_checked_here_hold_every_source() -> None:
    assert {name for name, _ in ACTIONS} <= set(ocsf_rules.KNOWN_ACTIONS)
    assert spec_actions() <= set(ocsf_rules.KNOWN_ACTIONS)
    assert {t["action"] for t in SAMPLE} <= set(ocsf_rules.KNOWN_ACTIONS)
    assert len(spec_actions()) >= 15


@pytest.mark.parametrize("action", EVERY_ACTION)
def test_every_known_action_maps_to_valid_events(action: str) -> None:
    for base in SAMPLE:  # each shape of the real sample: system actors, no user, variables
        events = events_of({**base, "action": action})
        assert all(e["time"] == millis(base["timestamp"]) for e in events)
        if events[0]["activity_id"] == 99:
            assert events[0]["activity_name"] == action


def test_the_real_sample_maps_as_the_research_says() -> None:
    by_id = {t["id"]: events_of(t) for t in SAMPLE}
    assert sum(len(e) for e in by_id.values()) == 10
    key = by_id[558306372][0]  # admin.apikey_create, by Postman's own system actor
    assert (key["class_uid"], key["activity_id"], key["activity_name"]) == (
        3001, 99, "admin.apikey_create")
    assert key["user"]["credential_uid"] == "6a302*****"
    assert key["actor"]["user"]["type_id"] == 3  # System
    assert key["time"] == 1781540696000
    assert key["metadata"]["uid"] == "558306372"
    assert key["metadata"]["tenant_uid"] == "70000001"
    assert "src_endpoint" not in key  # no ip in the record
    assert key["http_request"] == {"user_agent": "PostmanAPI/2.71.0 node"}
    assert key["unmapped"] == {"data.actor.active": True,
                               "data.variables": {"apiKey": "6a302*****"}}
    slack = by_id[558251886][0]
    assert (slack["class_uid"], slack["activity_id"]) == (3002, 1)
    assert slack["service"] == {"name": "Slack"}
    roles = by_id[555666575][0]
    assert (roles["class_uid"], roles["user"]["uid"]) == (3005, "60000004")
    assert roles["privileges"] == ["user", "api-catalog-manager", "admin", "supervisor"]
    assert roles["metadata"]["uid"] == "555666575:60000004"
    assert roles["metadata"]["correlation_uid"] == "555666575"
    with_ip = [e for events in by_id.values() for e in events if "src_endpoint" in e]
    assert {e["src_endpoint"]["ip"] for e in with_ip} == {
        t["ip"] for t in SAMPLE if t["ip"] is not None}


def test_the_emulators_whole_catalogue_maps_to_valid_events() -> None:
    rng = random.Random(15)
    records = [make_event(rng, i, 1781540696 + 37 * i) for i in range(2500)]
    generated = {r["action"] for r in records}
    assert generated == {name for name, _ in ACTIONS} & generated  # nothing else
    assert len(generated) == 15  # every action the emulator makes events for
    by_action: dict[str, int] = {}
    for record in records:
        events = events_of(record)
        by_action[record["action"]] = events[0]["class_uid"]
        if record["action"] == "team.update_user_roles":
            users = record["data"]["variables"]["users"]
            assert len(events) == len(json.loads(users) if isinstance(users, str) else users)
    assert by_action["user.login_sso_success"] == 3002
    assert by_action["team.scim_add_member"] == 3006
    assert by_action["team.send_invite"] == 3004


# -- what the issue asks of particular records -------------------------------------------


def test_a_role_change_of_three_users_is_three_events_one_per_user() -> None:
    record = {**SAMPLE[4], "data": {**SAMPLE[4]["data"], "variables": {"users": json.dumps(
        {"1": ["admin"], "2": ["user"], "3": []})}}}
    events = events_of(record)
    assert [(e["user"]["uid"], e["privileges"]) for e in events] == [
        ("1", ["admin"]), ("2", ["user"]), ("3", [])]
    assert len({e["metadata"]["uid"] for e in events}) == 3
    assert {e["metadata"]["correlation_uid"] for e in events} == {str(SAMPLE[4]["id"])}


@pytest.mark.parametrize(("action", "class_uid", "activity"), [
    ("team.workspace_archived", 3004, 99),
    ("team.create_workspace", 3004, 1),
    ("user.something_new", 3001, 99),
    ("billing.invoice_paid", 3004, 99),
    ("user.login_github_success", 3002, 1),
    ("user.login_failed", 3002, 1),
    ("user.logout", 3002, 2),
    ("team.remove_group_role", 3006, 2),
    ("team.create_group", 3006, 6),
    ("team.scim_remove_member", 3006, 4),
    ("user.password_reset", 3001, 4),
    ("team.customauth.disable", 3004, 9),
])
def test_an_action_nobody_has_seen_yet_maps_to_a_valid_event(
    action: str, class_uid: int, activity: int
) -> None:
    event = events_of({**SAMPLE[8], "action": action})[0]
    assert (event["class_uid"], event["activity_id"]) == (class_uid, activity)
    if action == "user.login_failed":
        assert (event["status_id"], event["status"]) == (2, "Failure")


def test_a_record_with_only_an_action_and_a_time_still_maps() -> None:
    for action in EVERY_ACTION:
        event = events_of({"action": action, "timestamp": "2026-06-15T16:24:56.000Z"})[0]
        assert "actor" not in event and "unmapped" not in event
        assert event["time"] == 1781540696000


def test_fields_of_a_type_nobody_expects_go_to_unmapped() -> None:
    record = {"id": 7.5, "ip": "not an address", "userAgent": 3, "action": "user.mfa_enabled",
              "timestamp": "2026-06-15T16:24:56Z", "message": ["a"], "extra": {"x": 1},
              "data": {"actor": {"id": True, "name": "Sam", "email": "no-at-sign",
                                 "active": False, "role": "owner"},
                       "team": {"id": [1], "name": ""}, "future": 1}}
    event = events_of(record)[0]
    assert event["unmapped"] == {
        "id": 7.5, "ip": "not an address", "userAgent": 3, "message": ["a"],
        "extra": {"x": 1}, "data.future": 1, "data.actor.id": True,
        "data.actor.email": "no-at-sign", "data.actor.active": False,
        "data.actor.role": "owner", "data.team.id": [1], "data.team.name": ""}
    assert event["actor"]["user"] == {"name": "Sam", "full_name": "Sam", "type_id": 1,
                                      "type": "User"}
    assert event["user"] == event["actor"]["user"]  # no data.user: the actor


@pytest.mark.parametrize(("change", "path", "value"), [
    (lambda r: r["data"].update(region="eu"), "data.region", "eu"),
    (lambda r: r.update(region="eu"), "region", "eu"),
    (lambda r: r.update(id=7.5), "id", 7.5),
    (lambda r: r.update(ip="not an address"), "ip", "not an address"),
    (lambda r: r.update(userAgent=3), "userAgent", 3),
    (lambda r: r.update(message=["a"]), "message", ["a"]),
])
def test_an_odd_field_is_kept_though_the_same_people_came_before(
        change: Any, path: str, value: Any) -> None:
    usual = copy.deepcopy(SAMPLE[0])
    events_of(usual)  # the action and people seen: the next record may be read faster
    odd = copy.deepcopy(usual)
    change(odd)
    assert events_of(odd)[0]["unmapped"][path] == value


def test_a_record_without_a_team_maps_alike_the_second_time() -> None:
    record = copy.deepcopy(SAMPLE[0])
    del record["data"]["team"]
    first = events_of(record)
    assert "tenant_uid" not in first[0]["metadata"]
    assert events_of(copy.deepcopy(record)) == first  # its action and people seen before


def test_a_person_known_by_the_address_alone_is_named_by_it() -> None:
    record = {"action": "user.mfa_enabled", "timestamp": "2026-06-15T16:24:56.000Z",
              "data": {"user": {"email": "sam@example.com"}}}
    assert events_of(record)[0]["user"] == {"name": "sam@example.com",
                                            "email_addr": "sam@example.com",
                                            "type_id": 1, "type": "User"}


@pytest.mark.parametrize("where", ["actor", "user", "team"])
def test_each_event_names_its_own_people_whatever_came_before(where: str) -> None:
    """Events of one action, actor, user and team share what those decide: a record that
    differs in any one field of them gets its own."""
    base = SAMPLE[0]  # admin.apikey_create: actor, user and team all present
    fields = {"actor": ("id", "name", "username", "email", "active"),
              "user": ("id", "name", "username", "email"), "team": ("id", "name")}[where]
    before = events_of(base)[0]
    for field in fields:
        changed = copy.deepcopy(base)
        value = changed["data"][where].get(field)
        changed["data"][where][field] = (
            not value if isinstance(value, bool) else value + 1 if isinstance(value, int)
            else f"other-{value or 'x'}@example.com" if field == "email" else f"{value}-2")
        after = events_of(changed)[0]
        assert after != before, (where, field)
        assert events_of(base)[0] == before


def test_a_record_that_cannot_map_is_delivered_as_it_came_with_a_warning(
    transform: OcsfTransform, caplog: pytest.LogCaptureFixture
) -> None:
    no_time = {"id": 12, "action": "user.mfa_enabled", "message": "secret-looking text"}
    bad_time = {"id": 13, "action": "user.mfa_enabled", "timestamp": "yesterday"}
    no_action = {"timestamp": "2026-06-15T16:24:56.000Z"}
    records = [SAMPLE[0], no_time, bad_time, no_action, SAMPLE[1]]
    with caplog.at_level(logging.WARNING, "plugin_host.transform.ocsf"):
        out = transform.apply(records)
    assert out[1] is no_time and out[2] is bad_time and out[3] is no_action
    assert_valid(out[0])
    assert_valid(out[4])
    assert [r.getMessage() for r in caplog.records] == [
        "3 records could not be mapped to OCSF and were delivered as they came (record 12 "
        "has no timestamp)"]
    assert "secret-looking" not in caplog.text


def test_a_mapping_that_fails_loses_no_record(
    transform: OcsfTransform, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(record: Any) -> list[dict[str, Any]]:
        raise KeyError("a bug in the mapping")

    transform._map = broken
    with caplog.at_level(logging.WARNING, "plugin_host.transform.ocsf"):
        assert transform.apply([SAMPLE[2]]) == [SAMPLE[2]]
    assert caplog.records[0].getMessage().endswith(
        "(record 557488935: the mapping failed with KeyError)")


def test_raw_data_is_the_original_record_and_the_records_are_never_changed(
    transform: OcsfTransform,
) -> None:
    records = copy.deepcopy(SAMPLE)
    events = transform.apply(records)
    assert records == SAMPLE
    assert [json.loads(e["raw_data"]) for e in events] == SAMPLE
    assert all(not problems(e) for e in events)
    transform._raw = False
    assert all("raw_data" not in e for e in transform.apply(records))


def test_an_input_without_a_mapping_cannot_have_the_ocsf_transform() -> None:
    context = TransformContext("p", "fixture_echo", object, logging.getLogger("t"))
    with pytest.raises(Exception, match="input fixture_echo ships none"):
        OcsfTransform({}, context)


# -- the patterns and names the mapping copies from OCSF are OCSF's ----------------------


def test_the_patterns_are_the_schemas_own() -> None:
    types = export()["types"]
    assert types["ip_t"]["regex"] == ocsf_fields.IP_PATTERN
    assert types["email_t"]["regex"] == ocsf_fields.EMAIL_PATTERN


def test_every_activity_caption_is_the_schemas_own() -> None:
    for class_uid, activities in ocsf_rules.ACTIVITIES.items():
        for activity, name in activities.items():
            assert caption(class_uid, "activity_id", activity) == name


# -- the README's table is the code's ----------------------------------------------------


def readme_table() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- ocsf-mapping-table -->\n(.*?)\n<!-- /ocsf-mapping-table -->",
                      text, re.S)
    assert found, "the README has no marked OCSF mapping table"
    return found.group(1)


def test_the_readme_table_is_the_one_the_rules_write() -> None:
    assert readme_table() == ocsf_rules.mapping_table()


def test_every_action_the_readme_table_lists_maps_as_the_table_says() -> None:
    rows = [line for line in readme_table().splitlines()[2:]]
    assert len(rows) == len(ocsf_rules.RULES)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        class_uid = int(cells[2].split()[0])
        fixed = re.fullmatch(r"(\d+) .*", cells[3])
        for action in re.findall(r"`([^`]+)`", cells[5]):
            event = events_of({**SAMPLE[8], "action": action})[0]
            assert event["class_uid"] == class_uid, (action, row)
            if fixed:
                assert event["activity_id"] == int(fixed.group(1)), (action, row)


# -- generated records -------------------------------------------------------------------


text = st.text(max_size=24)
ids = st.integers(min_value=0, max_value=2**53) | st.text(min_size=1, max_size=12)
json_leaf = st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | text | st.floats(
    allow_nan=False, allow_infinity=False)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(text, inner, max_size=3), max_leaves=8)
person = st.fixed_dictionaries({}, optional={
    "id": ids, "name": text, "username": text, "email": st.emails() | text,
    "active": st.booleans()})
roles = st.dictionaries(st.text(min_size=1, max_size=8), st.lists(text, max_size=3)
                        | json_value, max_size=4)
variables = (st.dictionaries(text, json_value, max_size=3)
             | st.fixed_dictionaries({"users": roles | roles.map(json.dumps)})
             | st.fixed_dictionaries({}, optional={"apiKey": text, "appName": text,
                                                  "groupName": text, "groupId": ids,
                                                  "role": text, "domain": text}))
instants = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 12, 31))
timestamps = (instants.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
              | instants.map(lambda d: d.replace(tzinfo=timezone.utc).isoformat()))
actions = (st.sampled_from(EVERY_ACTION)
           | st.from_regex(r"(user|team|admin|billing)\.[a-z_.]{1,24}", fullmatch=True)
           | st.text(min_size=1, max_size=20))
records = st.fixed_dictionaries({"action": actions, "timestamp": timestamps}, optional={
    "id": ids, "ip": st.none() | st.ip_addresses().map(str) | text,
    "userAgent": st.none() | text, "message": st.none() | text,
    "data": st.fixed_dictionaries({}, optional={
        "actor": st.none() | person, "user": st.none() | person,
        "team": st.none() | st.fixed_dictionaries({}, optional={"id": ids, "name": text}),
        "variables": st.none() | variables})})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records)
def test_any_record_shaped_like_postmans_maps_to_valid_events(record: dict[str, Any]) -> None:
    events = events_of(record)
    assert all(e["time"] == millis(record["timestamp"]) // 1000 * 1000 for e in events)


@settings(max_examples=200, deadline=None)
@given(st.lists(records, min_size=1, max_size=6))
def test_the_mapping_remembers_nothing_that_changes_an_event(batch: list[Any]) -> None:
    first = [map_record(r) for r in batch]
    for cache in (ocsf._CASTS, ocsf_fields.IPS, ocsf._AGENTS):
        cache.clear()
    assert [map_record(r) for r in reversed(batch)] == list(reversed(first))


@settings(max_examples=200, deadline=None)
@given(st.lists(json_value | records, min_size=1, max_size=4))
def test_no_record_is_ever_lost_whatever_it_holds(batch: list[Any]) -> None:
    context = TransformContext("p", "postman_audit", PostmanAuditInput,
                               logging.getLogger("plugin_host.transform.ocsf"))
    out = OcsfTransform({}, context).apply(batch)
    delivered = iter(out)
    for record in batch:
        first = next(delivered)
        if first is record:  # delivered as it came: it could not be mapped
            continue
        assert not problems(first), problems(first)
        assert json.loads(first["raw_data"]) == record
        for _ in range(len(map_record(record)) - 1):
            assert not problems(next(delivered))
    assert next(delivered, None) is None


def _seconds_by_the_parser(timestamp: Any) -> int | None:
    """The reading of a timestamp the mapping had before it remembered hours: the C parser
    on every API timestamp, ``epoch_of`` on anything else."""
    if type(timestamp) is str and len(timestamp) == 24 and timestamp[19:] == ".000Z":
        try:
            return int((datetime.fromisoformat(timestamp[:19]) - datetime(1970, 1, 1))
                       .total_seconds())
        except (ValueError, TypeError):  # TypeError: a text the parser reads with an offset
            pass
    return epoch_of(timestamp)


api_texts = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.000Z").rjust(24, "0"))
nearly_api = st.tuples(api_texts, st.integers(0, 23), st.sampled_from("0123456789:-TZ. +x٣")
                       ).map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + 1:])
one_hour = st.tuples(api_texts, st.lists(st.tuples(st.integers(0, 59), st.integers(0, 59)),
                                         min_size=2, max_size=8)
                     ).map(lambda t: [t[0][:14] + f"{m:02d}:{s:02d}.000Z" for m, s in t[1]])


@settings(max_examples=400, deadline=None)
@given(st.lists(api_texts | nearly_api | timestamps | st.text(max_size=26), max_size=8) | one_hour)
def test_a_timestamp_reads_as_the_parser_reads_it_whatever_came_before(texts: list[str]) -> None:
    expected = [_seconds_by_the_parser(t) for t in texts]
    assert [ocsf_fields.seconds(t) for t in texts] == expected  # hours remembered or not
    assert [ocsf_fields.seconds(t) for t in texts] == expected  # each one's hour seen
    ocsf_fields.HOURS.clear()
    assert [ocsf_fields.seconds(t) for t in reversed(texts)] == list(reversed(expected))
