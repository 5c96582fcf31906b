-- Access: users, API keys with roles, scopes and expiry, per-tenant feature flags
-- and limits, the audit log, and vehicles' cost profiles.
-- Every primary key starts with tenant_id. Ids are 16-byte UUID blobs; times are
-- Unix milliseconds.

CREATE TABLE users (
    tenant_id       BLOB    NOT NULL,
    user_id         BLOB    NOT NULL,
    -- Lower-cased; unique within the tenant.
    email           TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    disabled        INTEGER NOT NULL DEFAULT 0,
    created_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX users_by_email ON users (tenant_id, email);

-- API keys: sha256 of the secret only; the secret is shown once at creation.
CREATE TABLE access_keys (
    tenant_id       BLOB    NOT NULL,
    key_id          BLOB    NOT NULL,
    key_hash        BLOB    NOT NULL,
    -- The first characters of the secret, so people can tell their keys apart.
    prefix          TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    -- JSON array of capability names the key is limited to; NULL: all its role has.
    scopes          TEXT,
    user_id         BLOB,
    created_by      BLOB,
    created_at_ms   INTEGER NOT NULL,
    expires_at_ms   INTEGER,
    revoked_at_ms   INTEGER,
    last_used_ms    INTEGER,
    PRIMARY KEY (tenant_id, key_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX access_keys_by_hash ON access_keys (key_hash);

-- The key each tenant was created with becomes that tenant's admin key.
INSERT INTO access_keys (tenant_id, key_id, key_hash, prefix, name, role, created_at_ms)
    SELECT tenant_id, randomblob(16), key_hash, 'fk_', 'tenant admin key', 'admin', created_at_ms
    FROM api_keys;
DROP TABLE api_keys;

-- Feature flags (a JSON object of name -> bool; a missing name is on) and limits
-- (NULL: no limit of the tenant's own, the server default applies).
CREATE TABLE tenant_settings (
    tenant_id         BLOB    NOT NULL,
    features          TEXT    NOT NULL DEFAULT '{}',
    max_vehicles      INTEGER,
    max_users         INTEGER,
    api_rate_per_min  INTEGER,
    updated_at_ms     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id)
) WITHOUT ROWID;

CREATE TABLE audit_log (
    tenant_id       BLOB    NOT NULL,
    at_ms           INTEGER NOT NULL,
    audit_id        BLOB    NOT NULL,
    -- key, operator or cli
    actor_kind      TEXT    NOT NULL,
    actor_key_id    BLOB,
    actor_user_id   BLOB,
    action          TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    detail          TEXT    NOT NULL,
    request_id      TEXT,
    PRIMARY KEY (tenant_id, at_ms, audit_id)
) WITHOUT ROWID;
CREATE INDEX audit_log_by_action ON audit_log (tenant_id, action, at_ms);

-- Money in cents of the tenant's currency; shown only to callers who may view costs.
CREATE TABLE vehicle_costs (
    tenant_id               BLOB    NOT NULL,
    device_id               BLOB    NOT NULL,
    purchase_price_cents    INTEGER,
    purchase_date           TEXT,
    fuel_cost_cents         INTEGER,
    maintenance_cost_cents  INTEGER,
    currency                TEXT,
    updated_at_ms           INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
) WITHOUT ROWID;
