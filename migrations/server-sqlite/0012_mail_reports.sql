-- A durable email outbox, and what scheduled reports need beyond 0008's
-- report_schedules: cadence at a local hour in a time zone, filters,
-- recipients, the creator's role, a claim lease, and a record of each run.
-- Every primary key starts with tenant_id.

-- state: pending | sent | dead. message_id is the Message-ID header without
-- its angle brackets, the same on every attempt.
CREATE TABLE mail_outbox (
    tenant_id          BLOB    NOT NULL,
    message_id         TEXT    NOT NULL,
    source             TEXT    NOT NULL,
    to_addr            TEXT    NOT NULL,
    to_name            TEXT,
    subject            TEXT    NOT NULL,
    body               TEXT    NOT NULL,
    attachment_name    TEXT,
    attachment_type    TEXT,
    attachment         BLOB,
    state              TEXT    NOT NULL,
    attempts           INTEGER NOT NULL,
    last_error         TEXT,
    next_attempt_at_ms INTEGER NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    sent_at_ms         INTEGER,
    PRIMARY KEY (tenant_id, message_id)
);
CREATE INDEX mail_outbox_due ON mail_outbox (state, next_attempt_at_ms);

-- kind (0008's `report`): utilization | idle | trips | costs | summary;
-- period: daily | weekly | monthly; weekday 1 (Monday) ..= 7; month_day 1 ..= 28.
-- recipients: JSON array of addresses. filters: JSON object (vehicle, days).
ALTER TABLE report_schedules ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE report_schedules ADD COLUMN hour INTEGER NOT NULL DEFAULT 6;
ALTER TABLE report_schedules ADD COLUMN weekday INTEGER;
ALTER TABLE report_schedules ADD COLUMN month_day INTEGER;
ALTER TABLE report_schedules ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE report_schedules ADD COLUMN recipients TEXT NOT NULL DEFAULT '[]';
ALTER TABLE report_schedules ADD COLUMN filters TEXT NOT NULL DEFAULT '{}';
ALTER TABLE report_schedules ADD COLUMN role TEXT NOT NULL DEFAULT 'dispatcher';
ALTER TABLE report_schedules ADD COLUMN created_by BLOB;
ALTER TABLE report_schedules ADD COLUMN lease_until_ms INTEGER;
ALTER TABLE report_schedules ADD COLUMN updated_at_ms INTEGER NOT NULL DEFAULT 0;

-- One row per scheduled time: the key refuses a second run of it.
CREATE TABLE report_runs (
    tenant_id        BLOB    NOT NULL,
    schedule_id      BLOB    NOT NULL,
    due_ms           INTEGER NOT NULL,
    ran_at_ms        INTEGER NOT NULL,
    window_from      TEXT    NOT NULL,
    window_to        TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    error            TEXT,
    message_ids      TEXT    NOT NULL,
    attachment_name  TEXT,
    attachment_bytes INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, schedule_id, due_ms)
);
