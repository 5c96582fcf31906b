//! One batch, one transaction: anchors, events, quarantine, evicted holes, the
//! device's high-water mark and its vehicle's last position.

use super::PgStorage;
use crate::storage::{DeviceRecord, IngestOutcome, StorageError};
use fleet_protocol::Batch;

pub(super) async fn ingest(
    _storage: &PgStorage,
    _device: &DeviceRecord,
    _batch: Batch,
    _now_ms: i64,
) -> Result<IngestOutcome, StorageError> {
    Err(StorageError::Backend("not implemented".into()))
}
