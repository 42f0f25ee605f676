"""Redis fixtures for the revocation store tests; they live in tests/redis_helpers.py, which the
end-to-end revocation tests share."""

from redis_helpers import (REDIS_CLI, REDIS_SERVER, RedisProc, cli, free_cluster_port,  # noqa: F401
                           free_port, make_token, need_redis, prefix, redis_cluster, redis_proc,
                           redis_sentinel, shared_redis, wait_for)
