//! Vehicle reservations (`/api/v1/reservations…`): availability, booking,
//! approval and rejection, modification, cancellation and lists; the tenant's
//! booking settings; and private iCalendar feeds per vehicle and per driver
//! (`/api/v1/calendar/…`).
//!
//! Drivers (callers without `approve_reservations`) book for themselves and
//! see only their own bookings; dispatchers and managers see and book for all.

use super::auth::{audit_entry, Caller, Capability};
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use super::openapi::{error_response, json_body, json_response, schema_ref, uuid_param};
use crate::reservations::ical::{self, FeedEvent};
use crate::reservations::notify::{self, Notice};
use crate::reservations::rules;
use crate::storage::reservations::{
    AvailabilityQuery, Blocking, Change, FeedSubject, Notices, Reservable, Reservation,
    ReservationFilter, ReservationSettings, Status, Write,
};
use crate::storage::{now_ms, rfc3339_ms, StorageError};
use crate::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

const MAX_TEXT: usize = 200;
const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 100;
/// A feed shows bookings from this long ago onwards.
const FEED_PAST_MS: i64 = 30 * 24 * 3_600_000;
const FEED_MAX: u32 = 2000;

pub fn reservation_json(r: &Reservation) -> Value {
    json!({
        "id": r.id,
        "vehicle_id": r.vehicle_id,
        "user_id": r.user_id,
        "status": r.status,
        "start_ms": r.start_ms,
        "end_ms": r.end_ms,
        "start": rfc3339_ms(r.start_ms),
        "end": rfc3339_ms(r.end_ms),
        "buffer_ms": r.buffer_ms,
        "purpose": r.purpose,
        "department": r.department,
        "cost_center": r.cost_center,
        "reason": r.reason,
        "created_by": r.created_by,
        "approved_by": r.approved_by,
        "version": r.version,
        "created_at_ms": r.created_at_ms,
        "updated_at_ms": r.updated_at_ms,
        "reminded_at_ms": r.reminded_at_ms,
        "overdue_at_ms": r.overdue_at_ms,
    })
}

fn reservable_json(v: &Reservable) -> Value {
    json!({
        "id": v.id,
        "kind": v.kind,
        "name": v.name,
        "plate": v.plate,
        "vehicle_group": v.vehicle_group,
        "home_yard": v.home_yard,
    })
}

fn sees_all(caller: &Caller) -> bool {
    caller.can(Capability::ApproveReservations)
}

/// 404 for a booking the caller may not see, as for one that does not exist.
fn visible(caller: &Caller, r: &Reservation) -> bool {
    sees_all(caller) || caller.user_id == Some(r.user_id)
}

fn not_found() -> ApiError {
    ApiError::not_found("reservation_not_found", "no such reservation")
}

fn text(field: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v.map(|s| s.trim().to_owned()) {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s)
            if s.chars().count() > MAX_TEXT || s.chars().any(|c| c.is_control() && c != '\n') =>
        {
            Err(ApiError::bad_request(
                "bad_text",
                format!("{field} must be at most {MAX_TEXT} printable characters"),
            ))
        }
        Some(s) => Ok(Some(s)),
    }
}

fn refused(r: rules::Refused) -> ApiError {
    ApiError::bad_request(r.code, r.message)
}

/// 409 `reservation_conflict` naming the blocking window; its booking's id and
/// driver only for callers who see all bookings.
fn conflict(caller: &Caller, b: &Blocking) -> ApiError {
    let mut msg = format!(
        "the vehicle is booked from {} to {} and kept free until {} for turnaround",
        rfc3339_ms(b.start_ms),
        rfc3339_ms(b.end_ms),
        rfc3339_ms(b.end_ms + b.buffer_ms)
    );
    if sees_all(caller) && !b.reservation_id.is_nil() {
        msg.push_str(&format!(" (reservation {})", b.reservation_id));
    }
    ApiError::new(StatusCode::CONFLICT, "reservation_conflict", msg)
}

fn stale(r: &Reservation) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "reservation_changed",
        format!(
            "the reservation is {} at version {}; reload it and try again",
            r.status, r.version
        ),
    )
}

async fn vehicle_for(state: &AppState, tenant: Uuid, id: Uuid) -> Result<Reservable, ApiError> {
    match state.storage.reservable(tenant, id).await? {
        Some(v) if v.kind == "vehicle" && !v.retired => Ok(v),
        Some(v) if v.retired => Err(ApiError::bad_request(
            "vehicle_retired",
            "this vehicle is retired and cannot be booked",
        )),
        Some(_) => Err(ApiError::bad_request(
            "not_a_vehicle",
            "only assets of kind vehicle can be booked",
        )),
        None => Err(ApiError::not_found("vehicle_not_found", "no such vehicle")),
    }
}

