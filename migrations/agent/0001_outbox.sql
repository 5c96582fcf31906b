-- The agent's local store, schema version 1. Applied once at start by
-- agent/src/store/schema.rs and tracked with PRAGMA user_version; never edited
-- after release: a change is a new numbered file.

-- Boot ids are 16 bytes; events point at them by a small integer instead.
CREATE TABLE boots (
    id      INTEGER PRIMARY KEY,
    boot_id BLOB NOT NULL UNIQUE CHECK (length(boot_id) = 16)
);

-- The append-only outbox. `seq` is dense from 1 except where rows were evicted
-- (unacked, counted in `outbox`, recorded in `evicted_ranges`) or pruned
-- (already acknowledged by the server).
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,
    boot           INTEGER NOT NULL REFERENCES boots (id),
    kind           TEXT    NOT NULL,
    priority       INTEGER NOT NULL CHECK (priority IN (0, 1, 2)),
    mono_ms        INTEGER NOT NULL,
    wall_ms        INTEGER NOT NULL,
    hlc            INTEGER NOT NULL, -- u64 bits stored as i64
    config_version INTEGER NOT NULL,
    data           BLOB    NOT NULL  -- EventData, encoded by store/rows.rs
);

-- One row of outbox counters. `last_seq` and `last_hlc` survive the deletion of
-- the rows that carried them, so numbering resumes correctly after a restart.
CREATE TABLE outbox (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq          INTEGER NOT NULL,
    last_hlc          INTEGER NOT NULL,
    acked_seq         INTEGER NOT NULL,
    evicted_telemetry INTEGER NOT NULL,
    evicted_normal    INTEGER NOT NULL,
    evicted_critical  INTEGER NOT NULL, -- stays 0: kept so a violation would show
    pruned_acked      INTEGER NOT NULL
);
INSERT INTO outbox VALUES (1, 0, 0, 0, 0, 0, 0, 0);

-- Runs of unacknowledged seqs deleted to stay within the disk budget.
CREATE TABLE evicted_ranges (
    first_seq INTEGER PRIMARY KEY,
    last_seq  INTEGER NOT NULL CHECK (last_seq >= first_seq)
);

-- Best known true time per boot.
CREATE TABLE time_anchors (
    boot_id        BLOB PRIMARY KEY CHECK (length(boot_id) = 16),
    mono_ms        INTEGER NOT NULL,
    true_ms        INTEGER NOT NULL,
    source         INTEGER NOT NULL,
    uncertainty_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Small durable key/value state for other modules.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- automerge documents: a full snapshot plus incremental chunks appended since.
-- `heads` are the change hashes (32 bytes each) of snapshot + chunks together.
CREATE TABLE docs (
    doc_id      TEXT PRIMARY KEY,
    snapshot    BLOB    NOT NULL,
    heads       BLOB    NOT NULL,
    chunk_count INTEGER NOT NULL,
    chunk_bytes INTEGER NOT NULL
);

CREATE TABLE doc_chunks (
    doc_id TEXT    NOT NULL REFERENCES docs (doc_id) ON DELETE CASCADE,
    n      INTEGER NOT NULL,
    data   BLOB    NOT NULL,
    PRIMARY KEY (doc_id, n)
) WITHOUT ROWID;

-- Encoded automerge::sync::State per (document, peer). No foreign key: a sync
-- state may be saved before the document's first save.
CREATE TABLE doc_sync_states (
    doc_id TEXT NOT NULL,
    peer   TEXT NOT NULL,
    state  BLOB NOT NULL,
    PRIMARY KEY (doc_id, peer)
) WITHOUT ROWID;
