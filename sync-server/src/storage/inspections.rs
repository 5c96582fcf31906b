//! Inspections (DVIR): checklist forms per vehicle type, inspections submitted
//! from the API, a kiosk check-in or a device event, and the defects they find.
//! An unsafe defect blocks handout of its asset until a mechanic signs its
//! repair. Every backend implements [`InspectionStore`] and passes
//! `conformance_inspections.rs`.

use super::StorageError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One line of a checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormItem {
    /// Short and stable within the form (`brakes`, `tyres`).
    pub id: String,
    /// What the driver reads.
    pub label: String,
}

/// A checklist template for one vehicle type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InspectionForm {
    pub id: Uuid,
    pub vehicle_type: String,
    pub name: String,
    pub items: Vec<FormItem>,
    pub created_at_ms: i64,
}

/// Where an inspection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InspectionSource {
    Api,
    Kiosk,
    Device,
}

impl InspectionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            InspectionSource::Api => "api",
            InspectionSource::Kiosk => "kiosk",
            InspectionSource::Device => "device",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api" => Some(InspectionSource::Api),
            "kiosk" => Some(InspectionSource::Kiosk),
            "device" => Some(InspectionSource::Device),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Noted; the vehicle may still be driven.
    Safe,
    /// The vehicle must not be handed out until repaired.
    Unsafe,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Safe => "safe",
            Severity::Unsafe => "unsafe",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "safe" => Some(Severity::Safe),
            "unsafe" => Some(Severity::Unsafe),
            _ => None,
        }
    }
}

/// A checklist line as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemResult {
    pub item: String,
    pub ok: bool,
}

/// A mechanic's signed repair of one defect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefectRepair {
    pub mechanic: String,
    pub note: String,
    /// SHA-256 of the mechanic's signature blob (PNG).
    pub signature_sha256: Option<String>,
    pub repaired_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefectRecord {
    pub id: Uuid,
    pub inspection_id: Uuid,
    pub asset_id: Uuid,
    /// The checklist item it was found under, if any.
    pub item: Option<String>,
    pub description: String,
    pub severity: Severity,
    pub created_at_ms: i64,
    pub repair: Option<DefectRepair>,
}

/// An inspection as submitted, with the defects it found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InspectionRecord {
    pub id: Uuid,
    pub asset_id: Uuid,
    pub form_id: Option<Uuid>,
    pub source: InspectionSource,
    pub device_id: Option<Uuid>,
    /// The driver's name or badge as the submitter gave it.
    pub driver: String,
    /// SHA-256 of the driver's signature blob (PNG).
    pub signature_sha256: Option<String>,
    pub odometer_km: Option<f64>,
    pub notes: String,
    pub results: Vec<ItemResult>,
    pub inspected_at_ms: i64,
    pub created_at_ms: i64,
    pub defects: Vec<DefectRecord>,
}

/// Joins the open unsafe defects of each asset into one line, assets in order
/// of their oldest defect. Defects must come oldest first.
pub fn summarise_unsafe(defects: &[DefectRecord]) -> Vec<(Uuid, String)> {
    let mut out: Vec<(Uuid, String)> = Vec::new();
    for d in defects
        .iter()
        .filter(|d| d.severity == Severity::Unsafe && d.repair.is_none())
    {
        match out.iter_mut().find(|(a, _)| *a == d.asset_id) {
            Some((_, s)) => {
                s.push_str("; ");
                s.push_str(&d.description);
            }
            None => out.push((d.asset_id, d.description.clone())),
        }
    }
    out
}

#[async_trait]
pub trait InspectionStore: Send + Sync {
    /// Stores a new form; `Conflict` when the id is taken.
    async fn insert_inspection_form(
        &self,
        tenant: Uuid,
        form: &InspectionForm,
    ) -> Result<(), StorageError>;
    async fn inspection_form(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Option<InspectionForm>, StorageError>;
    /// By vehicle type, then newest first.
    async fn inspection_forms(&self, tenant: Uuid) -> Result<Vec<InspectionForm>, StorageError>;

    /// Stores an inspection and its defects in one transaction. Submitting an
    /// id already stored changes nothing and answers the stored one with
    /// `false`, so a device may resend.
    async fn record_inspection(
        &self,
        tenant: Uuid,
        inspection: &InspectionRecord,
    ) -> Result<(InspectionRecord, bool), StorageError>;
    async fn inspection(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Option<InspectionRecord>, StorageError>;
    /// Newest first, at most `limit`, one asset's when given.
    async fn list_inspections(
        &self,
        tenant: Uuid,
        asset: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<InspectionRecord>, StorageError>;

    /// Unrepaired defects, oldest first, one asset's when given.
    async fn open_defects(
        &self,
        tenant: Uuid,
        asset: Option<Uuid>,
    ) -> Result<Vec<DefectRecord>, StorageError>;
    /// Signs a defect's repair. `None` when the tenant has no such defect;
    /// `Conflict` when it was already repaired.
    async fn repair_defect(
        &self,
        tenant: Uuid,
        defect: Uuid,
        repair: &DefectRepair,
    ) -> Result<Option<DefectRecord>, StorageError>;

    /// Assets with at least one unrepaired unsafe defect, with a one-line
    /// summary each: what the snapshot flags and what check-out refuses.
    async fn open_unsafe_defects(&self, tenant: Uuid) -> Result<Vec<(Uuid, String)>, StorageError> {
        Ok(summarise_unsafe(&self.open_defects(tenant, None).await?))
    }
}