/// The outbox rows of `notices` about `r` as the write will leave it: for the
/// tenant's webhooks and, when SMTP is configured and the driver is enabled,
/// an email to the driver. The write queues them in its own transaction, so
/// a read failing here fails the request before anything is stored.
pub async fn notices_for(
    state: &AppState,
    tenant: Uuid,
    notices: &[Notice],
    r: &Reservation,
) -> Result<Notices, StorageError> {
    let mut out = Notices::none();
    if notices.is_empty() {
        return Ok(out);
    }
    let vehicle = match state.storage.reservable(tenant, r.vehicle_id).await? {
        Some(v) => v.name,
        None => r.vehicle_id.to_string(),
    };
    let to = match state.storage.reservation_settings(tenant).await?.smtp {
        None => None,
        Some(_) => match state.storage.user(tenant, r.user_id).await? {
            Some(u) if !u.disabled => Some(notify::Recipient {
                name: u.name,
                email: u.email,
            }),
            _ => None,
        },
    };
    for n in notices {
        out.extend(notify::notices(tenant, *n, r, &vehicle, to.as_ref()));
    }
    Ok(out)
}

/// `r` as `change` leaves it, for rendering its notices before the write:
/// the change is pinned to `r`'s version, so the write leaves exactly this.
fn after(r: &Reservation, change: &mut Change) -> Reservation {
    change.expected_version = Some(r.version);
    let mut next = r.clone();
    change.apply(&mut next);
    next
}

// ---- availability ----------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityRequest {
    from_ms: i64,
    to_ms: i64,
    #[serde(default)]
    vehicle_group: Option<String>,
    #[serde(default)]
    home_yard: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

pub async fn availability(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<AvailabilityRequest>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    caller.require_feature("reservations")?;
    let ApiJson(req) = body?;
    rules::check_query_window(req.from_ms, req.to_ms).map_err(refused)?;
    let settings = state.storage.reservation_settings(caller.tenant).await?;
    let kind = req.kind.unwrap_or_else(|| "vehicle".into());
    if !matches!(kind.as_str(), "vehicle" | "trailer" | "equipment" | "key") {
        return Err(ApiError::bad_request(
            "bad_kind",
            "kind must be vehicle, trailer, equipment or key",
        ));
    }
    let q = AvailabilityQuery {
        from_ms: req.from_ms,
        to_ms: req.to_ms,
        buffer_ms: settings.buffer_ms(),
        vehicle_group: text("vehicle_group", req.vehicle_group)?,
        home_yard: text("home_yard", req.home_yard)?,
        kind,
        limit: req.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE),
    };
    let free = state.storage.available_vehicles(caller.tenant, &q).await?;
    Ok(Json(json!({
        "from_ms": q.from_ms,
        "to_ms": q.to_ms,
        "turnaround_minutes": settings.turnaround_minutes,
        "vehicles": free.iter().map(reservable_json).collect::<Vec<_>>(),
    })))
}

// ---- create, get, list -----------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateReservation {
    vehicle_id: Uuid,
    /// The driver; drivers may leave it out (themselves) and may name only themselves.
    #[serde(default)]
    user_id: Option<Uuid>,
    start_ms: i64,
    end_ms: i64,
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    cost_center: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<CreateReservation>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Capability::ManageReservations)?;
    caller.require_feature("reservations")?;
    let ApiJson(req) = body?;
    let now = now_ms();
    rules::check_window(req.start_ms, req.end_ms, now).map_err(refused)?;
    let user_id = match (req.user_id, caller.user_id) {
        (Some(u), mine) if sees_all(&caller) || mine == Some(u) => u,
        (Some(_), _) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "drivers book only for themselves",
            ))
        }
        (None, Some(me)) => me,
        (None, None) => {
            return Err(ApiError::bad_request(
                "user_required",
                "name the driver as user_id (this API key belongs to no user)",
            ))
        }
    };
    let purpose = text("purpose", req.purpose)?;
    let department = text("department", req.department)?;
    let cost_center = text("cost_center", req.cost_center)?;
    let vehicle = vehicle_for(&state, caller.tenant, req.vehicle_id).await?;
    match state.storage.user(caller.tenant, user_id).await? {
        Some(u) if !u.disabled => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "user_disabled",
                "the driver's user is disabled",
            ))
        }
        None => return Err(ApiError::not_found("user_not_found", "no such user")),
    }
    let settings = state.storage.reservation_settings(caller.tenant).await?;
    let status = rules::initial_status(&settings, vehicle.vehicle_group.as_deref());
    let r = Reservation {
        id: Uuid::new_v4(),
        vehicle_id: vehicle.id,
        user_id,
        start_ms: req.start_ms,
        end_ms: req.end_ms,
        buffer_ms: settings.buffer_ms(),
        status,
        purpose,
        department,
        cost_center,
        reason: None,
        created_by: Some(caller.key_id),
        approved_by: None,
        version: 1,
        created_at_ms: now,
        updated_at_ms: now,
        reminded_at_ms: None,
        overdue_at_ms: None,
    };
    let said: &[Notice] = if r.status == Status::Approved {
        &[Notice::Created, Notice::Approved]
    } else {
        &[Notice::Created]
    };
    let notices = notices_for(&state, caller.tenant, said, &r).await?;
    match state
        .storage
        .create_reservation(caller.tenant, &r, &notices)
        .await?
    {
        Write::Done(r) => Ok((StatusCode::CREATED, Json(reservation_json(&r)))),
        Write::Conflict(b) => Err(conflict(&caller, &b)),
        Write::Stale(_) | Write::NotFound => {
            Err(StorageError::Backend("a new reservation came back stale or missing".into()).into())
        }
    }
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageReservations)?;
    let r = state
        .storage
        .reservation(caller.tenant, id)
        .await?
        .filter(|r| visible(&caller, r))
        .ok_or_else(not_found)?;
    Ok(Json(reservation_json(&r)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    vehicle_id: Option<Uuid>,
    user_id: Option<Uuid>,
    /// Comma-separated statuses.
    status: Option<String>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    department: Option<String>,
    cost_center: Option<String>,
    /// The `next` of the previous page.
    after: Option<String>,
    limit: Option<u32>,
}

fn parse_cursor(s: &str) -> Option<(i64, Uuid)> {
    let (ms, id) = s.split_once('_')?;
    Some((ms.parse().ok()?, id.parse().ok()?))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<ApiQuery<ListQuery>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageReservations)?;
    let ApiQuery(q) = query?;
    let mut statuses = Vec::new();
    for s in q.status.iter().flat_map(|s| s.split(',')).map(str::trim) {
        if s.is_empty() {
            continue;
        }
        statuses.push(
            Status::parse(s).ok_or_else(|| {
                ApiError::bad_request("bad_query", format!("unknown status {s:?}"))
            })?,
        );
    }
    let after = match q.after.as_deref() {
        None => None,
        Some(a) => Some(parse_cursor(a).ok_or_else(|| {
            ApiError::bad_request("bad_query", "after is not a cursor from `next`")
        })?),
    };
    let user_id = if sees_all(&caller) {
        q.user_id
    } else {
        match caller.user_id {
            // Drivers see their own: asking for someone else's gives nothing.
            Some(me) if q.user_id.is_none_or(|u| u == me) => Some(me),
            _ => return Ok(Json(json!({ "reservations": [], "next": null }))),
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let filter = ReservationFilter {
        vehicle_id: q.vehicle_id,
        user_id,
        statuses,
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        department: q.department,
        cost_center: q.cost_center,
        after,
        limit,
    };
    let rows = state
        .storage
        .list_reservations(caller.tenant, &filter)
        .await?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| format!("{}_{}", r.start_ms, r.id)))
        .flatten();
    Ok(Json(json!({
        "reservations": rows.iter().map(reservation_json).collect::<Vec<_>>(),
        "next": next,
    })))
}

