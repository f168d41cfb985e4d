"""
Rate limits shared by every gateway replica through Redis.

Each decision is one EVALSHA of one Lua script that runs GCRA over all the
request's buckets atomically: it reads every key, and writes them only when
all admit, so a refused request consumes nothing anywhere.  The script reads
the time with C{TIME} on the Redis server, so the replicas' clocks never
matter, and gives every key a TTL equal to the time its bucket takes to
refill (an expired key and a full bucket are the same state).  Keys are
C{tenantgw:{namespace}:...}; the braces are a Redis Cluster hash tag, so one
tenant's keys share a slot and one script can touch them all.

Redis must never stall a request: each call has a short timeout (50 ms) and
a Redis that is known to be down (no live connection) is not even asked.
Then the failure mode decides: "open" admits through an in-process limiter
whose limits are divided by the number of replicas (so together the
replicas stay near the budget), counting what it lets through; "closed"
answers 503.  Connections are re-established by txredisapi's reconnecting
pool in the background.

The number of replicas is counted, not configured: every gateway process
sends a heartbeat to the same Redis every 5 s (L{HEARTBEAT_SCRIPT}: one
sorted set, C{tenantgw:replicas}, each process a member scored with the
moment it expires, 15 s ahead on Redis's clock; expired members are dropped
and the rest counted in the same script run).  The last count is kept, so
while Redis is down the fallback divides by the number of replicas there
were when it was last reachable; C{--replicas} is a floor, used before any
count (and whenever the count is lower).  A process that stops cleanly
leaves the set at once; one that dies is dropped once its 15 s are up.  The
count is of processes, so C{--workers} are counted too: each worker is a
gateway with its own fallback limiter.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from attrs import frozen
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tenantgw.dataplane.limits import Bucket, Denial, RateLimiter
from tenantgw.values import RateLimit

_log = Logger()

DEFAULT_TIMEOUT = 0.05
# Two connections: a decision never waits behind a reconnect of the only one.
POOL_SIZE = 2
# Reconnect attempts back off up to this, so a restarted Redis is used again
# within about a second.
MAX_RECONNECT_DELAY = 1.0
# txredisapi's own reply timeout, longer than ours: it aborts a connection
# that stopped answering (a hung server), which our per-call timeout alone
# would leave queueing replies forever.
REPLY_TIMEOUT = 1.0

# One call decides a batch: every request that reached this replica for one
# tenant during one reactor turn, in arrival order, each all-or-nothing.
# KEYS: the distinct keys of the batch (a tenant's key is in every decision,
# so it is sent once).  ARGV[1]: numbers separated by spaces: for each
# decision its number of buckets, then per bucket the key's index in KEYS,
# the emission interval and the burst.  (One string, not one argument per
# number: encoding arguments is most of a Redis client's work per command.)
# Returns one string, a token per decision: "0" when admitted, else
# "<bucket index within the decision>:<seconds until it would admit>" for
# the bucket that waits longest.  Each key is written once, at the end, with
# a TTL of the time its bucket takes to refill.  Numbers are written with
# %.6f: Lua's tostring keeps only 14 digits, too few for microseconds since
# 1970.
GCRA_SCRIPT = b"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local next_number = string.gmatch(ARGV[1], '%S+')
local tats = {}
local result = {}
while true do
  local token = next_number()
  if token == nil then break end
  local n = tonumber(token)
  local keys, new_tats = {}, {}
  local worst, worst_wait = 0, 0
  for i = 1, n do
    local key = tonumber(next_number())
    local interval = tonumber(next_number())
    local burst = tonumber(next_number())
    local tat = tats[key]
    if tat == nil then
      tat = tonumber(redis.call('GET', KEYS[key])) or now
    end
    if tat < now then tat = now end
    local new_tat = tat + interval
    local allow_at = new_tat - interval * burst
    if allow_at > now then
      if allow_at - now > worst_wait then
        worst, worst_wait = i, allow_at - now
      end
    end
    keys[i], new_tats[i] = key, new_tat
  end
  if worst > 0 then
    result[#result + 1] = worst .. ':' .. string.format('%.6f', worst_wait)
  else
    for i = 1, n do
      tats[keys[i]] = new_tats[i]
    end
    result[#result + 1] = '0'
  end
end
for key, tat in pairs(tats) do
  local ttl = math.ceil((tat - now) * 1000) + 1
  redis.call('SET', KEYS[key], string.format('%.6f', tat), 'PX', ttl)
end
return table.concat(result, ' ')
"""
GCRA_SHA = hashlib.sha1(GCRA_SCRIPT).hexdigest()

