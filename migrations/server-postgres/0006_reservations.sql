-- Reservations of vehicles (assets of kind `vehicle`), the tenant's booking
-- settings (turnaround buffer, approval per vehicle group, timers, SMTP) and
-- private calendar-feed tokens. Every primary
-- key starts with tenant_id; every table is behind the tenant_isolation policy.
--
-- A reservation that holds its vehicle (pending, approved, active) blocks
-- [start_ms, end_ms + buffer_ms): buffer_ms is the tenant's turnaround buffer
-- when it was booked. The exclusion constraint makes two overlapping holding
-- reservations of one vehicle impossible, whatever the application does.
-- btree_gist is a trusted extension (PostgreSQL 13+): the database owner may
-- create it; the server refuses to start with a clear message when it cannot.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE reservations (
    tenant_id        uuid    NOT NULL,
    reservation_id   uuid    NOT NULL,
    vehicle_id       uuid    NOT NULL,
    user_id          uuid    NOT NULL,
    start_ms         bigint  NOT NULL,
    end_ms           bigint  NOT NULL,
    buffer_ms        bigint  NOT NULL,
    status           text    NOT NULL,
    purpose          text,
    department       text,
    cost_center      text,
    reason           text,
    created_by       uuid,
    approved_by      uuid,
    version          bigint  NOT NULL,
    created_at_ms    bigint  NOT NULL,
    updated_at_ms    bigint  NOT NULL,
    reminded_at_ms   bigint,
    overdue_at_ms    bigint,
    CHECK (end_ms > start_ms AND buffer_ms >= 0),
    PRIMARY KEY (tenant_id, reservation_id),
    CONSTRAINT reservations_no_overlap EXCLUDE USING gist (
        tenant_id WITH =,
        vehicle_id WITH =,
        int8range(start_ms, end_ms + buffer_ms) WITH &&
    ) WHERE (status IN ('pending', 'approved', 'active'))
);
CREATE INDEX reservations_holding ON reservations (tenant_id, vehicle_id, start_ms)
    WHERE status IN ('pending', 'approved', 'active');
CREATE INDEX reservations_by_vehicle ON reservations (tenant_id, vehicle_id, start_ms);
CREATE INDEX reservations_by_user ON reservations (tenant_id, user_id, start_ms);
CREATE INDEX reservations_by_start ON reservations (tenant_id, start_ms);

CREATE TABLE reservation_settings (
    tenant_id      uuid    NOT NULL,
    settings       jsonb   NOT NULL,
    updated_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id)
);


CREATE TABLE calendar_tokens (
    tenant_id      uuid    NOT NULL,
    subject_kind   text    NOT NULL,
    subject_id     uuid    NOT NULL,
    token_sha256   bytea   NOT NULL,
    created_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, subject_kind, subject_id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['reservations', 'reservation_settings', 'calendar_tokens']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I
                 USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)
                 WITH CHECK (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
            t);
    END LOOP;
END
$$;
