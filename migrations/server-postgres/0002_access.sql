-- Access: users, API keys with roles, scopes and expiry, per-tenant feature flags
-- and limits, the audit log, and vehicles' cost profiles. Every primary key
-- starts with tenant_id; every table is behind the tenant_isolation policy.

CREATE TABLE users (
    tenant_id       uuid     NOT NULL,
    user_id         uuid     NOT NULL,
    -- Lower-cased; unique within the tenant.
    email           text     NOT NULL,
    name            text     NOT NULL,
    role            text     NOT NULL,
    disabled        boolean  NOT NULL DEFAULT false,
    created_at_ms   bigint   NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE UNIQUE INDEX users_by_email ON users (tenant_id, email);

-- API keys: sha256 of the secret only; the secret is shown once at creation.
CREATE TABLE access_keys (
    tenant_id       uuid     NOT NULL,
    key_id          uuid     NOT NULL,
    key_hash        bytea    NOT NULL,
    -- The first characters of the secret, so people can tell their keys apart.
    prefix          text     NOT NULL,
    name            text     NOT NULL,
    role            text     NOT NULL,
    -- Capability names the key is limited to; NULL: all its role has.
    scopes          jsonb,
    user_id         uuid,
    created_by      uuid,
    created_at_ms   bigint   NOT NULL,
    expires_at_ms   bigint,
    revoked_at_ms   bigint,
    last_used_ms    bigint,
    PRIMARY KEY (tenant_id, key_id)
);
CREATE UNIQUE INDEX access_keys_by_hash ON access_keys (key_hash);

-- The key each tenant was created with becomes that tenant's admin key. api_keys
-- is behind row-level security; its lookup policy lets this read every row.
SELECT set_config('app.lookup', 'on', true);
INSERT INTO access_keys (tenant_id, key_id, key_hash, prefix, name, role, created_at_ms)
    SELECT tenant_id, gen_random_uuid(), key_hash, 'fk_', 'tenant admin key', 'admin', created_at_ms
    FROM api_keys;
SELECT set_config('app.lookup', '', true);
DROP TABLE api_keys;

-- Feature flags (name -> bool; a missing name is on) and limits (NULL: the
-- server default applies).
CREATE TABLE tenant_settings (
    tenant_id         uuid     NOT NULL,
    features          jsonb    NOT NULL DEFAULT '{}',
    max_vehicles      bigint,
    max_users         bigint,
    api_rate_per_min  bigint,
    updated_at_ms     bigint   NOT NULL,
    PRIMARY KEY (tenant_id)
);

CREATE TABLE audit_log (
    tenant_id       uuid     NOT NULL,
    at_ms           bigint   NOT NULL,
    audit_id        uuid     NOT NULL,
    -- key, operator or cli
    actor_kind      text     NOT NULL,
    actor_key_id    uuid,
    actor_user_id   uuid,
    action          text     NOT NULL,
    target          text     NOT NULL,
    detail          jsonb    NOT NULL,
    request_id      text,
    PRIMARY KEY (tenant_id, at_ms, audit_id)
);
CREATE INDEX audit_log_by_action ON audit_log (tenant_id, action, at_ms);

-- Money in cents of the tenant's currency; shown only to callers who may view costs.
CREATE TABLE vehicle_costs (
    tenant_id               uuid     NOT NULL,
    device_id               uuid     NOT NULL,
    purchase_price_cents    bigint,
    purchase_date           text,
    fuel_cost_cents         bigint,
    maintenance_cost_cents  bigint,
    currency                text,
    updated_at_ms           bigint   NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'access_keys', 'tenant_settings', 'audit_log', 'vehicle_costs']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I
                 USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)
                 WITH CHECK (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
            t);
    END LOOP;
    -- A presented key is found before its tenant is known; the operator lists
    -- every tenant with its settings.
    FOREACH t IN ARRAY ARRAY['access_keys', 'tenants', 'tenant_settings']
    LOOP
        EXECUTE format(
            'CREATE POLICY directory_lookup ON %I FOR SELECT
                 USING (current_setting(''app.lookup'', true) = ''on'')',
            t);
    END LOOP;
END
$$;
