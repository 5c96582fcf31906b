-- Inspections (DVIR): checklist forms per vehicle type, submitted inspections,
-- and the defects they found, each repaired once by a mechanic who signs it.
-- Every primary key starts with tenant_id.

-- items: JSON array of {"id", "label"}.
CREATE TABLE inspection_forms (
    tenant_id      BLOB    NOT NULL,
    form_id        BLOB    NOT NULL,
    vehicle_type   TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    items          TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, form_id)
);
CREATE INDEX inspection_forms_by_type ON inspection_forms (tenant_id, vehicle_type);

-- source: api | kiosk | device. results: JSON array of {"item", "ok"}.
-- signature_sha256 names a blob (the driver's signature, a PNG).
CREATE TABLE inspections (
    tenant_id         BLOB    NOT NULL,
    inspection_id     BLOB    NOT NULL,
    asset_id          BLOB    NOT NULL,
    form_id           BLOB,
    source            TEXT    NOT NULL,
    device_id         BLOB,
    driver            TEXT    NOT NULL,
    signature_sha256  TEXT,
    odometer_km       REAL,
    notes             TEXT    NOT NULL,
    results           TEXT    NOT NULL,
    inspected_at_ms   INTEGER NOT NULL,
    created_at_ms     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, inspection_id)
);
CREATE INDEX inspections_by_asset ON inspections (tenant_id, asset_id, inspected_at_ms);

-- severity: safe | unsafe. An unrepaired unsafe defect blocks handout.
CREATE TABLE inspection_defects (
    tenant_id                BLOB    NOT NULL,
    defect_id                BLOB    NOT NULL,
    inspection_id            BLOB    NOT NULL,
    asset_id                 BLOB    NOT NULL,
    item                     TEXT,
    description              TEXT    NOT NULL,
    severity                 TEXT    NOT NULL,
    created_at_ms            INTEGER NOT NULL,
    repaired_at_ms           INTEGER,
    mechanic                 TEXT,
    repair_note              TEXT,
    repair_signature_sha256  TEXT,
    PRIMARY KEY (tenant_id, defect_id)
);
CREATE INDEX inspection_defects_open ON inspection_defects (tenant_id, asset_id) WHERE repaired_at_ms IS NULL;