// ---- approve, reject, cancel, modify ---------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// The version the caller saw; the change is refused if it moved on.
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
}

async fn decide(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    change: Change,
    notice: Notice,
    audit: Option<&str>,
) -> Result<Json<Value>, ApiError> {
    // The notices are rendered for the version read, so the write is pinned
    // to it; a caller who named no version has it re-read if it moved on.
    let mut tries = 0;
    let r = loop {
        tries += 1;
        let Some(current) = state
            .storage
            .reservation(caller.tenant, id)
            .await?
            .filter(|r| visible(caller, r))
        else {
            return Err(not_found());
        };
        if !change.admits(&current) {
            return Err(stale(&current));
        }
        let mut pinned = change.clone();
        let next = after(&current, &mut pinned);
        let mut notices = notices_for(state, caller.tenant, &[notice], &next).await?;
        notices.audit = audit.map(|action| {
            audit_entry(
                caller,
                action,
                format!("reservation:{id}"),
                json!({ "vehicle_id": next.vehicle_id, "user_id": next.user_id, "reason": next.reason, "version": next.version }),
            )
        });
        match state
            .storage
            .update_reservation(caller.tenant, id, &pinned, &notices)
            .await?
        {
            Write::Done(r) => break r,
            Write::Stale(r) if change.admits(&r) && tries < 3 => continue,
            Write::Stale(r) => return Err(stale(&r)),
            Write::Conflict(b) => return Err(conflict(caller, &b)),
            Write::NotFound => return Err(not_found()),
        }
    };
    Ok(Json(reservation_json(&r)))
}

fn decision(body: Result<ApiJson<Decision>, ApiError>) -> Result<Decision, ApiError> {
    let ApiJson(d) = body?;
    Ok(d)
}

pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    body: Result<ApiJson<Decision>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ApproveReservations)?;
    let d = decision(body)?;
    if d.reason.is_some() {
        return Err(ApiError::bad_request(
            "bad_json",
            "an approval takes no reason",
        ));
    }
    let mut c = Change::new(now_ms());
    c.expected_version = d.version;
    c.from = vec![Status::Pending];
    c.to = Some(Status::Approved);
    c.approved_by = Some(caller.key_id);
    decide(
        &state,
        &caller,
        id,
        c,
        Notice::Approved,
        Some("reservation.approve"),
    )
    .await
}

pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    body: Result<ApiJson<Decision>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ApproveReservations)?;
    let d = decision(body)?;
    let reason = text("reason", d.reason)?
        .ok_or_else(|| ApiError::bad_request("reason_required", "a rejection needs a reason"))?;
    let mut c = Change::new(now_ms());
    c.expected_version = d.version;
    c.from = vec![Status::Pending, Status::Approved];
    c.to = Some(Status::Rejected);
    c.reason = Some(reason);
    c.approved_by = Some(caller.key_id);
    decide(
        &state,
        &caller,
        id,
        c,
        Notice::Rejected,
        Some("reservation.reject"),
    )
    .await
}

pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    body: Result<ApiJson<Decision>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageReservations)?;
    let d = decision(body)?;
    let mut c = Change::new(now_ms());
    c.expected_version = d.version;
    c.from = vec![Status::Pending, Status::Approved];
    c.to = Some(Status::Cancelled);
    c.reason = text("reason", d.reason)?;
    decide(
        &state,
        &caller,
        id,
        c,
        Notice::Cancelled,
        Some("reservation.cancel"),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modify {
    version: i64,
    #[serde(default)]
    vehicle_id: Option<Uuid>,
    #[serde(default)]
    start_ms: Option<i64>,
    #[serde(default)]
    end_ms: Option<i64>,
    #[serde(default, with = "double_option")]
    purpose: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    department: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    cost_center: Option<Option<String>>,
}

/// `absent` → `None`, `null` → `Some(None)`, a value → `Some(Some(v))`.
mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

pub async fn modify(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    body: Result<ApiJson<Modify>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageReservations)?;
    let ApiJson(m) = body?;
    let now = now_ms();
    let current = state
        .storage
        .reservation(caller.tenant, id)
        .await?
        .filter(|r| visible(&caller, r))
        .ok_or_else(not_found)?;
    let start = m.start_ms.unwrap_or(current.start_ms);
    let end = m.end_ms.unwrap_or(current.end_ms);
    let moved = start != current.start_ms || end != current.end_ms;
    if moved {
        rules::check_window(start, end, now).map_err(refused)?;
    }
    let settings = state.storage.reservation_settings(caller.tenant).await?;
    let mut c = Change::new(now);
    c.expected_version = Some(m.version);
    c.from = vec![Status::Pending, Status::Approved];
    if moved || m.vehicle_id.is_some_and(|v| v != current.vehicle_id) {
        c.window = Some((start, end, settings.buffer_ms()));
    }
    if let Some(v) = m.vehicle_id.filter(|v| *v != current.vehicle_id) {
        let vehicle = vehicle_for(&state, caller.tenant, v).await?;
        c.vehicle_id = Some(v);
        // A driver's change to an approved booking goes back for approval
        // unless the new vehicle's group approves by itself.
        if !sees_all(&caller)
            && rules::initial_status(&settings, vehicle.vehicle_group.as_deref()) == Status::Pending
        {
            c.to = Some(Status::Pending);
        }
    } else if moved && !sees_all(&caller) && current.status == Status::Approved {
        let vehicle = vehicle_for(&state, caller.tenant, current.vehicle_id).await?;
        if rules::initial_status(&settings, vehicle.vehicle_group.as_deref()) == Status::Pending {
            c.to = Some(Status::Pending);
        }
    }
    c.purpose = m.purpose.map(|p| text("purpose", p)).transpose()?;
    c.department = m.department.map(|p| text("department", p)).transpose()?;
    c.cost_center = m.cost_center.map(|p| text("cost_center", p)).transpose()?;
    if !c.admits(&current) {
        return Err(stale(&current));
    }
    let next = after(&current, &mut c);
    let notices = notices_for(&state, caller.tenant, &[Notice::Modified], &next).await?;
    match state
        .storage
        .update_reservation(caller.tenant, id, &c, &notices)
        .await?
    {
        Write::Done(r) => Ok(Json(reservation_json(&r))),
        Write::Stale(r) => Err(stale(&r)),
        Write::Conflict(b) => Err(conflict(&caller, &b)),
        Write::NotFound => Err(not_found()),
    }
}

// ---- settings --------------------------------------------------------------

fn settings_json(s: &ReservationSettings) -> Value {
    let mut v = serde_json::to_value(s).expect("settings serialise");
    if let Some(smtp) = v.get_mut("smtp").and_then(Value::as_object_mut) {
        let set = smtp.remove("password").is_some();
        smtp.insert("password_set".into(), json!(set));
    }
    v
}

pub async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageConfig)?;
    let s = state.storage.reservation_settings(caller.tenant).await?;
    Ok(Json(settings_json(&s)))
}

pub async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<ReservationSettings>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageConfig)?;
    let ApiJson(mut s) = body?;
    rules::check_settings(&s).map_err(refused)?;
    // Leaving the password out keeps the stored one for the same server and user.
    if let Some(smtp) = s.smtp.as_mut().filter(|m| m.password.is_none()) {
        let old = state.storage.reservation_settings(caller.tenant).await?;
        if let Some(prev) = old
            .smtp
            .filter(|p| p.host == smtp.host && p.username == smtp.username)
        {
            smtp.password = prev.password;
        }
    }
    state
        .storage
        .set_reservation_settings(caller.tenant, &s, now_ms())
        .await?;
    state
        .audit(
            &caller,
            "reservation_settings.update",
            "reservation_settings",
            json!({ "turnaround_minutes": s.turnaround_minutes, "approval": s.approval, "default_approval": s.default_approval, "smtp": s.smtp.as_ref().map(|m| &m.host) }),
        )
        .await?;
    Ok(Json(settings_json(&s)))
}

// ---- calendar feeds --------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedTokenRequest {
    subject: FeedSubject,
    id: Uuid,
}

/// A feed token names its tenant (so the feed URL needs nothing else) and
/// carries 256 random bits; the server keeps only its SHA-256.
fn mint_feed_token(tenant: Uuid) -> String {
    crate::storage::random_secret(&format!("cal_{}_", tenant.simple()))
}

