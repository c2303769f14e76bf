"""The relay's sending thread against the real channel layer (Redis): what arrives within
GATHER_SECONDS goes in one send, sends under load are paced (PACE_SECONDS), a drain
sends what is gathering at once, a process that ends right after relaying still sends,
and a work-horse's relay waits for its parent's messages to go first (a handover)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from conftest import readable_within, relay_asleep_until_due, wait_for
from jobs.core import relay

pytestmark = pytest.mark.redis


def seen_sends(sender: relay._Sender, monkeypatch) -> list[list[str]]:
    """The groups of each send the sender's layer makes (and still makes)."""
    seen: list[list[str]] = []
    send_many = sender.layer.group_send_many_blocking

    def counted(batch, *, timeout):
        seen.append([group for group, _ in batch])
        send_many(batch, timeout=timeout)

    monkeypatch.setattr(sender.layer, "group_send_many_blocking", counted)
    return seen


@pytest.fixture
def sends(monkeypatch):
    """A relay thread of its own whose layer's sends are seen (and still made)."""
    sender = relay._Sender()
    return sender, seen_sends(sender, monkeypatch)


def test_messages_arriving_together_go_in_one_send(sends, monkeypatch):
    monkeypatch.setattr(relay, "GATHER_SECONDS", 0.2)
    sender, seen = sends
    for n in range(5):
        sender.put(("jobdesk.job.gather", relay.OPS_GROUP), {"n": n})
    wait_for(lambda: seen, timeout=5, what="the gathered send")
    assert sender.wait_idle(5)
    assert seen == [["jobdesk.job.gather", relay.OPS_GROUP] * 5]


def test_a_drain_sends_what_is_gathering_at_once(sends, monkeypatch):
    monkeypatch.setattr(relay, "GATHER_SECONDS", 60.0)  # longer than any test waits
    sender, seen = sends
    sender.put(("jobdesk.job.drained",), {"n": 1})
    time.sleep(0.2)  # long enough for an ungathered send: the message must still wait
    assert seen == []
    started = time.monotonic()
    assert sender.wait_idle(5)
    assert seen == [["jobdesk.job.drained"]]
    assert time.monotonic() - started < 2, "the drain did not wait for the gathering"


def test_a_message_sent_at_once_does_not_wait_for_the_gathering(sends, monkeypatch):
    monkeypatch.setattr(relay, "GATHER_SECONDS", 60.0)
    sender, seen = sends
    sender.put(("jobdesk.job.gathering",), {"n": 1})
    sender.put(("jobdesk.job.queued",), {"n": 2}, at_once=True)  # a job being queued: it goes now, with the rest
    wait_for(lambda: seen, timeout=5, what="the send at once")
    assert seen == [["jobdesk.job.gathering", "jobdesk.job.queued"]]


def test_under_load_the_sends_are_paced(sends, monkeypatch):
    """A message right after a send waits for the pace, gathering what comes meanwhile
    into one send; one due now (a job being queued) takes the gathered with it at once,
    and so do a handover and a drain; after a quiet spell, a message goes after the
    short gathering again."""
    monkeypatch.setattr(relay, "GATHER_SECONDS", 0.01)
    monkeypatch.setattr(relay, "PACE_SECONDS", 60.0)  # longer than any test waits
    sender, seen = sends
    sender.put(("jobdesk.job.first",), {"n": 1})  # nothing sent before: only the gathering
    wait_for(lambda: seen, timeout=5, what="the first send")
    sender.put(("jobdesk.job.second",), {"n": 2})
    sender.put(("jobdesk.job.third",), {"n": 3})
    time.sleep(0.3)  # thirty gatherings: unpaced, both would have gone
    assert seen == [["jobdesk.job.first"]]
    sender.put(("jobdesk.job.queued",), {"n": 4}, at_once=True)
    wait_for(lambda: len(seen) == 2, timeout=5, what="the send at once")
    assert seen[1] == ["jobdesk.job.second", "jobdesk.job.third", "jobdesk.job.queued"]

    sender.put(("jobdesk.job.before-a-fork",), {"n": 5})  # paced: only the handover sends it now
    read_end = sender.handover()
    assert read_end is not None
    try:
        assert readable_within(read_end, 5), "the handover waited for the pace"
    finally:
        os.close(read_end)
    sender.put(("jobdesk.job.drained",), {"n": 6})
    assert sender.wait_idle(5), "the drain waited for the pace"
    assert seen[2:] == [["jobdesk.job.before-a-fork"], ["jobdesk.job.drained"]]

    with sender.lock:
        sender.sent_at -= relay.PACE_SECONDS  # a quiet spell as long as the pace
    sender.put(("jobdesk.job.after-a-quiet-spell",), {"n": 7})
    wait_for(lambda: len(seen) == 5, timeout=5, what="the send after a quiet spell")
    assert seen[4] == ["jobdesk.job.after-a-quiet-spell"]


