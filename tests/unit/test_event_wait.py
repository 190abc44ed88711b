"""A cancelled waiter stays cancelled, whatever turn the event is set in (Python 3.11's wait_for loses it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import av
import pytest

from lib.engine.packets import AUDIO
from lib.event_wait import wait_event
from lib.live.media.passthrough import PacketQueue


async def _cancel_as_it_wakes(
    waiting: Callable[[], Coroutine[Any, Any, object]], wake: Callable[[], None], turns: int
) -> str:
    """Start ``waiting``, wake it, cancel it ``turns`` loop turns later; what became of it."""
    task = asyncio.ensure_future(waiting())
    await asyncio.sleep(0)
    wake()
    for _ in range(turns):
        await asyncio.sleep(0)
    if task.done():
        return "finished before the cancel"
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return "cancelled"
    return "cancel lost"


@pytest.mark.parametrize("turns", range(6))
def test_an_event_wait_cancelled_in_the_turn_it_is_set_raises_cancelled(turns: int) -> None:
    async def scenario() -> str:
        event = asyncio.Event()
        return await _cancel_as_it_wakes(lambda: wait_event(event, 5.0), event.set, turns)

    assert asyncio.run(scenario()) != "cancel lost"


@pytest.mark.parametrize("turns", range(6))
def test_a_packet_reader_cancelled_as_a_packet_arrives_is_not_left_running(turns: int) -> None:
    """The page's sender stops by cancelling its task inside ``recv``; a lost cancel kept it forwarding and
    the peer connection's ``close()`` waiting forever (seen as a 10 s timeout in the passthrough contract test)."""

    async def scenario() -> str:
        queue = PacketQueue(AUDIO, 10, lambda: None)
        return await _cancel_as_it_wakes(
            lambda: queue.get(timeout=5.0), lambda: queue.put(av.Packet(b"\x00" * 10), False), turns
        )

    assert asyncio.run(scenario()) != "cancel lost"


def test_a_wait_that_times_out_says_so() -> None:
    async def scenario() -> tuple[bool, bool]:
        unset, already = asyncio.Event(), asyncio.Event()
        already.set()
        return await wait_event(unset, 0.01), await wait_event(already, 0.01)

    assert asyncio.run(scenario()) == (False, True)
