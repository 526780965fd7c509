"""The Redis frontier: one crawl shared by every process with the same URL and job.

``frontier`` (the RedisFrontier), ``link`` (the connection: retries, errors,
wake-ups, outages), ``scripts`` + ``prelude`` (the key layout and the Lua scripts),
``health`` (the job's epoch: new job or lost state), ``releases`` (acks on their way to
Redis), ``delays`` (cluster-wide delays) and ``status`` (the cluster's progress for
``crawl status``).
"""

from .frontier import RedisFrontier
from .link import safe_url, state_lost
from .status import ClusterStatus, read_status

__all__ = ["ClusterStatus", "RedisFrontier", "read_status", "safe_url", "state_lost"]
