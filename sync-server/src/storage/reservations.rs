//! Vehicle reservations: bookings of assets of kind `vehicle`, the tenant's
//! booking settings and calendar-feed tokens. Every backend implements
//! [`ReservationStore`] and passes `conformance_reservations.rs`.
//!
//! A reservation that holds its vehicle (`pending`, `approved`, `active`)
//! blocks `[start_ms, end_ms + buffer_ms)`, where `buffer_ms` is the tenant's
//! turnaround buffer when it was booked. Two holding reservations of one vehicle
//! never overlap: PostgreSQL enforces it with an exclusion constraint, SQLite
//! with a check in the writing transaction.

use super::mail::NewMail;
use super::StorageError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Cancelled,
    NoShow,
    Active,
    Completed,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Approved,
        Status::Rejected,
        Status::Cancelled,
        Status::NoShow,
        Status::Active,
        Status::Completed,
    ];
    /// The statuses in which a reservation keeps its vehicle from others.
    pub const HOLDING: [Status; 3] = [Status::Pending, Status::Approved, Status::Active];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
            Status::NoShow => "no_show",
            Status::Active => "active",
            Status::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn holds(self) -> bool {
        Self::HOLDING.contains(&self)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SQL list `('pending', 'approved', 'active')` of holding statuses.
pub const HOLDING_SQL: &str = "('pending', 'approved', 'active')";

/// Availability takes two steps on both backends. Holding bookings of one
/// vehicle never overlap, so a vehicle is free exactly when the last holding
/// booking that starts before the window's end has ended (with its buffer) by
/// the window's start: one index probe per vehicle. Most vehicles of a busy
/// fleet are booked at any time, so the query first proves vehicles busy from
/// one range scan of the bookings that start from `BUSY_SCAN_BEFORE_MS` before
/// the window to `BUSY_SCAN_INTO_MS` into it: every one of them that reaches
/// into the window makes its vehicle busy. Only the vehicles it leaves
/// unproven are probed. The scan reads at most `BUSY_SCAN_ROWS_PER_VEHICLE`
/// bookings per vehicle of the fleet, latest first, so a fleet of short
/// bookings cannot make it long; whatever it misses, the probes decide, so
/// the answer never depends on these bounds, only its cost.
pub const BUSY_SCAN_BEFORE_MS: i64 = 48 * 3_600_000;
/// See [`BUSY_SCAN_BEFORE_MS`].
pub const BUSY_SCAN_INTO_MS: i64 = 24 * 3_600_000;
/// See [`BUSY_SCAN_BEFORE_MS`].
pub const BUSY_SCAN_ROWS_PER_VEHICLE: i64 = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub id: Uuid,
    pub vehicle_id: Uuid,
    /// The driver.
    pub user_id: Uuid,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Turnaround kept free after the end (and so before the next booking).
    pub buffer_ms: i64,
    pub status: Status,
    pub purpose: Option<String>,
    pub department: Option<String>,
    pub cost_center: Option<String>,
    /// Why it was rejected or cancelled.
    pub reason: Option<String>,
    /// The API key that booked it.
    pub created_by: Option<Uuid>,
    /// The API key that approved or rejected it (none when a rule approved it).
    pub approved_by: Option<Uuid>,
    pub version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub reminded_at_ms: Option<i64>,
    pub overdue_at_ms: Option<i64>,
}

impl Reservation {
    /// The window this reservation keeps its vehicle for.
    pub fn blocks(&self) -> (i64, i64) {
        (self.start_ms, self.end_ms + self.buffer_ms)
    }
}

/// The reservation in the way of a booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocking {
    pub reservation_id: Uuid,
    pub user_id: Uuid,
    pub start_ms: i64,
    pub end_ms: i64,
    pub buffer_ms: i64,
}

/// The answer to a write that may collide with another booking or a newer version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Done(Reservation),
    /// Another holding reservation overlaps the window (buffers included).
    Conflict(Blocking),
    /// The reservation is not at the expected version or in an allowed status;
    /// carries it as it is.
    Stale(Reservation),
    NotFound,
}

/// A change to one reservation, applied only if it is at `expected_version`
/// (when given) and in one of `from`.
#[derive(Debug, Clone)]
pub struct Change {
    pub expected_version: Option<i64>,
    pub from: Vec<Status>,
    pub to: Option<Status>,
    pub reason: Option<String>,
    pub approved_by: Option<Uuid>,
    /// New window and turnaround buffer; re-checked against other bookings.
    pub window: Option<(i64, i64, i64)>,
    pub vehicle_id: Option<Uuid>,
    pub purpose: Option<Option<String>>,
    pub department: Option<Option<String>>,
    pub cost_center: Option<Option<String>>,
    pub mark_reminded: bool,
    pub mark_overdue: bool,
    pub now_ms: i64,
}

