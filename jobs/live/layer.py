"""The channel layer: channels-redis's, counting the messages it drops without a word,
and reading a group's members in one round trip.

channels-redis drops silently in two places (``jobs.core.dropped`` counts both): a group
send skips a channel that is full in Redis (``layer_full``; a web process's followers
share one channel there), and inside a web process each follower's queue
(``WS_CHANNEL_CAPACITY`` long) drops its oldest message when the follower lags that far
behind (``web_queue``). Either way the follower sees the gap by ``seq`` and sends a
snapshot at once.
"""

from __future__ import annotations

import functools
import logging
import time

from channels_redis.core import BoundedQueue, RedisChannelLayer

from jobs.core import dropped

logger = logging.getLogger("jobs.live.layer")


class _CountingQueue(BoundedQueue):
    def put_nowait(self, item) -> None:
        if self.full():
            dropped.count("web_queue")
        super().put_nowait(item)


class ChannelLayer(RedisChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.receive_buffer.default_factory = functools.partial(_CountingQueue, self.capacity)

    async def group_send(self, group, message) -> None:
        """channels-redis's group_send (4.3), but the group's expired members are dropped
        and the rest read in one pipeline, not two round trips one after the other: most
        of a send to a group nobody follows (every job's message goes to the operators'
        group, and every submit's to the line's)."""
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        pipe = self.connection(self.consistent_hash(group)).pipeline(transaction=False)
        pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
        pipe.zrange(key, 0, -1)
        _, members = await pipe.execute()
        if members:
            await self._send_to_members(group, [member.decode("utf8") for member in members], message)

    async def _send_to_members(self, group, channel_names, message) -> None:
        """The rest of channels-redis's group_send, as it is there (a full channel counted)."""
        to_keys, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        for index, keys in to_keys.items():
            connection = self.connection(index)
            pipe = connection.pipeline()
            for key in keys:  # discard old messages based on expiry
                pipe.zremrangebyscore(key, min=0, max=int(time.time()) - int(self.expiry))
            await pipe.execute()
            args = [messages[key] for key in keys] + [capacities[key] for key in keys] + [time.time(), self.expiry]
            over = await connection.eval(_GROUP_SEND_LUA, len(keys), *keys, *args)
            if over > 0:  # channels-redis only logs it, at INFO
                dropped.count("layer_full", over)
                logger.warning("%s of %s channels over capacity in group %s", over, len(channel_names), group)


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
