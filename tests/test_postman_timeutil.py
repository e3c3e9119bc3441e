"""The fast timestamp parser agrees with the standard library on every API-shaped input."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from postman_audit.timeutil import epoch_of, epochs_of

instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 12, 31),
    timezones=st.just(timezone.utc),
)


@settings(max_examples=500, deadline=None)
@given(instants, st.sampled_from(["%Y-%m-%dT%H:%M:%S.000Z", "%Y-%m-%dT%H:%M:%SZ",
                                  "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dt%H:%M:%Sz"]))
def test_api_timestamps_parse_to_their_whole_second(instant: datetime, shape: str) -> None:
    assert epoch_of(instant.strftime(shape)) == int(instant.timestamp() // 1)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
def test_any_text_is_a_timestamp_the_standard_library_reads_or_none(text: str) -> None:
    value = epoch_of(text)
    if value is not None:
        cleaned = text.strip()
        cleaned = cleaned[:-1] + "+00:00" if cleaned.endswith(("Z", "z")) else cleaned
        parsed = datetime.fromisoformat(cleaned)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        assert value == int(parsed.timestamp() // 1)


def test_impossible_times_and_other_types_are_unusable() -> None:
    for bad in ["2026-02-30T00:00:00Z", "2026-06-15T24:00:00Z", "2026-06-15T10:60:00Z",
                "", "yesterday", None, 1781540696, ["x"]]:
        assert epoch_of(bad) is None, bad


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(instants.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.000Z")),
                          st.text(max_size=26), st.none(), st.integers()), max_size=20))
def test_the_batch_parser_is_the_single_one_applied_to_each(values: list) -> None:
    assert epochs_of(values) == [epoch_of(v) for v in values]
