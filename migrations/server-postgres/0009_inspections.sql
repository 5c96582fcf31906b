-- Inspections (DVIR): checklist forms per vehicle type, submitted inspections,
-- and the defects they found, each repaired once by a mechanic who signs it.
-- Every primary key starts with tenant_id; every table is behind the
-- tenant_isolation policy.

-- items: JSON array of {"id", "label"}.
CREATE TABLE inspection_forms (
    tenant_id      uuid    NOT NULL,
    form_id        uuid    NOT NULL,
    vehicle_type   text    NOT NULL,
    name           text    NOT NULL,
    items          text    NOT NULL,
    created_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, form_id)
);
CREATE INDEX inspection_forms_by_type ON inspection_forms (tenant_id, vehicle_type);

-- source: api | kiosk | device. results: JSON array of {"item", "ok"}.
-- signature_sha256 names a blob (the driver's signature, a PNG).
CREATE TABLE inspections (
    tenant_id         uuid    NOT NULL,
    inspection_id     uuid    NOT NULL,
    asset_id          uuid    NOT NULL,
    form_id           uuid,
    source            text    NOT NULL,
    device_id         uuid,
    driver            text    NOT NULL,
    signature_sha256  text,
    odometer_km       double precision,
    notes             text    NOT NULL,
    results           text    NOT NULL,
    inspected_at_ms   bigint  NOT NULL,
    created_at_ms     bigint  NOT NULL,
    PRIMARY KEY (tenant_id, inspection_id)
);
CREATE INDEX inspections_by_asset ON inspections (tenant_id, asset_id, inspected_at_ms);

-- severity: safe | unsafe. An unrepaired unsafe defect blocks handout.
CREATE TABLE inspection_defects (
    tenant_id                uuid    NOT NULL,
    defect_id                uuid    NOT NULL,
    inspection_id            uuid    NOT NULL,
    asset_id                 uuid    NOT NULL,
    item                     text,
    description              text    NOT NULL,
    severity                 text    NOT NULL,
    created_at_ms            bigint  NOT NULL,
    repaired_at_ms           bigint,
    mechanic                 text,
    repair_note              text,
    repair_signature_sha256  text,
    PRIMARY KEY (tenant_id, defect_id)
);
CREATE INDEX inspection_defects_open ON inspection_defects (tenant_id, asset_id) WHERE repaired_at_ms IS NULL;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['inspection_forms', 'inspections', 'inspection_defects']
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
