"""The Postman audit input keeps the input contract (``plugin_host.testing.InputContract``),
against its bundled emulator: one fresh emulator per test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from postman_audit.emulator import EmulatorConfig, PostmanEmulator
from postman_audit.input import PostmanAuditInput

from plugin_host.testing import InputContract


class TestPostmanAuditContract(InputContract):
    """120 events over the 3 days up to yesterday; backfill from 4 days before that.

    The emulated clock starts a day behind the real one and ``add_records`` moves it an
    hour on before adding events, so new events are in the input's past and each batch is
    outside the previous batch's 30-minute lookback: the state then holds one lookback
    window of keys, which is what "bounded" means for this input.
    """

    input_class = PostmanAuditInput
    new_records = 7

    @pytest.fixture(autouse=True)
    def emulator(self) -> Iterator[PostmanEmulator]:
        now = datetime.now(timezone.utc) - timedelta(days=1)
        config = EmulatorConfig(events=120, days=3, now=now,
                                api_key="PMAK-" + secrets.token_hex(12))
        with PostmanEmulator(config) as emulator:
            self.emulator = emulator
            start = now - timedelta(days=4)
            self.settings = {
                "base_url": emulator.url,
                "backfill_start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "page_size": 25,
            }
            self.secrets = {"api_key": config.api_key}
            yield emulator

    def add_records(self, n: int) -> Sequence[Mapping[str, Any]]:
        self.emulator.advance(timedelta(hours=1))
        return self.emulator.add_events(n)
