-- fleet-sync on SQLite: the live stream's log, so a client of /api/v1/stream can
-- resume after the last event id it saw. Ids are per tenant and dense: the next
-- id is stream_heads.last_id + 1, taken only when a row is written.

CREATE TABLE stream_heads (
    tenant_id  BLOB    NOT NULL,
    last_id    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id)
) WITHOUT ROWID;

CREATE TABLE stream_events (
    tenant_id      BLOB    NOT NULL,
    id             INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    vehicle_id     BLOB,
    data           TEXT    NOT NULL,
    -- When it happened, as best known.
    at_ms          INTEGER NOT NULL,
    -- `<device>:<seq>` for events from ingest, so a resent batch is announced once.
    source         TEXT,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX stream_events_by_source ON stream_events (tenant_id, source) WHERE source IS NOT NULL;
CREATE INDEX stream_events_by_age ON stream_events (created_at_ms);
