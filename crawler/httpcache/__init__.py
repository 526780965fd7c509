"""An HTTP cache for development: responses kept in SQLite, keyed by request fingerprint."""
