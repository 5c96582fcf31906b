-- The availability probe (storage::sqlite::reservations::available_vehicles)
-- filters on status as well as reading end_ms and buffer_ms. 0011's partial
-- index left status out, so SQLite read the table row of every vehicle's last
-- booking to re-check it; with status in the index the probe is covering
-- (EXPLAIN QUERY PLAN: SEARCH r USING COVERING INDEX). PostgreSQL needs no
-- change: its index-only scan takes the partial index's predicate as given.
DROP INDEX reservations_holding;
CREATE INDEX reservations_holding ON reservations (tenant_id, vehicle_id, start_ms, end_ms, buffer_ms, status)
    WHERE status IN ('pending', 'approved', 'active');