def test_a_process_that_relays_and_ends_at_once_still_sends(spawn):
    """A script (or a command ending right after a move) that relays and ends: its relay
    thread is a daemon, so the exit itself sends what is held (a review found every such
    message lost, with or without the gathering)."""
    layer = get_channel_layer()
    for _ in range(3):
        job_id = str(uuid.uuid4())
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(relay.job_group(job_id), channel)
        assert spawn("-m", "jobs.core.tests.relayonce", job_id).wait(60) == 0

        async def receive(channel=channel):
            return await asyncio.wait_for(layer.receive(channel), 5)

        assert async_to_sync(receive)()["event"]["job_id"] == job_id


def test_a_handover_opens_once_what_was_relayed_before_it_is_gone(sends, monkeypatch):
    sender, seen = sends
    release = threading.Event()
    counted = sender.layer.group_send_many_blocking

    def held(batch, *, timeout):
        release.wait(5)
        counted(batch, timeout=timeout)

    monkeypatch.setattr(sender.layer, "group_send_many_blocking", held)
    sender.put(("jobdesk.job.before-the-fork",), {"n": 1})
    read_end = sender.handover()
    assert read_end is not None
    try:
        assert not readable_within(read_end, 0.2), "opened while the message before it was still being sent"
        release.set()
        assert readable_within(read_end, 5)
        assert seen == [["jobdesk.job.before-the-fork"]]
    finally:
        os.close(read_end)
    assert sender.handover() is None, "nothing left to send: nothing to wait for"


def test_a_handover_left_to_the_caller_to_wake_sends_when_woken(sends, monkeypatch):
    """The bookkeeper passes the handover on before the relay's thread sends (the two
    would contend for the interpreter): what the handover made due goes once woken."""
    monkeypatch.setattr(relay, "GATHER_SECONDS", 60.0)  # longer than any test waits
    sender, seen = sends
    sender.put(("jobdesk.job.claimed",), {"n": 1})
    relay_asleep_until_due(sender)
    read_end = sender.handover(wake=False)
    assert read_end is not None
    try:
        assert not readable_within(read_end, 0.2), "sent before it was woken"  # long enough for a woken send
        assert seen == [], "sent before it was woken"
        sender.wake()
        assert readable_within(read_end, 5)
        assert seen == [["jobdesk.job.claimed"]]
    finally:
        os.close(read_end)


def test_a_work_horses_relay_sends_nothing_before_its_parents_handover(monkeypatch):
    monkeypatch.setattr(relay, "HANDOVER_WAIT", 60.0)  # longer than any test waits
    read_end, write_end = os.pipe()
    relay.follow_parent(read_end)  # as a work-horse does first
    horse = relay._Sender()
    seen = seen_sends(horse, monkeypatch)
    try:
        horse.put(("jobdesk.job.horse",), {"progress": 10}, at_once=True)
        time.sleep(0.2)  # long enough for a send at once: it must still wait for the parent
        assert seen == []
        os.write(write_end, b"x")  # the parent's messages are gone
        wait_for(lambda: seen, timeout=5, what="the horse's send after the handover")
        assert seen == [["jobdesk.job.horse"]]
    finally:
        os.close(write_end)
        relay.follow_parent(None)
