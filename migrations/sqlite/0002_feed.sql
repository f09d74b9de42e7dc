-- The operator feed: every event the daemon publishes (run transitions,
-- boot observations of inventory machines, ...), with a durable, ordered id.
-- SSE clients resume from it (Last-Event-ID), the machine page reads a
-- machine's history from it, webhooks deliver from it. Pruned by age and by
-- a per-system cap (src/feed.rs).
CREATE TABLE feed (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    system  TEXT,
    run_id  TEXT,
    data    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX feed_system ON feed(system, id);
CREATE INDEX feed_at ON feed(at);
