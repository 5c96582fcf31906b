-- Kiosks: each tenant's label signing key, the labels it issued, its kiosk
-- policy, custody holders and conflicts, and the index of uploaded blobs.
-- Every primary key starts with tenant_id; every table is behind the
-- tenant_isolation policy.

-- One Ed25519 key per tenant, made on first use. `secret` is the 32-byte seed
-- as the server was configured to keep it (see `fleet-sync serve --help`).
CREATE TABLE tenant_signing_keys (
    tenant_id      uuid    NOT NULL,
    secret         bytea   NOT NULL,
    public_key     text    NOT NULL,
    created_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- label_id is what the label names: an asset or vehicle id, a key tag or a badge.
CREATE TABLE labels (
    tenant_id      uuid    NOT NULL,
    label_id       uuid    NOT NULL,
    kind           text    NOT NULL,
    name           text    NOT NULL,
    asset_id       uuid,
    slot           bigint,
    short_code     text    NOT NULL,
    text           text    NOT NULL,
    expires_at_s   bigint,
    created_at_ms  bigint  NOT NULL,
    revoked_at_ms  bigint,
    PRIMARY KEY (tenant_id, label_id)
);
CREATE UNIQUE INDEX labels_by_short_code ON labels (tenant_id, short_code);

CREATE TABLE kiosk_policies (
    tenant_id           uuid    NOT NULL,
    walk_up             text    NOT NULL,
    grace_minutes       bigint  NOT NULL,
    max_checkout_hours  bigint  NOT NULL,
    updated_at_ms       bigint  NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- The holder after the last merge of each asset's custody document.
CREATE TABLE custody_holders (
    tenant_id      uuid    NOT NULL,
    asset_id       uuid    NOT NULL,
    holder         jsonb,
    ops            bigint  NOT NULL,
    updated_at_ms  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, asset_id)
);

-- Two check-outs with no check-in between, known by their two event ids.
CREATE TABLE custody_conflicts (
    tenant_id        uuid    NOT NULL,
    conflict_id      uuid    NOT NULL,
    asset_id         uuid    NOT NULL,
    first_event_id   uuid    NOT NULL,
    second_event_id  uuid    NOT NULL,
    first_op         jsonb   NOT NULL,
    second_op        jsonb   NOT NULL,
    detected_at_ms   bigint  NOT NULL,
    resolved_at_ms   bigint,
    resolved_by      uuid,
    holder_badge     uuid,
    note             text,
    PRIMARY KEY (tenant_id, conflict_id)
);
CREATE UNIQUE INDEX custody_conflicts_by_events
    ON custody_conflicts (tenant_id, asset_id, first_event_id, second_event_id);

-- Complete, digest-checked blobs; the bytes live under the blob directory.
CREATE TABLE blobs (
    tenant_id      uuid    NOT NULL,
    sha256         text    NOT NULL,
    size           bigint  NOT NULL,
    content_type   text    NOT NULL,
    device_id      uuid,
    stored_at_ms   bigint  NOT NULL,
    PRIMARY KEY (tenant_id, sha256)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant_signing_keys', 'labels', 'kiosk_policies',
                             'custody_holders', 'custody_conflicts', 'blobs']
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
