-- Analytics: per-vehicle-per-day rollups kept at ingest, trips, fault-code days,
-- fuel level state for refuel detection, the tenant's analytics settings,
-- maintenance schedules, work orders, alerts and scheduled reports.
-- Every primary key starts with tenant_id. `day` is the local calendar day in
-- the tenant's time zone (analytics_settings.utc_offset_min), counted in days
-- since 1970-01-01.

CREATE TABLE analytics_settings (
    tenant_id                  BLOB    NOT NULL,
    utc_offset_min             INTEGER NOT NULL,
    target_hours_per_day       REAL    NOT NULL,
    used_day_min_minutes       INTEGER NOT NULL,
    fuel_price_cents_per_l     INTEGER,
    depreciation_years         REAL    NOT NULL,
    rental_rate_cents_per_day  INTEGER,
    fault_repeat_count         INTEGER NOT NULL,
    fault_repeat_days          INTEGER NOT NULL,
    updated_at_ms              INTEGER NOT NULL,
    PRIMARY KEY (tenant_id)
);

CREATE TABLE vehicle_day (
    tenant_id            BLOB    NOT NULL,
    device_id            BLOB    NOT NULL,
    day                  INTEGER NOT NULL,
    events               INTEGER NOT NULL,
    -- Bit h set: some event fell in local hour h.
    covered_hours        INTEGER NOT NULL,
    first_ms             INTEGER,
    last_ms              INTEGER,
    engine_on_ms         INTEGER NOT NULL,
    driving_ms           INTEGER NOT NULL,
    idle_ms              INTEGER NOT NULL,
    trips                INTEGER NOT NULL,
    distance_m           REAL    NOT NULL,
    fuel_used_l          REAL    NOT NULL,
    harsh_acceleration   INTEGER NOT NULL,
    harsh_braking        INTEGER NOT NULL,
    harsh_cornering      INTEGER NOT NULL,
    speeding_ms          INTEGER NOT NULL,
    dtc_set              INTEGER NOT NULL,
    fuel_drops           INTEGER NOT NULL,
    parked_fuel_drops    INTEGER NOT NULL,
    refuels              INTEGER NOT NULL,
    odometer_min_km      REAL,
    odometer_max_km      REAL,
    engine_hours_min     REAL,
    engine_hours_max     REAL,
    cranking_weak        INTEGER NOT NULL,
    cranking_min_v       REAL,
    battery_low          INTEGER NOT NULL,
    -- JSON array of 24 engine-on milliseconds, one per local hour.
    hour_use_ms          TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, device_id, day)
) WITHOUT ROWID;
CREATE INDEX vehicle_day_by_day ON vehicle_day (tenant_id, day, device_id);

CREATE TABLE trips (
    tenant_id       BLOB    NOT NULL,
    device_id       BLOB    NOT NULL,
    end_seq         INTEGER NOT NULL,
    start_ms        INTEGER NOT NULL,
    end_ms          INTEGER NOT NULL,
    distance_m      REAL    NOT NULL,
    idle_ms         INTEGER NOT NULL,
    fuel_used_l     REAL,
    max_speed_kmh   REAL,
    driving_events  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, device_id, end_seq)
) WITHOUT ROWID;
CREATE INDEX trips_by_end ON trips (tenant_id, end_ms);

CREATE TABLE fault_days (
    tenant_id  BLOB    NOT NULL,
    device_id  BLOB    NOT NULL,
    code       TEXT    NOT NULL,
    day        INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, device_id, code, day)
) WITHOUT ROWID;

-- The newest fuel level seen per device, for refuel detection across batches.
CREATE TABLE fuel_levels (
    tenant_id  BLOB    NOT NULL,
    device_id  BLOB    NOT NULL,
    level_pct  REAL    NOT NULL,
    time_ms    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
) WITHOUT ROWID;

-- Applies to one vehicle (device_id), a vehicle group, or, with neither, to all.
CREATE TABLE maintenance_schedules (
    tenant_id           BLOB    NOT NULL,
    schedule_id         BLOB    NOT NULL,
    name                TEXT    NOT NULL,
    device_id           BLOB,
    vehicle_group       TEXT,
    every_km            REAL,
    every_engine_hours  REAL,
    every_days          INTEGER,
    created_at_ms       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, schedule_id)
);

-- The last time each schedule was served on each vehicle.
CREATE TABLE maintenance_services (
    tenant_id      BLOB    NOT NULL,
    schedule_id    BLOB    NOT NULL,
    device_id      BLOB    NOT NULL,
    done_at_ms     INTEGER NOT NULL,
    odometer_km    REAL,
    engine_hours   REAL,
    work_order_id  BLOB,
    PRIMARY KEY (tenant_id, schedule_id, device_id)
);

CREATE TABLE work_orders (
    tenant_id      BLOB    NOT NULL,
    work_order_id  BLOB    NOT NULL,
    device_id      BLOB    NOT NULL,
    schedule_id    BLOB,
    title          TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    parts_cents    INTEGER NOT NULL,
    labor_cents    INTEGER NOT NULL,
    opened_at_ms   INTEGER NOT NULL,
    closed_at_ms   INTEGER,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, work_order_id)
);
CREATE INDEX work_orders_by_device ON work_orders (tenant_id, device_id);

-- An open alert (acknowledged_at_ms NULL) is raised once per vehicle, kind and key.
CREATE TABLE maintenance_alerts (
    tenant_id           BLOB    NOT NULL,
    alert_id            BLOB    NOT NULL,
    device_id           BLOB    NOT NULL,
    kind                TEXT    NOT NULL,
    key                 TEXT    NOT NULL,
    message             TEXT    NOT NULL,
    data                TEXT    NOT NULL,
    raised_at_ms        INTEGER NOT NULL,
    notified_at_ms      INTEGER,
    acknowledged_at_ms  INTEGER,
    PRIMARY KEY (tenant_id, alert_id)
);
CREATE UNIQUE INDEX maintenance_alerts_open ON maintenance_alerts (tenant_id, device_id, kind, key)
    WHERE acknowledged_at_ms IS NULL;
CREATE INDEX maintenance_alerts_unnotified ON maintenance_alerts (notified_at_ms, tenant_id)
    WHERE notified_at_ms IS NULL;

CREATE TABLE report_schedules (
    tenant_id      BLOB    NOT NULL,
    schedule_id    BLOB    NOT NULL,
    report         TEXT    NOT NULL,
    period         TEXT    NOT NULL,
    format         TEXT    NOT NULL,
    email_to       TEXT,
    next_run_ms    INTEGER NOT NULL,
    last_run_ms    INTEGER,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, schedule_id)
);
CREATE INDEX report_schedules_due ON report_schedules (next_run_ms);
