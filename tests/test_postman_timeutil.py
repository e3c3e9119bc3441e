"""The fast timestamp parser agrees with the standard library on every API-shaped input."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from postman_audit.timeutil import api_epoch, api_instants, epoch_of

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


api_text = instants.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.000Z"))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(api_text, api_text, api_text, st.text(max_size=26), st.none(),
                          st.integers(), st.sampled_from([
                              "2026-02-30T00:00:00.000Z", "2026-06-15T24:00:00.000Z",
                              "2026-06-15T10:60:00.000Z", "0000-01-01T00:00:00.000Z",
                              "2026-06-15T10:00:00.123Z", "2026-06-15T10:00:00Z",
                              "2026-06-15 10:00:00.000Z", "2026-06-15T10:00:00.000z",
                              "２026-06-15T10:00:00.000Z", "2026-06-15T29:00:00.000Z",
                              "2026-06-15T30:00:00.000Z", "2026-06-15T10:00:60.000Z",
                              "2026-06-15T10:00:00.100Z", "2026-06-15T10:00:00.001Z",
                              "2026-13-01T10:00:00.000Z", "2026-06-15T23:59:59.000Z",
                              "2026-06-15T19:00:00.000Z"])), max_size=20))
def test_api_instants_accepts_only_texts_that_order_and_parse_as_instants(values: list) -> None:
    span = api_instants(values)
    if span is None:  # refusing is always safe: the caller takes its slow path
        return
    assert span == (min(values), max(values))
    epochs = [epoch_of(v) for v in values]
    assert None not in epochs
    assert [api_epoch(v) for v in values] == epochs
    pairs = list(zip(values, epochs, strict=True))
    for (a, ea), (b, eb) in zip(pairs, pairs[1:], strict=False):
        assert (a < b, a == b) == (ea < eb, ea == eb)  # the texts compare as the instants


@settings(max_examples=200, deadline=None)
@given(st.lists(api_text, min_size=1, max_size=20))
def test_api_instants_accepts_every_page_of_the_apis_own_shape(values: list[str]) -> None:
    assert api_instants(values) == (min(values), max(values))


@pytest.mark.parametrize("bad", [
    "2026-06-15T24:00:00.000Z", "2026-06-15T29:00:00.000Z", "2026-06-15T30:00:00.000Z",
    "2026-06-15T10:60:00.000Z", "2026-06-15T10:00:60.000Z", "2026-06-15T10:00:00.100Z",
    "2026-06-15T10:00:00.010Z", "2026-06-15T10:00:00.001Z", "2026-13-01T10:00:00.000Z",
    "2026-06-31T10:00:00.000Z", "2026-06-15t10:00:00.000Z", "2026-06-15T10:00:00.000z",
    "2026-06-15T10:00:00+000Z", "2026/06/15T10:00:00.000Z", "２026-06-15T10:00:00.000Z",
])
def test_api_instants_refuses_a_page_with_one_text_out_of_shape(bad: str) -> None:
    good = ["2026-06-15T23:59:59.000Z", "2026-06-15T20:00:00.000Z"]
    assert api_instants(good) == (good[1], good[0])
    for where in range(3):
        assert api_instants(good[:where] + [bad] + good[where:]) is None


def test_api_instants_refuses_impossible_days_across_a_page() -> None:
    good = "2026-02-28T23:59:59.000Z"
    assert api_instants([good, "2026-03-01T00:00:00.000Z"]) == (good, "2026-03-01T00:00:00.000Z")
    assert api_instants([good, "2026-02-30T00:00:00.000Z", "2026-03-01T00:00:00.000Z"]) is None
    assert api_instants([good, good[:-1]]) is None
    assert api_instants([]) is None
