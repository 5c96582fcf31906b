-- fleet-sync on PostgreSQL, schema version 1: the same tables as on SQLite.
-- Every primary key starts with tenant_id so the schema can be distributed by
-- tenant (Citus). Times are Unix milliseconds; ids are uuid; boot ids and hashes
-- are bytea.
--
-- Row-level security: every tenant table is ENABLEd and FORCEd (so the owning
-- role is bound too) with a policy on the transaction's `app.tenant_id`; a query
-- that forgot its tenant filter sees only that tenant's rows, and with no tenant
-- set, none. Reads that must find a row before its tenant is known (an API key,
-- an enrollment token, a device id or key) run with `app.lookup = 'on'`, which
-- opens those few tables for SELECT only.

CREATE TABLE tenants (
    tenant_id      uuid    NOT NULL,
    name           text    NOT NULL,
    created_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- Operator API keys, sha256 of the key; the key itself is shown once.
CREATE TABLE api_keys (
    tenant_id      uuid    NOT NULL,
    key_hash       bytea   NOT NULL,
    created_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, key_hash)
);
CREATE UNIQUE INDEX api_keys_by_hash ON api_keys (key_hash);

CREATE TABLE enrollment_tokens (
    tenant_id      uuid    NOT NULL,
    token_hash     bytea   NOT NULL,
    expires_at_ms  bigint  NOT NULL,
    uses_left      integer NOT NULL CHECK (uses_left >= 0),
    created_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, token_hash)
);
CREATE UNIQUE INDEX enrollment_tokens_by_hash ON enrollment_tokens (token_hash);

CREATE TABLE devices (
    tenant_id          uuid    NOT NULL,
    device_id          uuid    NOT NULL,
    name               text    NOT NULL,
    public_key         text    NOT NULL,
    agent_version      text,
    enrolled_at_ms     bigint  NOT NULL,
    revoked_at_ms      bigint,
    last_seen_ms       bigint,
    -- Highest seq such that every seq up to it is stored, quarantined or evicted.
    acked_seq          bigint  NOT NULL DEFAULT 0,
    event_count        bigint  NOT NULL DEFAULT 0,
    evicted_count      bigint  NOT NULL DEFAULT 0,
    quarantined_count  bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, device_id)
);
CREATE UNIQUE INDEX devices_by_id ON devices (device_id);
CREATE UNIQUE INDEX devices_by_key ON devices (public_key);

-- Nonces of signed device requests, kept while their timestamp could still pass
-- the skew check, so a captured request can't be replayed even across a restart.
CREATE TABLE request_nonces (
    tenant_id  uuid    NOT NULL,
    device_id  uuid    NOT NULL,
    nonce      text    NOT NULL,
    ts_ms      bigint  NOT NULL,
    PRIMARY KEY (tenant_id, device_id, nonce)
);
CREATE INDEX request_nonces_by_ts ON request_nonces (tenant_id, ts_ms);

-- The best anchor known per boot: rank of source, then uncertainty, decide.
CREATE TABLE time_anchors (
    tenant_id       uuid     NOT NULL,
    device_id       uuid     NOT NULL,
    boot_id         bytea    NOT NULL,
    mono_ms         bigint   NOT NULL,
    true_ms         bigint   NOT NULL,
    source          smallint NOT NULL,
    uncertainty_ms  bigint   NOT NULL,
    PRIMARY KEY (tenant_id, device_id, boot_id)
);

-- Events, partitioned by month of their best known time (`time_ms`). A unique key
-- on a partitioned table must hold the partition key, so the key is
-- (tenant_id, device_id, seq, time_ms); that a seq is stored once is kept by the
-- ingest, which holds the device's row lock while it looks for the seqs of a batch
-- and inserts the new ones. A rebase that moves an event's time moves the row to
-- its month's partition. Monthly partitions `events_YYYY_MM` are created ahead by
-- the server; events outside them (a 1970 device clock, a clock years ahead) land
-- in `events_default`.
CREATE TABLE events (
    tenant_id       uuid     NOT NULL,
    device_id       uuid     NOT NULL,
    seq             bigint   NOT NULL,
    kind            text     NOT NULL,
    priority        smallint NOT NULL,
    boot_id         bytea    NOT NULL,
    mono_ms         bigint   NOT NULL,
    wall_ms         bigint   NOT NULL,
    hlc             bigint   NOT NULL,
    config_version  bigint   NOT NULL,
    -- Best known true time: anchor-rebased when the boot has an anchor.
    time_ms         bigint   NOT NULL,
    time_source     text     NOT NULL,
    -- JSON text, as on SQLite: jsonb would refuse a \u0000 in a string and so
    -- turn one odd event into a batch that never lands.
    data            text     NOT NULL,
    received_at_ms  bigint   NOT NULL,
    PRIMARY KEY (tenant_id, device_id, seq, time_ms)
) PARTITION BY RANGE (time_ms);
CREATE TABLE events_default PARTITION OF events DEFAULT;
-- Events arrive roughly in time order, so a BRIN index on time is small and
-- prunes block ranges for time-window scans.
CREATE INDEX events_time_brin ON events USING brin (time_ms);