impl Change {
    pub fn new(now_ms: i64) -> Self {
        Change {
            expected_version: None,
            from: Status::ALL.to_vec(),
            to: None,
            reason: None,
            approved_by: None,
            window: None,
            vehicle_id: None,
            purpose: None,
            department: None,
            cost_center: None,
            mark_reminded: false,
            mark_overdue: false,
            now_ms,
        }
    }

    /// Applies the change to `r` (status, fields, version); the caller has
    /// checked version, status and conflicts.
    pub fn apply(&self, r: &mut Reservation) {
        if let Some(s) = self.to {
            r.status = s;
        }
        if self.reason.is_some() {
            r.reason.clone_from(&self.reason);
        }
        if self.approved_by.is_some() {
            r.approved_by = self.approved_by;
        }
        if let Some((s, e, b)) = self.window {
            (r.start_ms, r.end_ms, r.buffer_ms) = (s, e, b);
        }
        if let Some(v) = self.vehicle_id {
            r.vehicle_id = v;
        }
        if let Some(p) = &self.purpose {
            r.purpose.clone_from(p);
        }
        if let Some(d) = &self.department {
            r.department.clone_from(d);
        }
        if let Some(c) = &self.cost_center {
            r.cost_center.clone_from(c);
        }
        if self.mark_reminded {
            r.reminded_at_ms = Some(self.now_ms);
        }
        if self.mark_overdue {
            r.overdue_at_ms = Some(self.now_ms);
        }
        r.version += 1;
        r.updated_at_ms = self.now_ms;
    }

    /// Whether `r` may take this change.
    pub fn admits(&self, r: &Reservation) -> bool {
        self.expected_version.is_none_or(|v| v == r.version) && self.from.contains(&r.status)
    }
}

/// One event for the tenant's webhooks that want `kind`, keyed by `event_id`
/// so queueing it twice queues it once per webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookNotice {
    pub kind: String,
    pub event_id: String,
    pub payload: serde_json::Value,
}

/// What a reservation write tells people: webhook events and emails, queued
/// in the write's own transaction and only if the write is done, so a
/// committed booking always has its notices and a notice that cannot be
/// queued undoes the booking. The caller renders them for the reservation as
/// the write will leave it (its change is pinned to the version it read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notices {
    pub webhooks: Vec<WebhookNotice>,
    pub mail: Vec<NewMail>,
    /// The audit log's entry for the change (approvals and rejections), kept
    /// in the same transaction: no decision without its entry, and no entry
    /// for a decision that was refused.
    pub audit: Option<super::access::AuditEntry>,
}

impl Notices {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn extend(&mut self, other: Notices) {
        self.webhooks.extend(other.webhooks);
        self.mail.extend(other.mail);
        if other.audit.is_some() {
            self.audit = other.audit;
        }
    }
}

/// Filters of a reservation list; windows overlap `[from_ms, to_ms)`.
#[derive(Debug, Clone, Default)]
pub struct ReservationFilter {
    pub vehicle_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    /// Empty: any status.
    pub statuses: Vec<Status>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub department: Option<String>,
    pub cost_center: Option<String>,
    /// Keyset paging: rows after this (start_ms, id), in (start_ms, id) order.
    pub after: Option<(i64, Uuid)>,
    pub limit: u32,
}

/// Vehicles free for a window (turnaround buffer included).
#[derive(Debug, Clone)]
pub struct AvailabilityQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub buffer_ms: i64,
    pub vehicle_group: Option<String>,
    pub home_yard: Option<String>,
    /// Asset kind, `vehicle` unless given.
    pub kind: String,
    pub limit: u32,
}

/// A reservable asset as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservable {
    pub id: Uuid,
    pub kind: String,
    pub name: String,
    pub plate: Option<String>,
    pub vehicle_group: Option<String>,
    pub home_yard: Option<String>,
    pub retired: bool,
}

