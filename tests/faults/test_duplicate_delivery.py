"""The sandbox's ``duplicate`` fault: a request delivered to the API twice (a proxy that
re-sends after losing the upstream answer). Real HTTP to a real sandbox."""

from __future__ import annotations

import httpx


def test_a_duplicated_delivery_applies_a_write_twice_and_answers_once(start_sandbox) -> None:
    with start_sandbox() as sandbox:
        control = sandbox.urls.control()
        rule = {"kind": "duplicate", "count": 1, "path": "^/2/httpapi$"}
        httpx.post(f"{control}/faults", json=rule, timeout=30).raise_for_status()
        key = sandbox.config.amplitude_keys["us"].api_key
        ingested = sandbox.state.amplitude_tenants["us"].ingested
        before = len(ingested)
        # No insert_id: nothing lets Amplitude tell the second delivery from a new event.
        events = [{"user_id": "dup-user-001", "event_type": "Dup", "time": 1794921225715}]
        for _ in range(2):
            answer = httpx.post(
                f"{sandbox.urls.base}/2/httpapi", json={"api_key": key, "events": events}
            )
            assert answer.status_code == 200 and answer.json()["events_ingested"] == 1
        # Three rows for two sends: the first send was delivered twice, answered once.
        assert len(ingested) - before == 3
        counters = httpx.get(f"{control}/counters", timeout=30).json()
        assert counters["faults"] == {"duplicate": 1}
        assert sum(r["count"] for r in counters["requests"] if r["path"] == "/2/httpapi") == 2
