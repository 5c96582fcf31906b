-- The asset catalog: vehicles, trailers, equipment and keys. An asset's id is
-- the id its QR label carries. Others read these tables; only the asset code
-- writes them. Every primary key starts with tenant_id; every table is behind
-- the tenant_isolation policy.
CREATE TABLE assets (
    tenant_id uuid NOT NULL, asset_id uuid NOT NULL,
    kind text NOT NULL,              -- vehicle | trailer | equipment | key
    name text NOT NULL, make text, model text, vin text, plate text,
    vehicle_group text,              -- approval rules and utilization groups key on this
    home_yard text, department text, cost_center text,
    purchase_price_cents bigint, purchase_date text,
    device_id uuid,                  -- the gateway fitted to this vehicle, if any
    odometer_km double precision, engine_hours double precision, meter_at_ms bigint,
    created_at_ms bigint NOT NULL, updated_at_ms bigint NOT NULL, retired_at_ms bigint,
    PRIMARY KEY (tenant_id, asset_id));
-- CSV import matches rows by VIN; a gateway is fitted to one asset at a time.
CREATE UNIQUE INDEX assets_by_vin ON assets (tenant_id, vin);
CREATE UNIQUE INDEX assets_by_device ON assets (tenant_id, device_id);

CREATE TABLE user_badges (tenant_id uuid NOT NULL, user_id uuid NOT NULL,
    badge_id uuid NOT NULL, PRIMARY KEY (tenant_id, user_id, badge_id));
CREATE UNIQUE INDEX user_badges_by_badge ON user_badges (tenant_id, badge_id);

-- Office custody requests by Idempotency-Key: the first answer, replayed for a
-- retry with the same body.
CREATE TABLE office_custody_requests (
    tenant_id        uuid    NOT NULL,
    idempotency_key  text    NOT NULL,
    request_sha256   bytea   NOT NULL,
    status           bigint  NOT NULL,
    response         text    NOT NULL,
    created_at_ms    bigint  NOT NULL,
    PRIMARY KEY (tenant_id, idempotency_key)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['assets', 'user_badges', 'office_custody_requests']
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
