-- Passwords and dashboard sessions of a tenant's users. Every primary key starts
-- with tenant_id; both tables are behind the tenant_isolation policy.
--
-- A password is stored as its argon2id PHC string (salt and parameters inside).
CREATE TABLE user_passwords (
    tenant_id      uuid    NOT NULL,
    user_id        uuid    NOT NULL,
    phc            text    NOT NULL,
    updated_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

-- A session is named by the SHA-256 of its secret; the secret lives only in the
-- user's cookie. It ends at expires_at_ms, at logout, or when the password changes.
CREATE TABLE user_sessions (
    tenant_id       uuid    NOT NULL,
    session_sha256  bytea   NOT NULL,
    session_id      uuid    NOT NULL,
    user_id         uuid    NOT NULL,
    created_at_ms   bigint  NOT NULL,
    expires_at_ms   bigint  NOT NULL,
    PRIMARY KEY (tenant_id, session_sha256)
);
CREATE INDEX user_sessions_by_user ON user_sessions (tenant_id, user_id);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['user_passwords', 'user_sessions']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I
                 USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)
                 WITH CHECK (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
            t);
    END LOOP;
END
$$;

-- Availability probes each vehicle for its last holding booking that starts
-- before the window ends (storage::postgres::reservations::available_vehicles).
-- With end_ms and buffer_ms in the index that probe is an index-only scan.
DROP INDEX reservations_holding;
CREATE INDEX reservations_holding ON reservations (tenant_id, vehicle_id, start_ms)
    INCLUDE (end_ms, buffer_ms) WHERE status IN ('pending', 'approved', 'active');
