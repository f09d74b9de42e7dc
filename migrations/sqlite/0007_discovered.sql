-- Machines seen on DHCP (or proxyDHCP) whose MAC is not in the inventory
-- (`rackboot discovered`). One row per MAC; the DHCP path never writes here
-- itself: `discovery::Discovery` aggregates sightings in memory and a
-- flusher upserts them in batches. Capped by `dhcp.discovered_max` (the
-- least recently seen go first). Mirrored by migrations/postgres/0007_discovered.sql.
CREATE TABLE discovered (
    mac          TEXT PRIMARY KEY,
    arch         TEXT,
    vendor_class TEXT,
    ipxe         INTEGER NOT NULL DEFAULT 0,
    proxy        INTEGER NOT NULL DEFAULT 0,
    relay        TEXT,
    interface    TEXT,
    hostname     TEXT,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    count        INTEGER NOT NULL
);
CREATE INDEX discovered_last_seen ON discovered(last_seen);
