-- Webhook delivery state: the feed is the outbox. Each webhook delivers the
-- feed's events in id order; `delivered_through` is the last event id its
-- receiver acknowledged (2xx). Kept across restarts, so an event is delivered
-- until acknowledged (at least once; receivers dedupe by event id).
CREATE TABLE webhook_state (
    name              TEXT PRIMARY KEY,
    delivered_through INTEGER NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    last_attempt_at   INTEGER,
    next_attempt_at   INTEGER,
    delivered         INTEGER NOT NULL DEFAULT 0,
    updated_at        INTEGER NOT NULL
);