# Replica heartbeats.  KEYS[1]: the sorted set of live gateway processes.
# ARGV: this process's member name, the TTL in seconds, "1" to stay in the
# set or "0" to leave it.  Scores are expiry times on Redis's clock (TIME),
# so the replicas' own clocks never matter.  The key itself expires with the
# last member, so nothing is left behind when every gateway is gone.
# Returns the number of live members.
REPLICAS_KEY = "tenantgw:replicas"
HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_TTL = 15.0
# Until the first heartbeat succeeds (the pool still connecting), retry soon.
HEARTBEAT_RETRY = 0.5
HEARTBEAT_TIMEOUT = 1.0
HEARTBEAT_SCRIPT = b"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now))
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], string.format('%.6f', now + ttl), ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000))
return redis.call('ZCARD', KEYS[1])
"""
HEARTBEAT_SHA = hashlib.sha1(HEARTBEAT_SCRIPT).hexdigest()


def instance_id() -> str:
    """This process among the replicas: pod (host) name, pid, and a random part for restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@frozen
class QuotaUnavailable:
    """Redis could not decide and the failure mode is closed: answer 503."""


UNAVAILABLE = QuotaUnavailable()

Decision = Denial | None | QuotaUnavailable


Batch = list[tuple[Sequence[Bucket], "Deferred[Decision]"]]


@functools.lru_cache(maxsize=65536)
def _limit_args(limit: RateLimit) -> str:
    return f"{1.0 / limit.requests_per_second!r} {limit.burst}"


@functools.lru_cache(maxsize=65536)
def redis_key(key: tuple[str, ...]) -> str:
    """
    C{("client", ns, addr)} -> C{tenantgw:{ns}:client:addr}: the namespace
    in the hash tag, the rest as the in-process limiter keys it.
    """
    kind, namespace, *rest = key
    return ":".join([f"tenantgw:{{{namespace}}}:{kind}", *map(str, rest)])


def parse_redis_url(url: str) -> tuple[str, Any, int | None, str | None]:
    """
    C{redis://[:password@]host[:port][/db]} or C{unix:///path[?db=N]} ->
    (description for logs, endpoint arguments, db, password).
    """
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password else None
    if parts.scheme == "redis":
        db_text = parts.path.strip("/")
        db = int(db_text) if db_text else None
        host = parts.hostname or "localhost"
        return f"{host}:{parts.port or 6379}", ("tcp", host, parts.port or 6379), db, password
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:///path needs a path")
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        db = int(query["db"]) if "db" in query else None
        return parts.path, ("unix", parts.path), db, password
    raise ValueError(f"{url!r}: expected redis://host:port/db or unix:///path")


