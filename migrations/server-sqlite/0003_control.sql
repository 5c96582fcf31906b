-- fleet-sync on SQLite, 0003: the device control plane. Enrollment-token
-- bookkeeping, device status reports, device groups with versioned desired
-- config and staged rollouts, and outbound webhooks with their delivery outbox.
-- Every primary key starts with tenant_id.

-- What a token allowed when it was issued, for the listing (older rows: NULL).
ALTER TABLE enrollment_tokens ADD COLUMN uses_total INTEGER;

-- The latest status report per device.
CREATE TABLE device_status (
    tenant_id             BLOB    NOT NULL,
    device_id             BLOB    NOT NULL,
    reported_at_ms        INTEGER NOT NULL,
    agent_version         TEXT    NOT NULL,
    queue_depth           INTEGER NOT NULL,
    oldest_unsynced_ms    INTEGER,
    disk_used_bytes       INTEGER NOT NULL,
    disk_budget_bytes     INTEGER NOT NULL,
    clock_offset_ms       INTEGER,
    evictions             INTEGER NOT NULL,
    config_version        INTEGER NOT NULL,
    config_error_version  INTEGER,
    config_error          TEXT,
    -- 1 / 0 / NULL when the device has no such hardware configured.
    can_up                INTEGER,
    gps_fix               INTEGER,
    camera                INTEGER,
    PRIMARY KEY (tenant_id, device_id)
) WITHOUT ROWID;

CREATE TABLE device_groups (
    tenant_id      BLOB    NOT NULL,
    group_id       BLOB    NOT NULL,
    name           TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, group_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX device_groups_by_name ON device_groups (tenant_id, name);

-- A device is in at most one group.
CREATE TABLE device_group_members (
    tenant_id  BLOB NOT NULL,
    device_id  BLOB NOT NULL,
    group_id   BLOB NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
) WITHOUT ROWID;
CREATE INDEX device_group_members_by_group ON device_group_members (tenant_id, group_id);

-- Desired config documents (JSON) per group, versions counting from 1.
CREATE TABLE config_versions (
    tenant_id      BLOB    NOT NULL,
    group_id       BLOB    NOT NULL,
    version        INTEGER NOT NULL,
    document       TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, group_id, version)
) WITHOUT ROWID;

-- One rollout per config version; the group's newest is the one in force.
CREATE TABLE config_rollouts (
    tenant_id             BLOB    NOT NULL,
    group_id              BLOB    NOT NULL,
    version               INTEGER NOT NULL,
    -- The version everyone else keeps, and that an abort returns to (0: none).
    previous_version      INTEGER NOT NULL,
    -- JSON array of percentages, ascending, ending in 100.
    stages                TEXT    NOT NULL,
    min_soak_ms           INTEGER NOT NULL,
    failure_threshold     REAL    NOT NULL,
    silent_after_ms       INTEGER NOT NULL,
    state                 TEXT    NOT NULL CHECK (state IN ('rolling', 'completed', 'aborted', 'superseded')),
    stage                 INTEGER NOT NULL,
    stage_started_at_ms   INTEGER NOT NULL,
    reason                TEXT,
    updated_at_ms         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, group_id, version)
) WITHOUT ROWID;

CREATE TABLE webhooks (
    tenant_id      BLOB    NOT NULL,
    webhook_id     BLOB    NOT NULL,
    url            TEXT    NOT NULL,
    -- JSON array of event kinds.
    kinds          TEXT    NOT NULL,
    format         TEXT    NOT NULL,
    -- Kept in clear: signing needs it. Shown to the operator once.
    secret         TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, webhook_id)
) WITHOUT ROWID;

-- The durable outbox: one row per (webhook, event), sent by a background task.
CREATE TABLE webhook_deliveries (
    tenant_id           BLOB    NOT NULL,
    delivery_id         BLOB    NOT NULL,
    webhook_id          BLOB    NOT NULL,
    event_id            TEXT    NOT NULL,
    kind                TEXT    NOT NULL,
    payload             TEXT    NOT NULL,
    state               TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms  INTEGER NOT NULL,
    last_status         INTEGER,
    last_error          TEXT,
    created_at_ms       INTEGER NOT NULL,
    delivered_at_ms     INTEGER,
    PRIMARY KEY (tenant_id, delivery_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (tenant_id, webhook_id, event_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at_ms);
