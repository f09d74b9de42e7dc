-- Machines seen on DHCP whose MAC is not in the inventory (mirrors
-- migrations/sqlite/0007_discovered.sql).
CREATE TABLE discovered (
    mac          TEXT PRIMARY KEY,
    arch         TEXT,
    vendor_class TEXT,
    ipxe         BOOLEAN NOT NULL DEFAULT false,
    proxy        BOOLEAN NOT NULL DEFAULT false,
    relay        TEXT,
    interface    TEXT,
    hostname     TEXT,
    first_seen   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL,
    count        BIGINT NOT NULL
);
CREATE INDEX discovered_last_seen ON discovered(last_seen);
