-- Availability first proves most vehicles busy from one range scan of the
-- holding bookings that start around the window, then probes only the vehicles
-- the scan could not prove busy (storage::postgres::reservations::
-- available_vehicles). This index serves that scan as an index-only scan in
-- start order.
CREATE INDEX reservations_holding_by_start ON reservations (tenant_id, start_ms)
    INCLUDE (vehicle_id, end_ms, buffer_ms) WHERE status IN ('pending', 'approved', 'active');
