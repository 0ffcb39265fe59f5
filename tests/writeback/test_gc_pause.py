"""gc_paused: no cyclic collection inside, and no deferred pass over what it built."""

from __future__ import annotations

import gc

from analytics_assets.crm_writeback.gc_pause import gc_paused


def test_the_collector_is_off_inside_and_back_on_after() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # nested: the inner block must not switch it back on
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_next_collection_does_not_trace_what_the_block_built() -> None:
    young: list[int] = []  # objects in the youngest generation when a collection starts

    def watch(phase: str, info: dict) -> None:
        if phase == "start" and not young:
            young.append(len(gc.get_objects(generation=0)))

    gc.callbacks.append(watch)
    try:
        with gc_paused():
            built = [{"id": str(i), "row": (i, str(i))} for i in range(50_000)]
        gc.collect(0)  # the first collection after the block, if none ran by itself
    finally:
        gc.callbacks.remove(watch)
    # Left young, that first pass would trace all 100,000 dicts and tuples.
    assert young and young[0] < 1_000
    assert len(built) == 50_000


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