-- The seq span of each boot's stored events, so that a new anchor rebases them
-- with a primary-key range scan instead of a second index on every event.
CREATE TABLE boot_spans (
    tenant_id  uuid    NOT NULL,
    device_id  uuid    NOT NULL,
    boot_id    bytea   NOT NULL,
    first_seq  bigint  NOT NULL,
    last_seq   bigint  NOT NULL,
    PRIMARY KEY (tenant_id, device_id, boot_id)
);

-- Seqs a device reported as evicted before they reached us.
CREATE TABLE evicted_ranges (
    tenant_id       uuid    NOT NULL,
    device_id       uuid    NOT NULL,
    first_seq       bigint  NOT NULL,
    last_seq        bigint  NOT NULL,
    recorded_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, device_id, first_seq)
);

CREATE TABLE quarantine (
    tenant_id       uuid    NOT NULL,
    device_id       uuid    NOT NULL,
    seq             bigint  NOT NULL,
    -- sha256 of the raw JSON, so a resent bad event is kept once.
    digest          bytea   NOT NULL,
    kind            text,
    reason_code     text    NOT NULL,
    reason          text    NOT NULL,
    raw             text    NOT NULL,
    received_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, device_id, seq, digest)
);
CREATE INDEX quarantine_by_received ON quarantine (tenant_id, received_at_ms DESC);

-- The position event with the highest seq per vehicle.
CREATE TABLE vehicle_positions (
    tenant_id     uuid    NOT NULL,
    device_id     uuid    NOT NULL,
    seq           bigint  NOT NULL,
    boot_id       bytea   NOT NULL,
    mono_ms       bigint  NOT NULL,
    time_ms       bigint  NOT NULL,
    time_source   text    NOT NULL,
    lat_e7        integer NOT NULL,
    lon_e7        integer NOT NULL,
    speed_cms     bigint,
    heading_cdeg  integer,
    PRIMARY KEY (tenant_id, device_id)
);

-- automerge documents: a base save followed by incremental chunks.
CREATE TABLE doc_chunks (
    tenant_id  uuid     NOT NULL,
    doc_id     text     NOT NULL,
    chunk_no   integer  NOT NULL,
    bytes      bytea    NOT NULL,
    PRIMARY KEY (tenant_id, doc_id, chunk_no)
);

CREATE TABLE doc_sync_states (
    tenant_id      uuid    NOT NULL,
    doc_id         text    NOT NULL,
    device_id      uuid    NOT NULL,
    state          bytea   NOT NULL,
    updated_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, doc_id, device_id)
);

-- Row-level security on every tenant table.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'api_keys', 'enrollment_tokens', 'devices',
        'request_nonces', 'time_anchors', 'events', 'events_default', 'boot_spans', 'evicted_ranges',
        'quarantine', 'vehicle_positions', 'doc_chunks', 'doc_sync_states']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I
                 USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)
                 WITH CHECK (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
            t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['api_keys', 'enrollment_tokens', 'devices']
    LOOP
        EXECUTE format(
            'CREATE POLICY directory_lookup ON %I FOR SELECT
                 USING (current_setting(''app.lookup'', true) = ''on'')',
            t);
    END LOOP;
    -- Creating a month's partition moves that month's stragglers out of the
    -- default partition first; only that maintenance step reads it whole.
    CREATE POLICY partition_maintenance ON events_default
        USING (current_setting('app.maintenance', true) = 'on');
END
$$;
