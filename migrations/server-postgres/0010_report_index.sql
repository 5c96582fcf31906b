-- The utilization and summary reports sum a window of days of every vehicle of
-- a tenant (90 days of 1,000 vehicles: 90,000 rollup rows). This index carries
-- every column they sum, so PostgreSQL reads the window from the index alone
-- (an index-only scan over the pages autovacuum has marked all-visible, which
-- is every day but the last few) instead of whole rollup rows with their hourly
-- arrays. Its key is vehicle_day_by_day's, which it replaces.
CREATE INDEX vehicle_day_report ON vehicle_day (tenant_id, day, device_id)
    INCLUDE (engine_on_ms, driving_ms, idle_ms, trips, distance_m, fuel_used_l,
             harsh_acceleration, harsh_braking, harsh_cornering, speeding_ms, dtc_set,
             fuel_drops, parked_fuel_drops, refuels,
             odometer_min_km, odometer_max_km, engine_hours_min, engine_hours_max);
DROP INDEX vehicle_day_by_day;
