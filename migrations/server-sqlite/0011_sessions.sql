-- Passwords and dashboard sessions of a tenant's users. Every primary key starts
-- with tenant_id.
--
-- A password is stored as its argon2id PHC string (salt and parameters inside).
CREATE TABLE user_passwords (
    tenant_id      BLOB    NOT NULL,
    user_id        BLOB    NOT NULL,
    phc            TEXT    NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
) WITHOUT ROWID;

-- A session is named by the SHA-256 of its secret; the secret lives only in the
-- user's cookie. It ends at expires_at_ms, at logout, or when the password changes.
CREATE TABLE user_sessions (
    tenant_id       BLOB    NOT NULL,
    session_sha256  BLOB    NOT NULL,
    session_id      BLOB    NOT NULL,
    user_id         BLOB    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    expires_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, session_sha256)
) WITHOUT ROWID;
CREATE INDEX user_sessions_by_user ON user_sessions (tenant_id, user_id);

-- Availability probes each vehicle for its last holding booking that starts
-- before the window ends (storage::sqlite::reservations::available_vehicles).
-- With end_ms and buffer_ms in the index that probe never reads the table.
DROP INDEX reservations_holding;
CREATE INDEX reservations_holding ON reservations (tenant_id, vehicle_id, start_ms, end_ms, buffer_ms)
    WHERE status IN ('pending', 'approved', 'active');
