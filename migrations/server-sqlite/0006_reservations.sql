-- Reservations of vehicles (assets of kind `vehicle`), the tenant's booking
-- settings (turnaround buffer, approval per vehicle group, timers, SMTP) and
-- private calendar-feed tokens. Every primary
-- key starts with tenant_id.
--
-- A reservation that holds its vehicle (pending, approved, active) blocks
-- [start_ms, end_ms + buffer_ms): buffer_ms is the tenant's turnaround buffer
-- when it was booked. Two holding reservations of one vehicle never overlap;
-- on SQLite the write path checks that in the transaction that writes.
CREATE TABLE reservations (
    tenant_id        BLOB    NOT NULL,
    reservation_id   BLOB    NOT NULL,
    vehicle_id       BLOB    NOT NULL,
    user_id          BLOB    NOT NULL,
    start_ms         INTEGER NOT NULL,
    end_ms           INTEGER NOT NULL,
    buffer_ms        INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    purpose          TEXT,
    department       TEXT,
    cost_center      TEXT,
    reason           TEXT,
    created_by       BLOB,
    approved_by      BLOB,
    version          INTEGER NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    reminded_at_ms   INTEGER,
    overdue_at_ms    INTEGER,
    CHECK (end_ms > start_ms AND buffer_ms >= 0),
    PRIMARY KEY (tenant_id, reservation_id)
);
CREATE INDEX reservations_holding ON reservations (tenant_id, vehicle_id, start_ms)
    WHERE status IN ('pending', 'approved', 'active');
CREATE INDEX reservations_by_vehicle ON reservations (tenant_id, vehicle_id, start_ms);
CREATE INDEX reservations_by_user ON reservations (tenant_id, user_id, start_ms);
CREATE INDEX reservations_by_start ON reservations (tenant_id, start_ms);

CREATE TABLE reservation_settings (
    tenant_id            BLOB    NOT NULL,
    settings             TEXT    NOT NULL,  -- JSON, see storage::reservations::ReservationSettings
    updated_at_ms        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id)
);


-- One feed token per subject (`vehicle` or `user`); stored as its SHA-256.
CREATE TABLE calendar_tokens (
    tenant_id      BLOB    NOT NULL,
    subject_kind   TEXT    NOT NULL,
    subject_id     BLOB    NOT NULL,
    token_sha256   BLOB    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, subject_kind, subject_id)
);
