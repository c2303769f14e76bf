"""The channel layer against a real Redis: a receive whose cancellation was lost still
ends, and leaves the process's receive lock free for the next."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from channels.layers import get_channel_layer

pytestmark = pytest.mark.redis


async def _receive_after_a_lost_cancel(layer, channel: str) -> dict:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    # Lost, as Python 3.11's wait_for loses a cancel that comes as its inner result is ready.
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(0)
    return await layer.receive(channel)


def test_a_receive_whose_cancel_was_lost_ends_and_the_next_receive_gets_its_message():
    layer = get_channel_layer()

    async def scenario() -> tuple[bool, dict]:
        try:
            lost = asyncio.ensure_future(_receive_after_a_lost_cancel(layer, await layer.new_channel()))
            # At once: before the first blocking pop would have ended empty.
            done, _ = await asyncio.wait([lost], timeout=layer.brpop_timeout / 2)
            ended = bool(done) and lost.cancelled()
            if not done:
                lost.cancel()  # so the test ends either way (the cancel is lost again: its wait is bounded)
                await asyncio.wait([lost], timeout=2 * layer.brpop_timeout + 5)
            other = await layer.new_channel()
            await layer.send(other, {"type": "hello"})
            return ended, await asyncio.wait_for(layer.receive(other), 5)
        finally:
            await layer.close_pools()

    ended, message = asyncio.run(scenario())
    assert ended, "the receive went on polling Redis after its task was cancelled"
    assert message == {"type": "hello"}