fn feed_token_tenant(token: &str) -> Option<Uuid> {
    let rest = token.strip_prefix("cal_")?;
    let (tenant, _) = rest.split_once('_')?;
    Uuid::try_parse(tenant).ok()
}

async fn check_subject(
    state: &AppState,
    caller: &Caller,
    subject: FeedSubject,
    id: Uuid,
) -> Result<String, ApiError> {
    match subject {
        FeedSubject::Vehicle => Ok(vehicle_name(state, caller.tenant, id)
            .await?
            .ok_or_else(|| ApiError::not_found("vehicle_not_found", "no such vehicle"))?),
        FeedSubject::User => {
            if !sees_all(caller) && caller.user_id != Some(id) {
                return Err(ApiError::not_found("user_not_found", "no such user"));
            }
            Ok(state
                .storage
                .user(caller.tenant, id)
                .await?
                .ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?
                .name)
        }
    }
}

async fn vehicle_name(
    state: &AppState,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<String>, ApiError> {
    Ok(state
        .storage
        .reservable(tenant, id)
        .await?
        .filter(|v| v.kind == "vehicle")
        .map(|v| v.name))
}

pub async fn create_feed_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<FeedTokenRequest>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Capability::ReadFleet)?;
    let ApiJson(req) = body?;
    check_subject(&state, &caller, req.subject, req.id).await?;
    let token = mint_feed_token(caller.tenant);
    state
        .storage
        .set_calendar_token(
            caller.tenant,
            req.subject,
            req.id,
            crate::storage::sha256(token.as_bytes()),
            now_ms(),
        )
        .await?;
    state
        .audit(
            &caller,
            "calendar_token.rotate",
            format!("{}:{}", req.subject.as_str(), req.id),
            json!({}),
        )
        .await?;
    let path = format!(
        "/api/v1/calendar/{}s/{}.ics?token={token}",
        req.subject.as_str(),
        req.id
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({ "subject": req.subject, "id": req.id, "token": token, "path": path })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    token: Option<String>,
}

fn feed_id(file: &str) -> Result<Uuid, ApiError> {
    let raw = file.strip_suffix(".ics").unwrap_or(file);
    Uuid::try_parse(raw)
        .map_err(|_| ApiError::bad_request("bad_id", format!("{file:?} is not ID.ics")))
}

/// Who may read a feed: the holder of its token, or a tenant caller.
async fn feed_access(
    state: &AppState,
    parts: &mut axum::http::request::Parts,
    token: Option<&str>,
    subject: FeedSubject,
    id: Uuid,
) -> Result<Uuid, ApiError> {
    if let Some(token) = token {
        let bad = || {
            ApiError::forbidden(
                "bad_calendar_token",
                "the calendar token is not valid for this feed",
            )
        };
        let tenant = feed_token_tenant(token).ok_or_else(bad)?;
        let stored = state
            .storage
            .calendar_token(tenant, subject, id)
            .await?
            .ok_or_else(bad)?;
        if !super::auth::constant_time_eq(&stored, &crate::storage::sha256(token.as_bytes())) {
            return Err(bad());
        }
        return Ok(tenant);
    }
    let caller = Caller::from_request_parts(parts, state).await?;
    caller.require(Capability::ReadFleet)?;
    if subject == FeedSubject::User && !sees_all(&caller) && caller.user_id != Some(id) {
        return Err(ApiError::not_found("user_not_found", "no such user"));
    }
    Ok(caller.tenant)
}

async fn feed(
    state: AppState,
    mut parts: axum::http::request::Parts,
    subject: FeedSubject,
    file: String,
) -> Result<Response, ApiError> {
    let ApiQuery(q) = ApiQuery::<FeedQuery>::from_request_parts(&mut parts, &state).await?;
    let id = feed_id(&file)?;
    let tenant = feed_access(&state, &mut parts, q.token.as_deref(), subject, id).await?;
    let now = now_ms();
    let (name, filter) = match subject {
        FeedSubject::Vehicle => (
            vehicle_name(&state, tenant, id)
                .await?
                .ok_or_else(|| ApiError::not_found("vehicle_not_found", "no such vehicle"))?,
            ReservationFilter {
                vehicle_id: Some(id),
                ..Default::default()
            },
        ),
        FeedSubject::User => (
            state
                .storage
                .user(tenant, id)
                .await?
                .ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?
                .name,
            ReservationFilter {
                user_id: Some(id),
                ..Default::default()
            },
        ),
    };
    let rows = state
        .storage
        .list_reservations(
            tenant,
            &ReservationFilter {
                from_ms: Some(now - FEED_PAST_MS),
                limit: FEED_MAX,
                ..filter
            },
        )
        .await?;
    let mut names: std::collections::HashMap<Uuid, String> = Default::default();
    let mut events_text = Vec::with_capacity(rows.len());
    for r in &rows {
        let (other, is_vehicle) = match subject {
            FeedSubject::Vehicle => (r.user_id, false),
            FeedSubject::User => (r.vehicle_id, true),
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(other) {
            let n = if is_vehicle {
                vehicle_name(&state, tenant, other).await?
            } else {
                state.storage.user(tenant, other).await?.map(|u| u.name)
            };
            slot.insert(n.unwrap_or_else(|| other.to_string()));
        }
        let other_name = &names[&other];
        let (vehicle, driver) = match subject {
            FeedSubject::Vehicle => (name.as_str(), other_name.as_str()),
            FeedSubject::User => (other_name.as_str(), name.as_str()),
        };
        events_text.push(ical::describe(r, vehicle, driver));
    }
    let events: Vec<FeedEvent<'_>> = rows
        .iter()
        .zip(events_text)
        .map(|(r, (summary, description))| FeedEvent {
            reservation: r,
            summary,
            description,
        })
        .collect();
    let body = ical::calendar(&name, &events, now);
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=60"),
        ],
        body,
    )
        .into_response())
}

