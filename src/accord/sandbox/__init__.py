"""Stand-in servers of vendor APIs, with fault injection, for offline rehearsal and tests."""
