"""The channel layer: channels-redis's, counting the messages it drops without a word,
reading a group's members in one round trip, and sending from a thread with no event
loop (the relay's) as blocking calls, many group sends at once.

channels-redis drops silently in two places (``jobs.core.dropped`` counts both): a group
send skips a channel that is full in Redis (``layer_full``; a web process's followers
share one channel there), and inside a web process each follower's queue
(``WS_CHANNEL_CAPACITY`` long) drops its oldest message when the follower lags that far
behind (``web_queue``). Either way the follower sees the gap by ``seq`` and sends a
snapshot at once.

It also ends a receive whose cancellation was lost (``_brpop_with_clean``): otherwise a
closed follower's receive could go on polling Redis until the process exits.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time

import redis
import redis.sentinel
from channels_redis.core import BoundedQueue, RedisChannelLayer

from jobs.core import dropped

logger = logging.getLogger("jobs.live.layer")


class _CountingQueue(BoundedQueue):
    def put_nowait(self, item) -> None:
        if self.full():
            dropped.count("web_queue")
        super().put_nowait(item)


class ChannelLayer(RedisChannelLayer):
    # How long one blocking pop of a web process's channel waits (channels-redis: 5 s):
    # also the longest a receive whose cancellation was lost during that pop's send goes
    # on (``_brpop_with_clean``). An idle process polls Redis once a second for it.
    brpop_timeout = 1

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.receive_buffer.default_factory = functools.partial(_CountingQueue, self.capacity)
        self._blocking_clients: dict[int, redis.Redis] = {}  # the relay thread's (group_send_many_blocking)

    async def _brpop_with_clean(self, index, channel, timeout):
        """channels-redis's (4.3), but a receive whose task was cancelled ends even when
        the cancellation never reached it. On Python 3.11, ``asyncio.wait_for`` returns
        its inner result instead of raising when the cancel comes as that result is
        ready; redis-py sends every command (and a reconnect's handshake) through it when
        a socket timeout is set. A follower that closes as its receive starts (another
        follower's receive, cancelled at its own close, handed it the receive lock) then
        loses its cancel, and channels-redis polls again every ``brpop_timeout``: the
        consumer's close waits for that receive forever, and so does a stopping web
        process (uvicorn's 10 s grace). Checked before the blocking pop and after an
        empty one (a cancel lost in the pop's own send waits out the pop). A popped
        message is returned and backed up as channels-redis does (its backup queue
        restores what a receive cancelled after the backup popped; one cancelled
        between the pop's reply and the backup loses it, there as here)."""
        backup_queue = self._backup_channel_name(channel)
        connection = self.connection(index)
        await connection.eval(_RESTORE_BACKUP_LUA, 0, channel, backup_queue)
        _end_if_cancelled()
        result = await connection.bzpopmin(channel, timeout=timeout)
        if result is None:
            _end_if_cancelled()
            return None
        _, member, timestamp = result
        await connection.zadd(backup_queue, {member: float(timestamp)})
        return member

    async def group_send(self, group, message) -> None:
        """channels-redis's group_send (4.3), but the group's expired members are dropped
        and the rest read in one pipeline, not two round trips one after the other: most
        of a send goes to a group nobody follows."""
        assert self.require_valid_group_name(group), "Group name not valid"
        pipe = self.connection(self.consistent_hash(group)).pipeline(transaction=False)
        self._queue_member_reads(pipe, [group])
        members = self._members([group], await pipe.execute())[group]
        if members:
            await self._send_to_members(group, members, message)

    async def _send_to_members(self, group, channel_names, message) -> None:
        """The rest of channels-redis's group_send, as it is there (a full channel counted)."""
        to_keys, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        for index, keys in to_keys.items():
            connection = self.connection(index)
            pipe = connection.pipeline()
            self._queue_expired_drops(pipe, keys)
            await pipe.execute()
            args = self._send_args(keys, messages, capacities)
            over = await connection.eval(_GROUP_SEND_LUA, len(keys), *keys, *args)
            self._count_over(over, channel_names, group)

    def group_send_many_blocking(self, sends: list[tuple[str, dict]], *, timeout: float) -> None:
        """Group sends in order, each as ``group_send``, but from a thread with no event
        loop (the relay's) as blocking Redis calls, and the members of all their groups
        read in one pipeline per Redis host: a relay sends what it has buffered at once
        (every job's message goes to its own group and the operators', most often
        followed by nobody). Each call times out after ``timeout`` seconds."""
        by_host: dict[int, list[str]] = collections.defaultdict(list)
        for group in dict.fromkeys(group for group, _ in sends):
            assert self.require_valid_group_name(group), "Group name not valid"
            by_host[self.consistent_hash(group)].append(group)
        members: dict[str, list[str]] = {}
        for index, groups in by_host.items():
            pipe = self._blocking(index, timeout).pipeline(transaction=False)
            self._queue_member_reads(pipe, groups)
            members.update(self._members(groups, pipe.execute()))
        for group, message in sends:
            if not members[group]:
                continue
            to_keys, messages, capacities = self._map_channel_keys_to_connection(members[group], message)
            for index, keys in to_keys.items():
                pipe = self._blocking(index, timeout).pipeline(transaction=False)
                self._queue_expired_drops(pipe, keys)
                pipe.eval(_GROUP_SEND_LUA, len(keys), *keys, *self._send_args(keys, messages, capacities))
                self._count_over(pipe.execute()[-1], members[group], group)

    def close_blocking(self) -> None:
        for client in self._blocking_clients.values():
            client.close()
        self._blocking_clients.clear()

    def _blocking(self, index: int, timeout: float) -> redis.Redis:
        """A blocking client for the host at ``index``, from the same settings as
        channels-redis's pools (an address, a Sentinel's master, or connection keywords)."""
        client = self._blocking_clients.get(index)
        if client is None:
            host = {**self.hosts[index], "socket_timeout": timeout}
            if "address" in host:
                client = redis.Redis.from_url(host.pop("address"), **host)
            elif "master_name" in host:
                # The Sentinels' own calls are timed out too (redis-py waits forever by default).
                sentinel_kwargs = host.pop("sentinel_kwargs", None) or {
                    "socket_timeout": timeout,
                    "socket_connect_timeout": timeout,
                }
                sentinels = redis.sentinel.Sentinel(host.pop("sentinels"), sentinel_kwargs=sentinel_kwargs)
                client = sentinels.master_for(host.pop("master_name"), **host)
            else:
                client = redis.Redis(**host)
            self._blocking_clients[index] = client
        return client

    def _queue_member_reads(self, pipe, groups: list[str]) -> None:
        expired = int(time.time()) - self.group_expiry
        for group in groups:
            pipe.zremrangebyscore(self._group_key(group), min=0, max=expired)
            pipe.zrange(self._group_key(group), 0, -1)

    @staticmethod
    def _members(groups: list[str], replies: list) -> dict[str, list[str]]:
        return {
            group: [member.decode("utf8") for member in found]
            for group, found in zip(groups, replies[1::2], strict=True)
        }

    def _queue_expired_drops(self, pipe, keys) -> None:
        for key in keys:  # discard old messages based on expiry
            pipe.zremrangebyscore(key, min=0, max=int(time.time()) - int(self.expiry))

    def _send_args(self, keys, messages, capacities) -> list:
        return [messages[key] for key in keys] + [capacities[key] for key in keys] + [time.time(), self.expiry]

    @staticmethod
    def _count_over(over: int, channel_names: list[str], group: str) -> None:
        if over > 0:  # channels-redis only logs it, at INFO
            dropped.count("layer_full", over)
            logger.warning("%s of %s channels over capacity in group %s", over, len(channel_names), group)


def _end_if_cancelled() -> None:
    """Raise the cancellation a swallowed cancel left pending on this task. A task still
    running here with a cancel not taken back (``uncancel``) lost it: asyncio's own
    handlers (a timeout, a task group) take theirs back. A task that swallows one on
    purpose without ``uncancel()`` gets it again here; Channels receives in a task of
    its own, and so do Jobdesk's callers."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


# channels-redis 4.3's, unchanged: put what a cancelled receive popped back at the head
# of its channel, in order (the blocking pop must not run inside a script).
_RESTORE_BACKUP_LUA = """
    local backed_up = redis.call('ZRANGE', ARGV[2], 0, -1, 'WITHSCORES')
    for i = #backed_up, 1, -2 do
        redis.call('ZADD', ARGV[1], backed_up[i], backed_up[i - 1])
    end
    redis.call('DEL', ARGV[2])
"""

# channels-redis 4.3's, unchanged: add the message to each channel under its capacity.
_GROUP_SEND_LUA = """
    local over_capacity = 0
    local current_time = ARGV[#ARGV - 1]
    local expiry = ARGV[#ARGV]
    for i=1,#KEYS do
        if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
            redis.call('ZADD', KEYS[i], current_time, ARGV[i])
            redis.call('EXPIRE', KEYS[i], expiry)
        else
            over_capacity = over_capacity + 1
        end
    end
    return over_capacity
"""
