"""Whether the node's queue survives a crash of its Redis: append-only persistence, or a refusal.

The node's Redis holds every job accepted and not yet run, every result, and
the replay guard (the nonces and ids already claimed). How much of that a
crash of Redis takes with it depends on its persistence:

    aof    `appendonly yes`: every write is appended to a file. With `appendfsync everysec`
           (zeronode's config, scripts/redis/zeronode-redis.conf) a crash of redis-server alone
           (kill -9, an OOM kill) loses nothing it acknowledged; a crash of the machine (a power
           cut, a kernel panic) loses up to about a second of writes (two, when the disk lags).
    rdb    snapshots only (Debian's packaged default): everything since the last snapshot, minutes
           of accepted jobs, and the replay guard with them, so finished envelopes run again.
    none   nothing is saved: everything.

A supervisor runs on `aof` only, unless the node's settings say
`allow_volatile_queue = true` (tests of the refusal; a throwaway node).

    queue_persistence(connection)                        "aof", "rdb", "none", or "unknown" (Redis would not say)
    DurabilityCheck(connection, allow_volatile).ensure()  the mode, once it is one to run on; else VolatileQueue

The supervisor checks at start (a volatile Redis: it refuses to start; an
unreachable one: it starts, and the check runs on the first connection: its
accept path calls `ensure()`, which answers from memory once it has passed).
"""

from __future__ import annotations

import logging
import threading

import redis

from zeronode.errors import ZeronodeError

log = logging.getLogger("zeronode.node")

AOF, RDB, NONE, UNKNOWN = "aof", "rdb", "none", "unknown"
FIX = "run it with `appendonly yes` (scripts/redis/zeronode-redis.conf), or set allow_volatile_queue = true to accept that"


class VolatileQueue(ZeronodeError):
    """The node's Redis is not append-only, and the node's settings do not allow that: its message names the fix."""

    def __init__(self, where: str, mode: str):
        self.where = where
        self.mode = mode
        super().__init__(
            f"the node's Redis ({where}) is not append-only (persistence: {mode}): a crash of it would lose "
            f"accepted jobs and the replay guard; {FIX}"
        )


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _config(connection: redis.Redis, name: str) -> str | None:
    """A setting's value from CONFIG GET; None when CONFIG is renamed, disabled or not permitted (ACL)."""
    try:
        answer = connection.config_get(name)
    except redis.ResponseError:
        return None
    values = {_text(key): _text(value) for key, value in answer.items()}
    return values.get(name)


def queue_persistence(connection: redis.Redis) -> str:
    """How the node's Redis persists what it holds: "aof" (append-only), "rdb" (snapshots only), "none",
    or "unknown" when it answers neither CONFIG nor INFO persistence (treated as volatile).

    CONFIG may be renamed or disabled on a hardened Redis (rename-command, ACLs): then INFO persistence's
    aof_enabled decides, and a Redis without append-only reads "none" (INFO does not tell snapshots apart).
    Raises redis.RedisError when Redis cannot be reached."""
    appendonly = _config(connection, "appendonly")
    if appendonly is not None:
        if appendonly.lower() == "yes":
            return AOF
        save = _config(connection, "save")
        return RDB if save and save.strip() else NONE
    try:
        info = connection.info("persistence")
    except redis.ResponseError:
        return UNKNOWN
    if "aof_enabled" not in info:
        return UNKNOWN
    return AOF if int(info["aof_enabled"]) == 1 else NONE


def describe(connection: redis.Redis) -> str:
    """Where `connection` goes, without its password: a socket's path or host:port/db."""
    kwargs = connection.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


class DurabilityCheck:
    """The supervisor's check of its queue's persistence: once passed, answered from memory.

    `ensure()` returns the mode ("aof", or any mode when `allow_volatile`) and
    raises VolatileQueue when the Redis is not append-only and that is not
    allowed; redis.RedisError when Redis cannot be reached (nothing is cached
    then: the next call asks again). `read()` asks Redis again whatever was
    cached (/health does, so a Redis restarted without append-only is caught)
    and never raises VolatileQueue. Safe to share between threads."""

    def __init__(self, connection: redis.Redis, allow_volatile: bool):
        self.connection = connection
        self.allow_volatile = allow_volatile
        self.mode: str | None = None  # the mode last read; None until Redis answered once
        self._passed = False
        self._warned = False
        self._lock = threading.Lock()

    @property
    def acceptable(self) -> bool:
        """Whether the mode last read is one the node runs on (False until one was read)."""
        return self.mode is not None and (self.mode == AOF or self.allow_volatile)

    def read(self) -> str:
        """The persistence as Redis reports it now; updates what `ensure()` answers from."""
        mode = queue_persistence(self.connection)
        with self._lock:
            self.mode = mode
            self._passed = self.acceptable
            warn = mode != AOF and self.allow_volatile and not self._warned
            self._warned = self._warned or warn
        if warn:
            log.warning(
                "the node's queue is volatile: a crash of its Redis loses accepted jobs (allow_volatile_queue = true)",
                extra={"redis": describe(self.connection), "persistence": mode},
            )
        return mode

    def ensure(self) -> str:
        """The queue's persistence, if the node may run on it; else VolatileQueue. One Redis round trip
        until it passes, none after."""
        if self._passed:
            return self.mode  # type: ignore[return-value]
        mode = self.read()
        if not self._passed:
            raise self.error(mode)
        return mode

    def error(self, mode: str | None = None) -> VolatileQueue:
        return VolatileQueue(describe(self.connection), mode or self.mode or UNKNOWN)
