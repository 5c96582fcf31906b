-- The asset catalog: vehicles, trailers, equipment and keys. An asset's id is
-- the id its QR label carries. Others read these tables; only the asset code
-- writes them. Every primary key starts with tenant_id.
CREATE TABLE assets (
    tenant_id BLOB NOT NULL, asset_id BLOB NOT NULL,
    kind TEXT NOT NULL,              -- vehicle | trailer | equipment | key
    name TEXT NOT NULL, make TEXT, model TEXT, vin TEXT, plate TEXT,
    vehicle_group TEXT,              -- approval rules and utilization groups key on this
    home_yard TEXT, department TEXT, cost_center TEXT,
    purchase_price_cents INTEGER, purchase_date TEXT,
    device_id BLOB,                  -- the gateway fitted to this vehicle, if any
    odometer_km REAL, engine_hours REAL, meter_at_ms INTEGER,
    created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL, retired_at_ms INTEGER,
    PRIMARY KEY (tenant_id, asset_id));
-- CSV import matches rows by VIN; a gateway is fitted to one asset at a time.
CREATE UNIQUE INDEX assets_by_vin ON assets (tenant_id, vin);
CREATE UNIQUE INDEX assets_by_device ON assets (tenant_id, device_id);

CREATE TABLE user_badges (tenant_id BLOB NOT NULL, user_id BLOB NOT NULL,
    badge_id BLOB NOT NULL, PRIMARY KEY (tenant_id, user_id, badge_id));
CREATE UNIQUE INDEX user_badges_by_badge ON user_badges (tenant_id, badge_id);

-- Office custody requests by Idempotency-Key: the first answer, replayed for a
-- retry with the same body.
CREATE TABLE office_custody_requests (
    tenant_id        BLOB    NOT NULL,
    idempotency_key  TEXT    NOT NULL,
    request_sha256   BLOB    NOT NULL,
    status           INTEGER NOT NULL,
    response         TEXT    NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, idempotency_key)
);