class RedisQuota:
    """Shared rate-limit decisions; see the module docstring for failure handling."""

    def __init__(
        self,
        factory: Any,
        clock: IReactorTime,
        fallback: RateLimiter,
        replicas: int = 1,
        fail_open: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        heartbeat_ttl: float = HEARTBEAT_TTL,
        member: str | None = None,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.fallback = fallback
        # --replicas: the floor of the count, and the count until Redis gives one.
        self.replica_floor = replicas
        # The live gateway processes Redis last counted (None: never counted).
        self.counted_replicas: int | None = None
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_ttl = heartbeat_ttl
        self.member = member or instance_id()
        self._beat_call: IDelayedCall | None = None
        self._beating = False
        self._heartbeat_failing = False
        self.fail_open = fail_open
        self.timeout = timeout
        self._scaled: dict[RateLimit, RateLimit] = {}
        self._next = 0
        self._pending: dict[str, Batch] = {}
        self.healthy = True
        # For metrics: decisions Redis could not make, and requests the
        # open failure mode admitted without it.
        self.failures = 0
        self.fallback_admitted = 0

    @property
    def replicas(self) -> int:
        """What the open failure mode divides every limit by."""
        return max(self.replica_floor, self.counted_replicas or 0)

    # --- replica heartbeats ---------------------------------------------------

    def start_heartbeat(self) -> None:
        """Beat now (or as soon as a connection is up), then every interval."""
        self._beating = True
        self._schedule(0)

    def _schedule(self, delay: float) -> None:
        if self._beating:
            self._beat_call = self.clock.callLater(delay, self._beat)

    def _beat(self) -> None:
        self._beat_call = None
        if not self.factory.pool:
            # Not connected (yet, or any more): keep the last count.
            retry = self.heartbeat_interval if self.counted_replicas else HEARTBEAT_RETRY
            self._schedule(min(retry, self.heartbeat_interval))
            return
        d = self._heartbeat_call(stay=True)
        d.addCallbacks(self._counted, self._beat_failed)
        d.addBoth(lambda _: self._schedule(self.heartbeat_interval))

    def _heartbeat_call(self, *, stay: bool) -> Deferred[Any]:
        connection = self.factory.pool[self._next % len(self.factory.pool)]
        self._next += 1
        keys = [REPLICAS_KEY]
        args = [self.member, repr(float(self.heartbeat_ttl)), "1" if stay else "0"]
        try:
            d: Deferred[Any] = connection.evalsha(HEARTBEAT_SHA, keys, args)
        except Exception as e:  # the connection died in this very turn
            return fail(e)
        d.addErrback(self._send_whole, connection, HEARTBEAT_SCRIPT, keys, args)
        d.addTimeout(HEARTBEAT_TIMEOUT, self.clock)
        return d

    def _counted(self, reply: Any) -> None:
        try:
            count = int(reply)
        except (TypeError, ValueError):
            self._beat_failed(Failure(ValueError(f"unexpected reply {reply!r:.100}")))
            return
        if self._heartbeat_failing:
            self._heartbeat_failing = False
            _log.info("Redis counts replicas again")
        if count != self.counted_replicas:
            _log.info(
                "{count} gateway process(es) share Redis: with Redis down, each admits"
                " 1/{replicas} of every limit",
                count=count,
                replicas=max(self.replica_floor, count),
            )
            self.counted_replicas = count
            self._scaled.clear()

    def _beat_failed(self, failure: Failure) -> None:
        if not self._heartbeat_failing:
            self._heartbeat_failing = True
            _log.warn(
                "replica heartbeat failed ({why}); keeping the last count ({count})",
                why=failure.getErrorMessage() or repr(failure.value),
                count=self.counted_replicas,
            )

    def _stop_heartbeat(self) -> None:
        self._beating = False
        if self._beat_call is not None and self._beat_call.active():
            self._beat_call.cancel()
        self._beat_call = None

    # --- decisions ------------------------------------------------------------

    def decide(self, buckets: Sequence[Bucket]) -> Deferred[Decision]:
        """
        Queued, and sent with the tenant's other decisions of this reactor
        turn: one round trip and one script run for many requests is what
        keeps Redis's cost per request small under load.
        """
        if not self.factory.pool:
            return succeed(self._without_redis(buckets, "no connection"))
        pending = self._pending
        if not pending:
            self.clock.callLater(0, self._flush)
        namespace = buckets[0].key[1]
        batch = pending.get(namespace)
        if batch is None:
            batch = pending[namespace] = []
        decided: Deferred[Decision] = Deferred()
        batch.append((buckets, decided))
        return decided

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for batch in pending.values():
            self._send(batch)

    def _send(self, batch: Batch) -> None:
        pool = self.factory.pool
        if not pool:
            self._fail_batch(batch, "no connection")
            return
        connection = pool[self._next % len(pool)]
        self._next += 1
        keys: list[str] = []
        index_of: dict[tuple[str, ...], str] = {}
        numbers: list[str] = []
        for buckets, _ in batch:
            numbers.append(str(len(buckets)))
            for bucket in buckets:
                index = index_of.get(bucket.key)
                if index is None:
                    keys.append(redis_key(bucket.key))
                    index = index_of[bucket.key] = str(len(keys))
                numbers.append(index)
                numbers.append(_limit_args(bucket.limit))
        args = [" ".join(numbers)]
        try:
            d: Deferred[Any] = connection.evalsha(GCRA_SHA, keys, args)
        except Exception:  # the connection died in this very turn
            self._fail_batch(batch, "connection lost")
            return
        d.addErrback(self._send_whole, connection, GCRA_SCRIPT, keys, args)
        d.addTimeout(self.timeout, self.clock)
        d.addCallbacks(self._answered, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))

    @staticmethod
    def _send_whole(
        failure: Failure, connection: Any, script: bytes, keys: list[str], args: list[str]
    ) -> Any:
        """NOSCRIPT (a restarted or flushed Redis): the script did not run, so send it whole."""
        from txredisapi import ScriptDoesNotExist

        failure.trap(ScriptDoesNotExist)
        return connection.eval(script, keys, args)

    def _answered(self, reply: Any, batch: Batch) -> None:
        try:
            decisions = self._parse(reply, batch)
        except (ValueError, IndexError):
            # Never leave a request waiting on an answer that cannot be read.
            self._fail_batch(batch, f"unexpected reply {reply!r:.100}")
            return
        if not self.healthy:
            self.healthy = True
            _log.info("Redis answers again: rate limits are shared again")
        for decision, (_, decided) in zip(decisions, batch):
            decided.callback(decision)

    @staticmethod
    def _parse(reply: Any, batch: Batch) -> list[Decision]:
        tokens = (reply.decode() if isinstance(reply, bytes) else str(reply)).split()
        if len(tokens) != len(batch):
            raise ValueError("one token per decision expected")
        decisions: list[Decision] = []
        for token, (buckets, _) in zip(tokens, batch):
            if token == "0":
                decisions.append(None)
            else:
                index, _, wait = token.partition(":")
                bucket = buckets[int(index) - 1]
                decisions.append(Denial(bucket.name, bucket.limit, float(wait)))
        return decisions

    def _failed(self, failure: Failure, batch: Batch) -> None:
        self._fail_batch(batch, failure.getErrorMessage() or repr(failure.value))

    def _fail_batch(self, batch: Batch, why: str) -> None:
        for buckets, decided in batch:
            decided.callback(self._without_redis(buckets, why))

    def _without_redis(self, buckets: Sequence[Bucket], why: str) -> Decision:
        self.failures += 1
        if self.healthy:
            self.healthy = False
            _log.warn(
                "Redis cannot decide rate limits ({why}): failing {mode}",
                why=why,
                mode="open, with each limit divided by the replicas"
                if self.fail_open
                else "closed",
            )
        if not self.fail_open:
            return UNAVAILABLE
        scaled = [Bucket(b.key, self._scale(b.limit), b.name) for b in buckets]
        denial = self.fallback.try_acquire(scaled)
        if denial is None:
            self.fallback_admitted += 1
        return denial

    def _scale(self, limit: RateLimit) -> RateLimit:
        """This replica's share: rate and burst divided by the replicas, burst at least 1."""
        scaled = self._scaled.get(limit)
        if scaled is None:
            replicas = self.replicas
            scaled = RateLimit(
                requests_per_second=limit.requests_per_second / replicas,
                burst=max(1, limit.burst // replicas),
            )
            self._scaled[limit] = scaled
        return scaled

    def stop(self) -> Deferred[Any]:
        """
        Leave the replica count (so the others' share grows now rather than
        in 15 s), then close the connections.  Leaving is best effort: a
        Redis that cannot be reached is not waited for beyond one timeout.
        """
        was_beating = self._beating
        self._stop_heartbeat()
        if not (was_beating and self.factory.pool):
            return self._disconnect()
        d = self._heartbeat_call(stay=False)
        d.addErrback(lambda _: None)
        d.addCallback(lambda _: self._disconnect())
        return d

    def _disconnect(self) -> Deferred[Any]:
        result: Deferred[Any] = self.factory.disconnect()
        return result


def connect(
    url: str,
    reactor: Any,
    fallback: RateLimiter,
    replicas: int = 1,
    fail_open: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    heartbeat_interval: float = HEARTBEAT_INTERVAL,
    heartbeat_ttl: float = HEARTBEAT_TTL,
) -> RedisQuota:
    """
    A L{RedisQuota} whose pool starts connecting now and reconnects forever,
    and whose replica heartbeat starts with it.  C{replicas} is the floor of
    the replica count.
    """
    # txredisapi imports the global reactor: imported only once Redis is used,
    # so that parsing options (which checks the URL) installs no reactor.
    import txredisapi

    description, where, db, password = parse_redis_url(url)
    factory = txredisapi.RedisFactory(
        description,
        db,
        POOL_SIZE,
        isLazy=True,
        handler=txredisapi.ConnectionHandler,
        password=password,
        replyTimeout=REPLY_TIMEOUT,
        convertNumbers=False,
    )
    factory.maxDelay = MAX_RECONNECT_DELAY
    factory.initialDelay = 0.1
    if where[0] == "unix":
        endpoint: Any = UNIXClientEndpoint(reactor, where[1], timeout=1)
    else:
        endpoint = HostnameEndpoint(reactor, where[1], where[2], timeout=1)
    factory.startConnecting(endpoint)
    quota = RedisQuota(
        factory,
        reactor,
        fallback,
        replicas,
        fail_open,
        timeout,
        heartbeat_interval=heartbeat_interval,
        heartbeat_ttl=heartbeat_ttl,
    )
    quota.start_heartbeat()
    return quota
