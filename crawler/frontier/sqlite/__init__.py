"""The SQLite frontier: durable, resumable, and bounded in memory.

``frontier`` (the SqliteFrontier), ``file`` (opening the state file and the
buffered writes to it), ``schema`` (what the file holds) and ``windows`` (the
part of each host's queue held in memory).
"""

from .file import FRONTIER_FILE
from .frontier import SqliteFrontier
from .schema import APPLICATION_ID, SCHEMA_VERSION

__all__ = ["APPLICATION_ID", "FRONTIER_FILE", "SCHEMA_VERSION", "SqliteFrontier"]
