-- What an enrolled device is: a vehicle (every device enrolled before this)
-- or a yard kiosk. Kiosks stay out of vehicle lists, the map and the reports.
ALTER TABLE devices ADD COLUMN kind TEXT NOT NULL DEFAULT 'vehicle'
    CHECK (kind IN ('vehicle', 'kiosk'));
