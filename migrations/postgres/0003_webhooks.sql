-- Webhook delivery state (mirrors migrations/sqlite/0003_webhooks.sql): the
-- feed is the outbox. Each webhook delivers the feed's events in id order;
-- `delivered_through` is the last event id its receiver acknowledged (2xx).
-- Kept across restarts, so an event is delivered until acknowledged (at least
-- once; receivers dedupe by event id).
CREATE TABLE webhook_state (
    name              TEXT PRIMARY KEY,
    delivered_through BIGINT NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    last_error        TEXT,
    last_attempt_at   BIGINT,
    next_attempt_at   BIGINT,
    delivered         BIGINT NOT NULL DEFAULT 0,
    updated_at        BIGINT NOT NULL
);
