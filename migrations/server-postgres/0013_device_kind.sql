-- What an enrolled device is: a vehicle (every device enrolled before this)
-- or a yard kiosk. Kiosks stay out of vehicle lists, the map and the reports.
ALTER TABLE devices ADD COLUMN kind text NOT NULL DEFAULT 'vehicle'
    CONSTRAINT devices_kind_check CHECK (kind IN ('vehicle', 'kiosk'));
