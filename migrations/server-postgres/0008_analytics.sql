-- Analytics: per-vehicle-per-day rollups kept at ingest, trips, fault-code days,
-- fuel level state for refuel detection, the tenant's analytics settings,
-- maintenance schedules, work orders, alerts and scheduled reports.
-- Every primary key starts with tenant_id; every table is behind the
-- tenant_isolation policy. `day` is the local calendar day in
-- the tenant's time zone (analytics_settings.utc_offset_min), counted in days
-- since 1970-01-01.

CREATE TABLE analytics_settings (
    tenant_id                  uuid    NOT NULL,
    utc_offset_min             bigint  NOT NULL,
    target_hours_per_day       double precision NOT NULL,
    used_day_min_minutes       bigint  NOT NULL,
    fuel_price_cents_per_l     bigint ,
    depreciation_years         double precision NOT NULL,
    rental_rate_cents_per_day  bigint ,
    fault_repeat_count         bigint  NOT NULL,
    fault_repeat_days          bigint  NOT NULL,
    updated_at_ms              bigint  NOT NULL,
    PRIMARY KEY (tenant_id)
);

CREATE TABLE vehicle_day (
    tenant_id            uuid    NOT NULL,
    device_id            uuid    NOT NULL,
    day                  bigint  NOT NULL,
    events               bigint  NOT NULL,
    -- Bit h set: some event fell in local hour h.
    covered_hours        bigint  NOT NULL,
    first_ms             bigint ,
    last_ms              bigint ,
    engine_on_ms         bigint  NOT NULL,
    driving_ms           bigint  NOT NULL,
    idle_ms              bigint  NOT NULL,
    trips                bigint  NOT NULL,
    distance_m           double precision NOT NULL,
    fuel_used_l          double precision NOT NULL,
    harsh_acceleration   bigint  NOT NULL,
    harsh_braking        bigint  NOT NULL,
    harsh_cornering      bigint  NOT NULL,
    speeding_ms          bigint  NOT NULL,
    dtc_set              bigint  NOT NULL,
    fuel_drops           bigint  NOT NULL,
    parked_fuel_drops    bigint  NOT NULL,
    refuels              bigint  NOT NULL,
    odometer_min_km      double precision,
    odometer_max_km      double precision,
    engine_hours_min     double precision,
    engine_hours_max     double precision,
    cranking_weak        bigint  NOT NULL,
    cranking_min_v       double precision,
    battery_low          bigint  NOT NULL,
    -- JSON array of 24 engine-on milliseconds, one per local hour.
    hour_use_ms          text    NOT NULL,
    PRIMARY KEY (tenant_id, device_id, day)
);
CREATE INDEX vehicle_day_by_day ON vehicle_day (tenant_id, day, device_id);

CREATE TABLE trips (
    tenant_id       uuid    NOT NULL,
    device_id       uuid    NOT NULL,
    end_seq         bigint  NOT NULL,
    start_ms        bigint  NOT NULL,
    end_ms          bigint  NOT NULL,
    distance_m      double precision NOT NULL,
    idle_ms         bigint  NOT NULL,
    fuel_used_l     double precision,
    max_speed_kmh   double precision,
    driving_events  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, device_id, end_seq)
);
CREATE INDEX trips_by_end ON trips (tenant_id, end_ms);

CREATE TABLE fault_days (
    tenant_id  uuid    NOT NULL,
    device_id  uuid    NOT NULL,
    code       text    NOT NULL,
    day        bigint  NOT NULL,
    count      bigint  NOT NULL,
    PRIMARY KEY (tenant_id, device_id, code, day)
);

-- The newest fuel level seen per device, for refuel detection across batches.
CREATE TABLE fuel_levels (
    tenant_id  uuid    NOT NULL,
    device_id  uuid    NOT NULL,
    level_pct  double precision NOT NULL,
    time_ms    bigint  NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);

-- Applies to one vehicle (device_id), a vehicle group, or, with neither, to all.
CREATE TABLE maintenance_schedules (
    tenant_id           uuid    NOT NULL,
    schedule_id         uuid    NOT NULL,
    name                text    NOT NULL,
    device_id           uuid,
    vehicle_group       text,
    every_km            double precision,
    every_engine_hours  double precision,
    every_days          bigint ,
    created_at_ms       bigint  NOT NULL,
    PRIMARY KEY (tenant_id, schedule_id)
);

-- The last time each schedule was served on each vehicle.
CREATE TABLE maintenance_services (
    tenant_id      uuid    NOT NULL,
    schedule_id    uuid    NOT NULL,
    device_id      uuid    NOT NULL,
    done_at_ms     bigint  NOT NULL,
    odometer_km    double precision,
    engine_hours   double precision,
    work_order_id  uuid,
    PRIMARY KEY (tenant_id, schedule_id, device_id)
);

CREATE TABLE work_orders (
    tenant_id      uuid    NOT NULL,
    work_order_id  uuid    NOT NULL,
    device_id      uuid    NOT NULL,
    schedule_id    uuid,
    title          text    NOT NULL,
    status         text    NOT NULL,
    parts_cents    bigint  NOT NULL,
    labor_cents    bigint  NOT NULL,
    opened_at_ms   bigint  NOT NULL,
    closed_at_ms   bigint ,
    updated_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, work_order_id)
);
CREATE INDEX work_orders_by_device ON work_orders (tenant_id, device_id);

-- An open alert (acknowledged_at_ms NULL) is raised once per vehicle, kind and key.
CREATE TABLE maintenance_alerts (
    tenant_id           uuid    NOT NULL,
    alert_id            uuid    NOT NULL,
    device_id           uuid    NOT NULL,
    kind                text    NOT NULL,
    key                 text    NOT NULL,
    message             text    NOT NULL,
    data                text    NOT NULL,
    raised_at_ms        bigint  NOT NULL,
    notified_at_ms      bigint ,
    acknowledged_at_ms  bigint ,
    PRIMARY KEY (tenant_id, alert_id)
);
CREATE UNIQUE INDEX maintenance_alerts_open ON maintenance_alerts (tenant_id, device_id, kind, key)
    WHERE acknowledged_at_ms IS NULL;
CREATE INDEX maintenance_alerts_unnotified ON maintenance_alerts (notified_at_ms, tenant_id)
    WHERE notified_at_ms IS NULL;

CREATE TABLE report_schedules (
    tenant_id      uuid    NOT NULL,
    schedule_id    uuid    NOT NULL,
    report         text    NOT NULL,
    period         text    NOT NULL,
    format         text    NOT NULL,
    email_to       text,
    next_run_ms    bigint  NOT NULL,
    last_run_ms    bigint ,
    created_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, schedule_id)
);
CREATE INDEX report_schedules_due ON report_schedules (next_run_ms);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['analytics_settings', 'vehicle_day', 'trips', 'fault_days', 'fuel_levels', 'maintenance_schedules', 'maintenance_services', 'work_orders', 'maintenance_alerts', 'report_schedules']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I
                 USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)
                 WITH CHECK (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
            t);
    END LOOP;
    -- The background task finds due alerts and reports across tenants, then
    -- claims each tenant's rows in that tenant's own transaction.
    FOREACH t IN ARRAY ARRAY['maintenance_alerts', 'report_schedules']
    LOOP
        EXECUTE format(
            'CREATE POLICY analytics_worker ON %I FOR SELECT
                 USING (current_setting(''app.analytics_worker'', true) = ''on'')',
            t);
    END LOOP;
END
$$;
