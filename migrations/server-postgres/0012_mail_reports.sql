-- A durable email outbox, and what scheduled reports need beyond 0008's
-- report_schedules: cadence at a local hour in a time zone, filters,
-- recipients, the creator's role, a claim lease, and a record of each run.
-- Every primary key starts with tenant_id; every table is behind the
-- tenant_isolation policy.

-- state: pending | sent | dead. A message is written in the transaction of
-- the event that causes it and sent by whichever replica claims it; the
-- claim moves next_attempt_at_ms ahead by a lease. message_id is the
-- Message-ID header without its angle brackets, the same on every attempt.
CREATE TABLE mail_outbox (
    tenant_id          uuid    NOT NULL,
    message_id         text    NOT NULL,
    source             text    NOT NULL,
    to_addr            text    NOT NULL,
    to_name            text,
    subject            text    NOT NULL,
    body               text    NOT NULL,
    attachment_name    text,
    attachment_type    text,
    attachment         bytea,
    state              text    NOT NULL,
    attempts           bigint  NOT NULL,
    last_error         text,
    next_attempt_at_ms bigint  NOT NULL,
    created_at_ms      bigint  NOT NULL,
    sent_at_ms         bigint,
    PRIMARY KEY (tenant_id, message_id)
);
CREATE INDEX mail_outbox_due ON mail_outbox (state, next_attempt_at_ms);

-- kind (0008's `report`): utilization | idle | trips | costs | summary;
-- period: daily | weekly | monthly; weekday 1 (Monday) ..= 7; month_day 1 ..= 28.
-- recipients: JSON array of addresses. filters: JSON object (vehicle, days).
ALTER TABLE report_schedules
    ADD COLUMN name            text    NOT NULL DEFAULT '',
    ADD COLUMN hour            bigint  NOT NULL DEFAULT 6,
    ADD COLUMN weekday         bigint,
    ADD COLUMN month_day       bigint,
    ADD COLUMN time_zone       text    NOT NULL DEFAULT 'UTC',
    ADD COLUMN recipients      text    NOT NULL DEFAULT '[]',
    ADD COLUMN filters         text    NOT NULL DEFAULT '{}',
    ADD COLUMN role            text    NOT NULL DEFAULT 'dispatcher',
    ADD COLUMN created_by      uuid,
    ADD COLUMN lease_until_ms  bigint,
    ADD COLUMN updated_at_ms   bigint  NOT NULL DEFAULT 0;

-- One row per scheduled time: the key refuses a second replica's run.
-- status: sent | failed. message_ids: JSON array.
CREATE TABLE report_runs (
    tenant_id        uuid    NOT NULL,
    schedule_id      uuid    NOT NULL,
    due_ms           bigint  NOT NULL,
    ran_at_ms        bigint  NOT NULL,
    window_from      text    NOT NULL,
    window_to        text    NOT NULL,
    status           text    NOT NULL,
    error            text,
    message_ids      text    NOT NULL,
    attachment_name  text,
    attachment_bytes bigint  NOT NULL,
    PRIMARY KEY (tenant_id, schedule_id, due_ms)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['mail_outbox', 'report_runs']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I
                 USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)
                 WITH CHECK (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
            t);
    END LOOP;
    -- The mail sender finds due messages across tenants, then claims each
    -- tenant's rows in that tenant's own transaction.
    CREATE POLICY mail_worker ON mail_outbox FOR SELECT
        USING (current_setting('app.mail_worker', true) = 'on');
END
$$;
