"""What the SQLite frontier's state file holds: its schema, and the statements run on it.

Every request lives in one row of ``requests``::

    id INTEGER PRIMARY KEY, fp BLOB UNIQUE, host, priority, seq, state, ready_at, data, reason
    state: 0 PENDING  1 LEASED  2 DONE  3 FAILED  4 DELAYED (a retry waiting for ready_at)
           5 SEEN (a fingerprint only, from add_seen)

``data`` is the request as :mod:`crawler.frontier.codec` stores it (callbacks by
name, so they must be spider methods). The ``fp`` column is the de-duplication
set: a ``dont_filter`` duplicate is stored under its fingerprint plus 8 random
bytes. A partial index on ``(host, priority DESC, seq) WHERE state = 0`` makes
"the next best pending requests of a host" an O(log n) query; one on
``(ready_at, seq) WHERE state = 4`` finds due retries. ``PRAGMA application_id``,
``PRAGMA user_version`` and a ``meta`` table say what the file is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..domains import HeadKey

__all__ = [
    "AFTER",
    "APPLICATION_ID",
    "BEST",
    "DELAYED",
    "DONE",
    "DUE",
    "FAILED",
    "HOSTS",
    "INSERT",
    "LEASED",
    "NEXT_DUE",
    "PENDING",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SEEDED",
    "SEEN",
    "SET_DELAYED",
    "SET_FAILED",
    "SET_PENDING",
    "SET_STATE",
    "refill_query",
    "row_rank",
]

APPLICATION_ID = 0x63726177  # "craw"
SCHEMA_VERSION = 1
PENDING, LEASED, DONE, FAILED, DELAYED, SEEN = range(6)

SCHEMA = f"""
BEGIN;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('application', 'crawler frontier'), ('schema_version', '{SCHEMA_VERSION}');
CREATE TABLE requests (
    id INTEGER PRIMARY KEY,
    fp BLOB NOT NULL UNIQUE,
    host TEXT NOT NULL,
    priority INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    state INTEGER NOT NULL,
    ready_at REAL NOT NULL DEFAULT 0,
    data BLOB,
    reason TEXT
);
CREATE INDEX requests_pending ON requests (host, priority DESC, seq) WHERE state = 0;
CREATE INDEX requests_delayed ON requests (ready_at, seq) WHERE state = 4;
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""
INSERT = (
    "INSERT OR REPLACE INTO requests (id, fp, host, priority, seq, state, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# State changes touch as few columns as they can: each changed column costs index upkeep.
SET_STATE = "UPDATE requests SET state = ? WHERE id = ?"
SET_FAILED = "UPDATE requests SET state = 3, reason = ? WHERE id = ?"
SET_DELAYED = "UPDATE requests SET state = 4, ready_at = ?, seq = ?, data = ? WHERE id = ?"
SET_PENDING = "UPDATE requests SET state = 0, ready_at = 0, seq = ? WHERE id = ?"
SEEDED = "INSERT OR REPLACE INTO meta (key, value) VALUES ('seeded', '1')"
_COLUMNS = "id, fp, priority, seq, data, host"  # every query of request rows selects these
# One arm per host of the refill query (arms are joined with UNION ALL).
BEST = (
    f"SELECT * FROM (SELECT {_COLUMNS} FROM requests WHERE state = 0 AND host = ?"
    " ORDER BY priority DESC, seq LIMIT ?)"
)
AFTER = (
    f"SELECT * FROM (SELECT {_COLUMNS} FROM requests WHERE state = 0 AND host = ?"
    " AND (priority < ? OR (priority = ? AND seq > ?)) ORDER BY priority DESC, seq LIMIT ?)"
)
DUE = (
    f"SELECT {_COLUMNS} FROM requests WHERE state = 4 AND ready_at <= ?"
    " ORDER BY ready_at, seq LIMIT ?"
)
NEXT_DUE = "SELECT MIN(ready_at) FROM requests WHERE state = 4 AND ready_at > ?"
_FIRST = "FROM requests WHERE state = 0 AND host = h.host ORDER BY priority DESC, seq"
HOSTS = (  # per host with pending rows: how many, and the best one's priority and seq
    f"SELECT h.host, h.n, (SELECT priority {_FIRST}), (SELECT seq {_FIRST})"
    " FROM (SELECT host, COUNT(*) AS n FROM requests WHERE state = 0 GROUP BY host) AS h"
)


def row_rank(row: Any) -> HeadKey:
    """The queue key of a request row (as the queries select it): best first."""
    return (-row[2], row[3])


def refill_query(wanted: Sequence[tuple[str, int, HeadKey | None]]) -> tuple[str, list[Any]]:
    """One query for the best pending rows of several hosts, and its parameters.

    ``wanted`` holds ``(host, limit, after)``: at most ``limit`` rows of ``host``,
    all ranked after the key ``after`` (None: from the best one).
    """
    parts: list[str] = []
    params: list[Any] = []
    for host, limit, after in wanted:
        if after is None:
            parts.append(BEST)
            params += (host, limit)
        else:
            neg, seq = after
            parts.append(AFTER)
            params += (host, -neg, -neg, seq, limit)
    return " UNION ALL ".join(parts), params
