"""The channel layer: channels-redis's, counting the messages it drops without a word.

Inside a web process, channels-redis hands each message to a queue per follower
(``capacity`` long, ``WS_CHANNEL_CAPACITY``); when a follower lags that far behind, the
queue drops its oldest message silently. This layer counts each such drop
(``jobs.core.dropped``: ``web_queue``); the follower sees the gap by ``seq`` and gets a
snapshot at once. (A full channel in Redis is counted from channels-redis's log line:
``dropped.CountFullChannels``.)
"""

from __future__ import annotations

import functools

from channels_redis.core import BoundedQueue, RedisChannelLayer

from jobs.core import dropped


class _CountingQueue(BoundedQueue):
    def put_nowait(self, item) -> None:
        if self.full():
            dropped.count("web_queue")
        super().put_nowait(item)


class ChannelLayer(RedisChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.receive_buffer.default_factory = functools.partial(_CountingQueue, self.capacity)
