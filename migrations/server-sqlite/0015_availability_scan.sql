-- Availability first proves most vehicles busy from one range scan of the
-- holding bookings that start around the window, then probes only the vehicles
-- the scan could not prove busy (storage::sqlite::reservations::
-- available_vehicles). This index serves that scan in start order; like 0014's,
-- it carries status so that the scan reads no table row.
CREATE INDEX reservations_holding_by_start ON reservations (tenant_id, start_ms, vehicle_id, end_ms, buffer_ms, status)
    WHERE status IN ('pending', 'approved', 'active');