pub async fn vehicle_feed(
    State(state): State<AppState>,
    axum::extract::Path(file): axum::extract::Path<String>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    feed(state, parts, FeedSubject::Vehicle, file).await
}

pub async fn user_feed(
    State(state): State<AppState>,
    axum::extract::Path(file): axum::extract::Path<String>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    feed(state, parts, FeedSubject::User, file).await
}

// ---- OpenAPI ---------------------------------------------------------------

pub fn openapi() -> Value {
    let id = uuid_param("id");
    let ok = |s: &str| json_response("ok", schema_ref(s));
    let decision_body = json_body(schema_ref("ReservationDecision"));
    let feed_params = json!([
        { "name": "file", "in": "path", "required": true, "description": "`{id}.ics`: the vehicle's (asset) or user's id", "schema": { "type": "string", "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(\\.ics)?$" } },
        { "name": "token", "in": "query", "required": false, "description": "the feed's private token (from POST /api/v1/calendar/tokens); without it, an API key with read_fleet", "schema": { "type": "string" } }
    ]);
    let ics = json!({ "description": "an iCalendar (RFC 5545) feed", "content": { "text/calendar": { "schema": { "type": "string" } } } });
    let ts = json!({ "type": "integer", "description": "epoch milliseconds" });
    let window_ts = json!({ "type": "integer", "minimum": 0, "maximum": rules::MAX_QUERY_MS, "description": "epoch milliseconds, 1970 to the year 9999" });
    let opt_text = super::openapi::nullable(super::openapi::printable_text(0, MAX_TEXT, true));
    json!({
        "paths": {
            "/api/v1/reservations/availability": {
                "post": {
                    "operationId": "reservationAvailability",
                    "summary": "Vehicles free for a window (turnaround buffer included), by name",
                    "x-capability": "read_fleet",
                    "tags": ["reservations"],
                    "requestBody": json_body(schema_ref("AvailabilityRequest")),
                    "responses": {
                        "200": ok("Availability"),
                        "400": error_response("bad_json, bad_window, bad_kind, bad_text")
                    }
                }
            },
            "/api/v1/reservations": {
                "post": {
                    "operationId": "createReservation",
                    "summary": "Book a vehicle: pending, or approved at once when its group's rule says auto",
                    "x-capability": "manage_reservations",
                    "tags": ["reservations"],
                    "requestBody": json_body(schema_ref("CreateReservation")),
                    "responses": {
                        "201": json_response("booked", schema_ref("Reservation")),
                        "400": error_response("bad_json, bad_window, bad_text, user_required, user_disabled, not_a_vehicle, vehicle_retired"),
                        "404": error_response("vehicle_not_found, user_not_found"),
                        "409": error_response("reservation_conflict: the message names the blocking window")
                    }
                },
                "get": {
                    "operationId": "listReservations",
                    "summary": "Bookings in start order, filtered and paged; drivers see only their own",
                    "x-capability": "manage_reservations",
                    "tags": ["reservations"],
                    "parameters": [
                        { "name": "vehicle_id", "in": "query", "schema": { "type": "string", "format": "uuid" } },
                        { "name": "user_id", "in": "query", "schema": { "type": "string", "format": "uuid" } },
                        { "name": "status", "in": "query", "description": "comma-separated statuses", "schema": { "type": "string" } },
                        { "name": "from_ms", "in": "query", "description": "bookings ending after", "schema": { "type": "integer" } },
                        { "name": "to_ms", "in": "query", "description": "bookings starting before", "schema": { "type": "integer" } },
                        { "name": "department", "in": "query", "schema": { "type": "string" } },
                        { "name": "cost_center", "in": "query", "schema": { "type": "string" } },
                        { "name": "after", "in": "query", "description": "`next` of the previous page", "schema": { "type": "string" } },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE } }
                    ],
                    "responses": { "200": ok("ReservationList"), "400": error_response("bad_query") }
                }
            },
            "/api/v1/reservations/{id}": {
                "get": {
                    "operationId": "getReservation",
                    "summary": "One booking",
                    "x-capability": "manage_reservations",
                    "tags": ["reservations"],
                    "parameters": [id],
                    "responses": { "200": ok("Reservation"), "404": error_response("reservation_not_found") }
                },
                "patch": {
                    "operationId": "modifyReservation",
                    "summary": "Change a pending or approved booking at the version read; a new window or vehicle is re-checked",
                    "x-capability": "manage_reservations",
                    "tags": ["reservations"],
                    "parameters": [id],
                    "requestBody": json_body(schema_ref("ModifyReservation")),
                    "responses": {
                        "200": ok("Reservation"),
                        "400": error_response("bad_json, bad_window, bad_text, not_a_vehicle, vehicle_retired"),
                        "404": error_response("reservation_not_found, vehicle_not_found"),
                        "409": error_response("reservation_conflict, reservation_changed")
                    }
                }
            },
            "/api/v1/reservations/{id}/approve": {
                "post": {
                    "operationId": "approveReservation",
                    "summary": "Approve a pending booking (audited)",
                    "x-capability": "approve_reservations",
                    "tags": ["reservations"],
                    "parameters": [id],
                    "requestBody": json_body(json!({ "type": "object", "additionalProperties": false, "properties": { "version": { "type": "integer", "description": "refuse if the booking moved past this version" } } })),
                    "responses": {
                        "200": ok("Reservation"),
                        "400": error_response("bad_json: an approval takes no reason"),
                        "404": error_response("reservation_not_found"),
                        "409": error_response("reservation_changed")
                    }
                }
            },
            "/api/v1/reservations/{id}/reject": {
                "post": {
                    "operationId": "rejectReservation",
                    "summary": "Reject a pending or approved booking with a reason (audited)",
                    "x-capability": "approve_reservations",
                    "tags": ["reservations"],
                    "parameters": [id],
                    "requestBody": json_body(json!({ "allOf": [schema_ref("ReservationDecision"), { "required": ["reason"], "properties": { "reason": super::openapi::printable_text(1, MAX_TEXT, true) } }] })),
                    "responses": {
                        "200": ok("Reservation"),
                        "400": error_response("bad_json, reason_required, bad_text"),
                        "404": error_response("reservation_not_found"),
                        "409": error_response("reservation_changed")
                    }
                }
            },
            "/api/v1/reservations/{id}/cancel": {
                "post": {
                    "operationId": "cancelReservation",
                    "summary": "Cancel a pending or approved booking; its window is free again",
                    "x-capability": "manage_reservations",
                    "tags": ["reservations"],
                    "parameters": [id],
                    "requestBody": decision_body,
                    "responses": {
                        "200": ok("Reservation"),
                        "400": error_response("bad_json, bad_text"),
                        "404": error_response("reservation_not_found"),
                        "409": error_response("reservation_changed")
                    }
                }
            },
            "/api/v1/reservation-settings": {
                "get": {
                    "operationId": "getReservationSettings",
                    "summary": "Turnaround buffer, approval per vehicle group, no-show, reminder and late-return timers, SMTP",
                    "x-capability": "manage_config",
                    "tags": ["reservations"],
                    "responses": { "200": ok("ReservationSettings") }
                },
                "put": {
                    "operationId": "setReservationSettings",
                    "summary": "Replace the settings (audited); an SMTP password left out is kept",
                    "x-capability": "manage_config",
                    "tags": ["reservations"],
                    "requestBody": json_body(schema_ref("ReservationSettings")),
                    "responses": { "200": ok("ReservationSettings"), "400": error_response("bad_json, bad_settings") }
                }
            },
            "/api/v1/calendar/tokens": {
                "post": {
                    "operationId": "rotateCalendarToken",
                    "summary": "Make (or replace) the private feed token of a vehicle or user; the old one stops working",
                    "x-capability": "read_fleet",
                    "tags": ["reservations"],
                    "requestBody": json_body(schema_ref("CalendarTokenRequest")),
                    "responses": {
                        "201": ok("CalendarToken"),
                        "400": error_response("bad_json"),
                        "404": error_response("vehicle_not_found, user_not_found")
                    }
                }
            },
            "/api/v1/calendar/vehicles/{file}": {
                "get": {
                    "operationId": "vehicleCalendar",
                    "summary": "A vehicle's bookings as iCalendar, for Outlook or Google to subscribe to",
                    "x-capability": "read_fleet",
                    "tags": ["reservations"],
                    "parameters": feed_params,
                    "responses": { "200": ics, "400": error_response("bad_id, bad_query"), "403": error_response("bad_calendar_token"), "404": error_response("vehicle_not_found") }
                }
            },
            "/api/v1/calendar/users/{file}": {
                "get": {
                    "operationId": "userCalendar",
                    "summary": "A driver's bookings as iCalendar",
                    "x-capability": "read_fleet",
                    "tags": ["reservations"],
                    "parameters": feed_params,
                    "responses": { "200": ics, "400": error_response("bad_id, bad_query"), "403": error_response("bad_calendar_token"), "404": error_response("user_not_found") }
                }
            }
        },
        "components": { "schemas": {
            "ReservationStatus": { "type": "string", "enum": Status::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>() },
            "Reservation": {
                "type": "object",
                "required": ["id", "vehicle_id", "user_id", "status", "start_ms", "end_ms", "start", "end", "buffer_ms", "version", "created_at_ms", "updated_at_ms"],
                "properties": {
                    "id": { "type": "string", "format": "uuid" },
                    "vehicle_id": { "type": "string", "format": "uuid", "description": "an asset of kind vehicle" },
                    "user_id": { "type": "string", "format": "uuid", "description": "the driver" },
                    "status": schema_ref("ReservationStatus"),
                    "start_ms": ts, "end_ms": ts,
                    "start": { "type": "string", "format": "date-time" },
                    "end": { "type": "string", "format": "date-time" },
                    "buffer_ms": { "type": "integer", "description": "turnaround kept free after the end" },
                    "purpose": opt_text, "department": opt_text, "cost_center": opt_text,
                    "reason": { "type": ["string", "null"], "description": "why it was rejected, cancelled or released" },
                    "created_by": { "type": ["string", "null"], "format": "uuid", "description": "API key" },
                    "approved_by": { "type": ["string", "null"], "format": "uuid", "description": "API key that approved or rejected" },
                    "version": { "type": "integer" },
                    "created_at_ms": ts, "updated_at_ms": ts,
                    "reminded_at_ms": { "type": ["integer", "null"] },
                    "overdue_at_ms": { "type": ["integer", "null"] }
                }
            },
            "ReservationList": {
                "type": "object",
                "required": ["reservations", "next"],
                "properties": {
                    "reservations": { "type": "array", "items": schema_ref("Reservation") },
                    "next": { "type": ["string", "null"], "description": "pass as `after` for the next page" }
                }
            },
            "CreateReservation": {
                "type": "object",
                "additionalProperties": false,
                "required": ["vehicle_id", "start_ms", "end_ms"],
                "description": "end_ms after start_ms and at most 31 days later; start_ms at most 5 minutes in the past and at most two years ahead",
                "properties": {
                    "vehicle_id": { "type": "string", "format": "uuid" },
                    "user_id": { "type": "string", "format": "uuid", "description": "the driver; drivers' own keys may leave it out" },
                    "start_ms": ts, "end_ms": ts,
                    "purpose": opt_text, "department": opt_text, "cost_center": opt_text
                }
            },
            "ModifyReservation": {
                "type": "object",
                "additionalProperties": false,
                "required": ["version"],
                "properties": {
                    "version": { "type": "integer" },
                    "vehicle_id": { "type": "string", "format": "uuid" },
                    "start_ms": ts, "end_ms": ts,
                    "purpose": opt_text, "department": opt_text, "cost_center": opt_text
                }
            },
            "ReservationDecision": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "version": { "type": "integer", "description": "refuse if the booking moved past this version" },
                    "reason": opt_text
                }
            },
            "AvailabilityRequest": {
                "type": "object",
                "additionalProperties": false,
                "required": ["from_ms", "to_ms"],
                "description": "to_ms after from_ms and at most two years later",
                "properties": {
                    "from_ms": window_ts, "to_ms": window_ts,
                    "vehicle_group": super::openapi::printable_text(0, MAX_TEXT, true),
                    "home_yard": { "description": "`default` for vehicles with no home yard", "allOf": [super::openapi::printable_text(0, MAX_TEXT, true)] },
                    "kind": { "type": "string", "enum": ["vehicle", "trailer", "equipment", "key"], "default": "vehicle" },
                    "limit": { "type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE }
                }
            },
            "Availability": {
                "type": "object",
                "required": ["from_ms", "to_ms", "turnaround_minutes", "vehicles"],
                "properties": {
                    "from_ms": ts, "to_ms": ts,
                    "turnaround_minutes": { "type": "integer" },
                    "vehicles": { "type": "array", "items": {
                        "type": "object",
                        "required": ["id", "kind", "name"],
                        "properties": {
                            "id": { "type": "string", "format": "uuid" },
                            "kind": { "type": "string" },
                            "name": { "type": "string" },
                            "plate": { "type": ["string", "null"] },
                            "vehicle_group": { "type": ["string", "null"] },
                            "home_yard": { "type": ["string", "null"] }
                        }
                    } }
                }
            },
            "ReservationSettings": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "turnaround_minutes": { "type": "integer", "minimum": 0, "maximum": 1440, "default": 15 },
                    "no_show_minutes": { "type": "integer", "minimum": 1, "maximum": 1440, "default": 30 },
                    "reminder_minutes": { "type": "integer", "minimum": 0, "maximum": 10080, "default": 60, "description": "0: no reminders" },
                    "late_grace_minutes": { "type": "integer", "minimum": 0, "maximum": 1440, "default": 15 },
                    "snapshot_days": { "type": "integer", "minimum": 1, "maximum": 31, "default": 7 },
                    "default_approval": { "type": "string", "enum": ["auto", "manager"], "default": "manager" },
                    "approval": { "type": "object", "description": "vehicle group → auto | manager", "additionalProperties": { "type": "string", "enum": ["auto", "manager"] } },
                    "smtp": { "type": ["object", "null"], "properties": {
                        "host": { "type": "string" },
                        "port": { "type": "integer", "default": 587 },
                        "from": { "type": "string" },
                        "starttls": { "type": "boolean", "default": true },
                        "username": { "type": ["string", "null"] },
                        "password": { "type": ["string", "null"], "writeOnly": true },
                        "password_set": { "type": "boolean", "readOnly": true }
                    } }
                }
            },
            "CalendarTokenRequest": {
                "type": "object",
                "additionalProperties": false,
                "required": ["subject", "id"],
                "properties": {
                    "subject": { "type": "string", "enum": ["vehicle", "user"] },
                    "id": { "type": "string", "format": "uuid" }
                }
            },
            "CalendarToken": {
                "type": "object",
                "required": ["subject", "id", "token", "path"],
                "properties": {
                    "subject": { "type": "string", "enum": ["vehicle", "user"] },
                    "id": { "type": "string", "format": "uuid" },
                    "token": { "type": "string", "description": "shown once" },
                    "path": { "type": "string", "description": "the feed's path with its token" }
                }
            }
        } }
    })
}
