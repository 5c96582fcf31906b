//! JSON messages of the device API (`/sync/v1/…`) and the error shape every
//! endpoint uses.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const PATH_ENROLL: &str = "/sync/v1/enroll";
pub const PATH_BATCHES: &str = "/sync/v1/batches";
pub const PATH_TIME: &str = "/sync/v1/time";
/// `/sync/v1/docs/{doc_id}/sync`: one round of automerge's sync protocol.
pub const PATH_DOCS_PREFIX: &str = "/sync/v1/docs/";
pub const CONTENT_TYPE_BATCH: &str = "application/vnd.fleet.batch";
pub const CONTENT_TYPE_AUTOMERGE_SYNC: &str = "application/vnd.automerge.sync";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    /// The device's Ed25519 public key, base64 (standard alphabet, padded).
    pub public_key: String,
    pub name: Option<String>,
    /// Signature by the new key over [`crate::auth::enroll_message`], proving the
    /// device holds the private half.
    pub proof: String,
    pub agent_version: Option<String>,
    /// What the device is. Sent only for a kiosk, so that servers older than
    /// device kinds (which refuse unknown fields) still enroll vehicles.
    #[serde(default, skip_serializing_if = "DeviceKind::is_vehicle")]
    pub kind: DeviceKind,
}

/// What an enrolled device is: a vehicle (the default) or a yard kiosk, which
/// the server keeps out of vehicle lists, the map and the reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    #[default]
    Vehicle,
    Kiosk,
}

impl DeviceKind {
    pub fn is_vehicle(&self) -> bool {
        *self == DeviceKind::Vehicle
    }

    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Vehicle => "vehicle",
            DeviceKind::Kiosk => "kiosk",
        }
    }

    /// Reads the stored spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "vehicle" => Some(DeviceKind::Vehicle),
            "kiosk" => Some(DeviceKind::Kiosk),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub device_id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub server_time_ms: i64,
    /// The tenant's Ed25519 label and snapshot signing key, base64. Older servers
    /// do not send it; older agents ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_public_key: Option<String>,
}

/// The answer to a stored batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchAck {
    /// Highest seq such that every seq up to it is durably stored (or accounted for
    /// as evicted or quarantined). 0 when nothing is.
    pub acked_seq: u64,
    pub server_time_ms: i64,
    /// Events newly stored by this request.
    pub stored: u32,
    /// Events the server already had.
    pub duplicates: u32,
    /// Events set aside for an operator to look at.
    pub quarantined: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimeResponse {
    pub server_time_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// Present on clock errors so that a device can correct itself and retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_time_ms: Option<i64>,
    /// Present on seq errors: where the server expects the device to resume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_seq: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: DeviceKind) -> EnrollRequest {
        EnrollRequest {
            token: "t".into(),
            public_key: "k".into(),
            name: None,
            proof: "p".into(),
            agent_version: None,
            kind,
        }
    }

    #[test]
    fn only_a_kiosk_names_its_kind_when_enrolling() {
        let vehicle = serde_json::to_value(request(DeviceKind::Vehicle)).unwrap();
        assert!(vehicle.get("kind").is_none(), "{vehicle}");
        let kiosk = serde_json::to_value(request(DeviceKind::Kiosk)).unwrap();
        assert_eq!(kiosk["kind"], "kiosk");
        let back: EnrollRequest = serde_json::from_value(vehicle).unwrap();
        assert_eq!(back.kind, DeviceKind::Vehicle);
        let back: EnrollRequest = serde_json::from_value(kiosk).unwrap();
        assert_eq!(back.kind, DeviceKind::Kiosk);
    }
}
