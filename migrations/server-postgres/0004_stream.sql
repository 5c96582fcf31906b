-- fleet-sync on PostgreSQL: the live stream's log, so a client of /api/v1/stream
-- can resume after the last event id it saw, on any replica. Ids are per tenant
-- and dense: an append locks the tenant's stream_heads row until it commits, so
-- ids become visible in order, and its transaction sends
-- NOTIFY fleet_live '<tenant>:<first id>' for every replica's listener.

CREATE TABLE stream_heads (
    tenant_id  uuid    NOT NULL,
    last_id    bigint  NOT NULL,
    PRIMARY KEY (tenant_id)
);

CREATE TABLE stream_events (
    tenant_id      uuid    NOT NULL,
    id             bigint  NOT NULL,
    kind           text    NOT NULL,
    vehicle_id     uuid,
    data           jsonb   NOT NULL,
    -- When it happened, as best known.
    at_ms          bigint  NOT NULL,
    -- `<device>:<seq>` for events from ingest, so a batch that reaches two
    -- replicas, or one twice, is announced once.
    source         text,
    created_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX stream_events_by_source ON stream_events (tenant_id, source) WHERE source IS NOT NULL;
CREATE INDEX stream_events_by_age ON stream_events USING brin (created_at_ms);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['stream_heads', 'stream_events']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I
                 USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)
                 WITH CHECK (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
            t);
        -- Pruning by age and count goes over every tenant's log at once.
        EXECUTE format(
            'CREATE POLICY stream_maintenance ON %I
                 USING (current_setting(''app.maintenance'', true) = ''on'')',
            t);
    END LOOP;
END
$$;
