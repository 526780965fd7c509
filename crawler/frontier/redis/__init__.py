"""The Redis frontier: one crawl shared by every process with the same URL and job.

``frontier`` (the RedisFrontier), ``link`` (the connection: retries, errors,
wake-ups), ``scripts`` (the key layout and the Lua scripts), ``releases`` (acks on
their way to Redis) and ``status`` (the cluster's progress for ``crawl status``).
"""

from .frontier import RedisFrontier
from .link import safe_url
from .status import ClusterStatus, read_status

__all__ = ["ClusterStatus", "RedisFrontier", "read_status", "safe_url"]
