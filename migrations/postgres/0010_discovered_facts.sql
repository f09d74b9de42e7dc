-- A discovered machine's last hardware facts (mirrors migrations/sqlite/0010_discovered_facts.sql).
CREATE TABLE discovered_facts (
    mac   TEXT PRIMARY KEY,
    at    BIGINT NOT NULL,
    data  TEXT NOT NULL
);
