-- The last hardware facts a machine reported (mirrors migrations/sqlite/0008_facts.sql).
CREATE TABLE facts (
    system  TEXT PRIMARY KEY,
    at      BIGINT NOT NULL,
    run_id  TEXT,
    data    TEXT NOT NULL
);
