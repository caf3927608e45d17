"""Redis clients chosen by URL: `redis://` (or `rediss://`) is one node, `redis+cluster://`
(or `rediss+cluster://`) a Redis Cluster, e.g. `redis+cluster://:password@10.0.0.1:6379,
10.0.0.2:6379` (one reachable seed is enough; the client discovers the other nodes).

Every module that talks to Redis (the cache through django-redis, slot locks, rate limits, the
circuit breakers) gets its client here, so switching to a cluster is a change of `REDIS_URL`.
On a cluster every command or script must touch keys of one hash slot: our keys put the part
that must stay together in a hash tag (`throttle:{user:42}:…`, `petpro:breaker:{users}:…`,
`slot:<clinic>:<service>:{<slot id>}`), see `hash_tagged`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import redis
from django_redis.pool import ConnectionFactory as DjangoRedisConnectionFactory
from redis.cluster import ClusterNode, RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS

AnyRedis = redis.Redis | RedisCluster


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def _cluster_kwargs(url: str) -> dict[str, Any]:
    """`redis+cluster://[user:password@]host:port[,host:port...][/0]` -> RedisCluster kwargs.
    (urllib cannot parse a comma-separated netloc, hence by hand.)"""
    scheme, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    if path.strip("/") not in ("", "0"):
        raise ValueError("A Redis Cluster has database 0 only")
    credentials, _, hosts = netloc.rpartition("@")
    kwargs: dict[str, Any] = {"ssl": CLUSTER_SCHEMES[scheme.lower()]}
    if credentials:
        username, _, password = credentials.partition(":")
        if username:
            kwargs["username"] = unquote(username)
        if password:
            kwargs["password"] = unquote(password)
    nodes = []
    for host_port in hosts.split(","):
        host, _, port = host_port.strip().rpartition(":")
        nodes.append(ClusterNode(host or "127.0.0.1", int(port or 6379)))
    kwargs["startup_nodes"] = nodes
    return kwargs


def redis_from_url(url: str, **options: Any) -> AnyRedis:
    """A client for `url`: `redis.Redis` for one node, `RedisCluster` for a cluster.
    `options` are the usual client options (socket timeouts, ...)."""
    if is_cluster_url(url):
        options.pop("health_check_interval", None)  # per node connection; not a cluster kwarg
        return RedisCluster(**_cluster_kwargs(url), **options)
    return redis.Redis.from_url(url, **options)


def hash_tagged(key: str) -> str:
    """`key` with a hash tag: unchanged when it has one, else all of it is the tag, so every
    name derived from it (python-redis-lock's `lock:<key>` and `lock-signal:<key>`, which its
    Lua scripts touch together) lands in the same cluster slot."""
    opening = key.find("{")
    if opening != -1 and key.find("}", opening + 2) != -1:
        return key
    return "{" + key + "}"


class ConnectionFactory(DjangoRedisConnectionFactory):
    """django-redis' connection factory (DJANGO_REDIS_CONNECTION_FACTORY) that also speaks
    `redis+cluster://`: one RedisCluster client per URL and process (it pools per node)."""

    _clusters: dict[str, RedisCluster] = {}

    def connect(self, url: str) -> Any:
        if not is_cluster_url(url):
            return super().connect(url)
        client = self._clusters.get(url)
        if client is None:
            options: dict[str, Any] = {}
            if self.options.get("SOCKET_TIMEOUT"):
                options["socket_timeout"] = self.options["SOCKET_TIMEOUT"]
            if self.options.get("SOCKET_CONNECT_TIMEOUT"):
                options["socket_connect_timeout"] = self.options["SOCKET_CONNECT_TIMEOUT"]
            client = self._clusters[url] = RedisCluster(**_cluster_kwargs(url), **options)
        return client

    def disconnect(self, connection: Any) -> None:
        if isinstance(connection, RedisCluster):
            connection.disconnect_connection_pools()
            return
        super().disconnect(connection)