/// One approved booking a yard's kiosks honour, with one of the driver's badges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YardBooking {
    pub reservation_id: Uuid,
    pub vehicle_id: Uuid,
    pub badge_id: Uuid,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Approval of a vehicle group's bookings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// Approved as soon as booked.
    Auto,
    /// Pending until someone with `approve_reservations` approves it.
    Manager,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// The sender, `Fleet <fleet@example.com>` or a bare address.
    pub from: String,
    #[serde(default = "default_true")]
    pub starttls: bool,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("starttls", &self.starttls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn default_smtp_port() -> u16 {
    587
}
fn default_true() -> bool {
    true
}

/// A tenant's booking settings; a tenant that set none has the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReservationSettings {
    /// Kept free between two bookings of one vehicle.
    pub turnaround_minutes: u32,
    /// An approved booking not picked up this long after its start is released.
    pub no_show_minutes: u32,
    /// A reminder goes out this long before the start.
    pub reminder_minutes: u32,
    /// An active booking still out this long after its end is overdue.
    pub late_grace_minutes: u32,
    /// How far ahead a yard's snapshot carries approved bookings.
    pub snapshot_days: u32,
    /// Groups with no rule of their own (and vehicles with no group).
    pub default_approval: Approval,
    /// Approval per vehicle group (`assets.vehicle_group`).
    pub approval: BTreeMap<String, Approval>,
    pub smtp: Option<SmtpSettings>,
}

impl Default for ReservationSettings {
    fn default() -> Self {
        ReservationSettings {
            turnaround_minutes: 15,
            no_show_minutes: 30,
            reminder_minutes: 60,
            late_grace_minutes: 15,
            snapshot_days: 7,
            default_approval: Approval::Manager,
            approval: BTreeMap::new(),
            smtp: None,
        }
    }
}

impl ReservationSettings {
    pub fn buffer_ms(&self) -> i64 {
        i64::from(self.turnaround_minutes) * 60_000
    }

    pub fn approval_for(&self, group: Option<&str>) -> Approval {
        group
            .and_then(|g| self.approval.get(g).copied())
            .unwrap_or(self.default_approval)
    }
}

/// What a calendar feed is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedSubject {
    Vehicle,
    User,
}

impl FeedSubject {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedSubject::Vehicle => "vehicle",
            FeedSubject::User => "user",
        }
    }
}

#[async_trait]
pub trait ReservationStore: Send + Sync {
    /// The tenant's settings, or the defaults when none were set.
    async fn reservation_settings(&self, tenant: Uuid)
        -> Result<ReservationSettings, StorageError>;
    async fn set_reservation_settings(
        &self,
        tenant: Uuid,
        settings: &ReservationSettings,
        now_ms: i64,
    ) -> Result<(), StorageError>;

    /// The asset `id` of the tenant's catalog, if there is one.
    async fn reservable(&self, tenant: Uuid, id: Uuid) -> Result<Option<Reservable>, StorageError>;

    /// Stores `r` unless a holding reservation of the same vehicle overlaps it
    /// (buffers included), atomically with that check, and queues `notices`
    /// in the same transaction (nothing is stored if they cannot be queued).
    async fn create_reservation(
        &self,
        tenant: Uuid,
        r: &Reservation,
        notices: &Notices,
    ) -> Result<Write, StorageError>;
    async fn reservation(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Option<Reservation>, StorageError>;
    /// In (start_ms, id) order.
    async fn list_reservations(
        &self,
        tenant: Uuid,
        filter: &ReservationFilter,
    ) -> Result<Vec<Reservation>, StorageError>;
    /// Applies `change` if the reservation admits it; a change that makes it
    /// hold a window (or a vehicle) re-checks the other bookings atomically.
    /// `notices` are queued in the same transaction when the change is done.
    async fn update_reservation(
        &self,
        tenant: Uuid,
        id: Uuid,
        change: &Change,
        notices: &Notices,
    ) -> Result<Write, StorageError>;

    /// Assets of the query's kind, not retired, matching its filters, with no
    /// holding reservation in the window (buffers included), by name.
    async fn available_vehicles(
        &self,
        tenant: Uuid,
        q: &AvailabilityQuery,
    ) -> Result<Vec<Reservable>, StorageError>;

    /// Approved bookings of vehicles whose home yard is `yard` (no home yard
    /// counts as `default`) that overlap `[from_ms, to_ms)`, once per badge of
    /// the driver.
    async fn yard_bookings(
        &self,
        tenant: Uuid,
        yard: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<YardBooking>, StorageError>;

    /// Replaces the subject's feed token hash (a rotation invalidates the old one).
    async fn set_calendar_token(
        &self,
        tenant: Uuid,
        subject: FeedSubject,
        id: Uuid,
        token_sha256: [u8; 32],
        now_ms: i64,
    ) -> Result<(), StorageError>;
    async fn calendar_token(
        &self,
        tenant: Uuid,
        subject: FeedSubject,
        id: Uuid,
    ) -> Result<Option<[u8; 32]>, StorageError>;
}
