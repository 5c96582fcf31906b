-- Kiosks: each tenant's label signing key, the labels it issued, its kiosk
-- policy, custody holders and conflicts, and the index of uploaded blobs.
-- Every primary key starts with tenant_id.

-- One Ed25519 key per tenant, made on first use. `secret` is the 32-byte seed
-- as the server was configured to keep it (see `fleet-sync serve --help`).
CREATE TABLE tenant_signing_keys (
    tenant_id      BLOB    NOT NULL,
    secret         BLOB    NOT NULL,
    public_key     TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- label_id is what the label names: an asset or vehicle id, a key tag or a badge.
CREATE TABLE labels (
    tenant_id      BLOB    NOT NULL,
    label_id       BLOB    NOT NULL,
    kind           TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    asset_id       BLOB,
    slot           INTEGER,
    short_code     TEXT    NOT NULL,
    text           TEXT    NOT NULL,
    expires_at_s   INTEGER,
    created_at_ms  INTEGER NOT NULL,
    revoked_at_ms  INTEGER,
    PRIMARY KEY (tenant_id, label_id)
);
CREATE UNIQUE INDEX labels_by_short_code ON labels (tenant_id, short_code);

CREATE TABLE kiosk_policies (
    tenant_id           BLOB    NOT NULL,
    walk_up             TEXT    NOT NULL,
    grace_minutes       INTEGER NOT NULL,
    max_checkout_hours  INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- The holder after the last merge of each asset's custody document (JSON op).
CREATE TABLE custody_holders (
    tenant_id      BLOB    NOT NULL,
    asset_id       BLOB    NOT NULL,
    holder         TEXT,
    ops            INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, asset_id)
);

-- Two check-outs with no check-in between, known by their two event ids.
CREATE TABLE custody_conflicts (
    tenant_id        BLOB    NOT NULL,
    conflict_id      BLOB    NOT NULL,
    asset_id         BLOB    NOT NULL,
    first_event_id   BLOB    NOT NULL,
    second_event_id  BLOB    NOT NULL,
    first_op         TEXT    NOT NULL,
    second_op        TEXT    NOT NULL,
    detected_at_ms   INTEGER NOT NULL,
    resolved_at_ms   INTEGER,
    resolved_by      BLOB,
    holder_badge     BLOB,
    note             TEXT,
    PRIMARY KEY (tenant_id, conflict_id)
);
CREATE UNIQUE INDEX custody_conflicts_by_events
    ON custody_conflicts (tenant_id, asset_id, first_event_id, second_event_id);

-- Complete, digest-checked blobs; the bytes live under the blob directory.
CREATE TABLE blobs (
    tenant_id      BLOB    NOT NULL,
    sha256         TEXT    NOT NULL,
    size           INTEGER NOT NULL,
    content_type   TEXT    NOT NULL,
    device_id      BLOB,
    stored_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, sha256)
);
