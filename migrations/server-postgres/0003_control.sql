-- fleet-sync on PostgreSQL, 0003: the device control plane. Enrollment-token
-- bookkeeping, device status reports, device groups with versioned desired
-- config and staged rollouts, and outbound webhooks with their delivery outbox.
-- Every primary key starts with tenant_id.

-- What a token allowed when it was issued, for the listing (older rows: NULL).
ALTER TABLE enrollment_tokens ADD COLUMN uses_total bigint;

-- The latest status report per device.
CREATE TABLE device_status (
    tenant_id             uuid    NOT NULL,
    device_id             uuid    NOT NULL,
    reported_at_ms        bigint  NOT NULL,
    agent_version         text    NOT NULL,
    queue_depth           bigint  NOT NULL,
    oldest_unsynced_ms    bigint,
    disk_used_bytes       bigint  NOT NULL,
    disk_budget_bytes     bigint  NOT NULL,
    clock_offset_ms       bigint,
    evictions             bigint  NOT NULL,
    config_version        bigint  NOT NULL,
    config_error_version  bigint,
    config_error          text,
    -- NULL when the device has no such hardware configured.
    can_up                boolean,
    gps_fix               boolean,
    camera                boolean,
    PRIMARY KEY (tenant_id, device_id)
);

CREATE TABLE device_groups (
    tenant_id      uuid    NOT NULL,
    group_id       uuid    NOT NULL,
    name           text    NOT NULL,
    created_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, group_id)
);
CREATE UNIQUE INDEX device_groups_by_name ON device_groups (tenant_id, name);

-- A device is in at most one group.
CREATE TABLE device_group_members (
    tenant_id  uuid NOT NULL,
    device_id  uuid NOT NULL,
    group_id   uuid NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);
CREATE INDEX device_group_members_by_group ON device_group_members (tenant_id, group_id);

-- Desired config documents (JSON) per group, versions counting from 1.
CREATE TABLE config_versions (
    tenant_id      uuid    NOT NULL,
    group_id       uuid    NOT NULL,
    version        bigint  NOT NULL,
    document       text    NOT NULL,
    created_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, group_id, version)
);

-- One rollout per config version; the group's newest is the one in force.
CREATE TABLE config_rollouts (
    tenant_id             uuid    NOT NULL,
    group_id              uuid    NOT NULL,
    version               bigint  NOT NULL,
    -- The version everyone else keeps, and that an abort returns to (0: none).
    previous_version      bigint  NOT NULL,
    -- JSON array of percentages, ascending, ending in 100.
    stages                text    NOT NULL,
    min_soak_ms           bigint  NOT NULL,
    failure_threshold     double precision NOT NULL,
    silent_after_ms       bigint  NOT NULL,
    state                 text    NOT NULL CHECK (state IN ('rolling', 'completed', 'aborted', 'superseded')),
    stage                 bigint  NOT NULL,
    stage_started_at_ms   bigint  NOT NULL,
    reason                text,
    updated_at_ms         bigint  NOT NULL,
    PRIMARY KEY (tenant_id, group_id, version)
);

CREATE TABLE webhooks (
    tenant_id      uuid    NOT NULL,
    webhook_id     uuid    NOT NULL,
    url            text    NOT NULL,
    -- JSON array of event kinds.
    kinds          text    NOT NULL,
    format         text    NOT NULL,
    -- Kept in clear: signing needs it. Shown to the operator once.
    secret         text    NOT NULL,
    created_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, webhook_id)
);

-- The durable outbox: one row per (webhook, event), sent by a background task.
CREATE TABLE webhook_deliveries (
    tenant_id           uuid    NOT NULL,
    delivery_id         uuid    NOT NULL,
    webhook_id          uuid    NOT NULL,
    event_id            text    NOT NULL,
    kind                text    NOT NULL,
    payload             text    NOT NULL,
    state               text    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts            bigint  NOT NULL DEFAULT 0,
    next_attempt_at_ms  bigint  NOT NULL,
    last_status         bigint,
    last_error          text,
    created_at_ms       bigint  NOT NULL,
    delivered_at_ms     bigint,
    PRIMARY KEY (tenant_id, delivery_id)
);
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (tenant_id, webhook_id, event_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at_ms);

-- Row-level security, as on every tenant table. The background task (webhook
-- deliveries, rollout checks) finds work across tenants with
-- `app.control_worker = 'on'`, for SELECT only, then acts per tenant.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['device_status', 'device_groups', 'device_group_members',
        'config_versions', 'config_rollouts', 'webhooks', 'webhook_deliveries']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I
                 USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)
                 WITH CHECK (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
            t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['config_rollouts', 'webhooks', 'webhook_deliveries']
    LOOP
        EXECUTE format(
            'CREATE POLICY control_worker ON %I FOR SELECT
                 USING (current_setting(''app.control_worker'', true) = ''on'')',
            t);
    END LOOP;
END
$$;
