-- fleet-sync on SQLite, schema version 1.
-- Every primary key starts with tenant_id so the same layout can be sharded by
-- tenant on PostgreSQL. Ids are 16-byte UUID blobs; times are Unix milliseconds.

CREATE TABLE tenants (
    tenant_id      BLOB    NOT NULL,
    name           TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id)
) WITHOUT ROWID;

-- Operator API keys, sha256 of the key; the key itself is shown once.
CREATE TABLE api_keys (
    tenant_id      BLOB    NOT NULL,
    key_hash       BLOB    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key_hash)
) WITHOUT ROWID;
CREATE UNIQUE INDEX api_keys_by_hash ON api_keys (key_hash);

CREATE TABLE enrollment_tokens (
    tenant_id      BLOB    NOT NULL,
    token_hash     BLOB    NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    uses_left      INTEGER NOT NULL CHECK (uses_left >= 0),
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, token_hash)
) WITHOUT ROWID;
CREATE UNIQUE INDEX enrollment_tokens_by_hash ON enrollment_tokens (token_hash);

CREATE TABLE devices (
    tenant_id          BLOB    NOT NULL,
    device_id          BLOB    NOT NULL,
    name               TEXT    NOT NULL,
    public_key         TEXT    NOT NULL,
    agent_version      TEXT,
    enrolled_at_ms     INTEGER NOT NULL,
    revoked_at_ms      INTEGER,
    last_seen_ms       INTEGER,
    -- Highest seq such that every seq up to it is stored, quarantined or evicted.
    acked_seq          INTEGER NOT NULL DEFAULT 0,
    event_count        INTEGER NOT NULL DEFAULT 0,
    evicted_count      INTEGER NOT NULL DEFAULT 0,
    quarantined_count  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, device_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX devices_by_id ON devices (device_id);
CREATE UNIQUE INDEX devices_by_key ON devices (public_key);

-- Nonces of signed device requests, kept while their timestamp could still pass
-- the skew check, so a captured request can't be replayed even across a restart.
CREATE TABLE request_nonces (
    tenant_id  BLOB    NOT NULL,
    device_id  BLOB    NOT NULL,
    nonce      TEXT    NOT NULL,
    ts_ms      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, device_id, nonce)
) WITHOUT ROWID;
CREATE INDEX request_nonces_by_ts ON request_nonces (ts_ms);

-- The best anchor known per boot: rank of source, then uncertainty, decide.
CREATE TABLE time_anchors (
    tenant_id       BLOB    NOT NULL,
    device_id       BLOB    NOT NULL,
    boot_id         BLOB    NOT NULL,
    mono_ms         INTEGER NOT NULL,
    true_ms         INTEGER NOT NULL,
    source          INTEGER NOT NULL,
    uncertainty_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, device_id, boot_id)
) WITHOUT ROWID;

CREATE TABLE events (
    tenant_id       BLOB    NOT NULL,
    device_id       BLOB    NOT NULL,
    seq             INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    boot_id         BLOB    NOT NULL,
    mono_ms         INTEGER NOT NULL,
    wall_ms         INTEGER NOT NULL,
    hlc             INTEGER NOT NULL,
    config_version  INTEGER NOT NULL,
    -- Best known true time: anchor-rebased when the boot has an anchor.
    time_ms         INTEGER NOT NULL,
    time_source     TEXT    NOT NULL,
    data            TEXT    NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, device_id, seq)
) WITHOUT ROWID;

-- The seq span of each boot's stored events, so that a new anchor rebases them
-- with a primary-key range scan instead of a second index on every event.
CREATE TABLE boot_spans (
    tenant_id  BLOB    NOT NULL,
    device_id  BLOB    NOT NULL,
    boot_id    BLOB    NOT NULL,
    first_seq  INTEGER NOT NULL,
    last_seq   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, device_id, boot_id)
) WITHOUT ROWID;

-- Seqs a device reported as evicted before they reached us.
CREATE TABLE evicted_ranges (
    tenant_id       BLOB    NOT NULL,
    device_id       BLOB    NOT NULL,
    first_seq       INTEGER NOT NULL,
    last_seq        INTEGER NOT NULL,
    recorded_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, device_id, first_seq)
) WITHOUT ROWID;

CREATE TABLE quarantine (
    tenant_id       BLOB    NOT NULL,
    device_id       BLOB    NOT NULL,
    seq             INTEGER NOT NULL,
    -- sha256 of the raw JSON, so a resent bad event is kept once.
    digest          BLOB    NOT NULL,
    kind            TEXT,
    reason_code     TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    raw             TEXT    NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, device_id, seq, digest)
) WITHOUT ROWID;

-- The position event with the highest seq per vehicle.
CREATE TABLE vehicle_positions (
    tenant_id     BLOB    NOT NULL,
    device_id     BLOB    NOT NULL,
    seq           INTEGER NOT NULL,
    boot_id       BLOB    NOT NULL,
    mono_ms       INTEGER NOT NULL,
    time_ms       INTEGER NOT NULL,
    time_source   TEXT    NOT NULL,
    lat_e7        INTEGER NOT NULL,
    lon_e7        INTEGER NOT NULL,
    speed_cms     INTEGER,
    heading_cdeg  INTEGER,
    PRIMARY KEY (tenant_id, device_id)
) WITHOUT ROWID;

-- automerge documents: a base save followed by incremental chunks.
CREATE TABLE doc_chunks (
    tenant_id  BLOB    NOT NULL,
    doc_id     TEXT    NOT NULL,
    chunk_no   INTEGER NOT NULL,
    bytes      BLOB    NOT NULL,
    PRIMARY KEY (tenant_id, doc_id, chunk_no)
) WITHOUT ROWID;

CREATE TABLE doc_sync_states (
    tenant_id      BLOB    NOT NULL,
    doc_id         TEXT    NOT NULL,
    device_id      BLOB    NOT NULL,
    state          BLOB    NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, doc_id, device_id)
) WITHOUT ROWID;
