//! Scheduled reports (`/api/v1/report-schedules…`) and the mail outbox
//! (`/api/v1/mail…`). A schedule names a report (utilization, idle, trips,
//! costs, summary), a format (CSV, or PDF for the summary), filters, a
//! cadence (daily, weekly or monthly at a local hour in an IANA time zone)
//! and recipients; the report pass in `analytics::scheduled` renders it at
//! its time and emails it through the outbox. The outbox listing shows what
//! was sent, what is waiting, and dead letters, which can be queued again.

use super::auth::{Caller, Capability};
use super::error::{ApiError, ApiJson, ApiQuery};
use super::openapi::{error_response, json_body, json_response, schema_ref, uuid_param};
use super::{audited_removal, path_uuid};
use crate::analytics::schedule::{validate, KINDS, PERIODS};
use crate::storage::reports::{ReportRun, ReportSchedule, ScheduleSpec};
use crate::storage::{now_ms, rfc3339_ms};
use crate::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

const MAX_LISTED: u32 = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    name: String,
    kind: String,
    #[serde(default = "default_format")]
    format: String,
    period: String,
    #[serde(default = "default_hour")]
    hour: u8,
    #[serde(default)]
    weekday: Option<u8>,
    #[serde(default)]
    month_day: Option<u8>,
    #[serde(default = "default_time_zone")]
    time_zone: String,
    recipients: Vec<String>,
    #[serde(default = "empty_filters")]
    filters: Value,
}

fn default_format() -> String {
    "csv".into()
}
fn default_hour() -> u8 {
    6
}
fn default_time_zone() -> String {
    "UTC".into()
}
fn empty_filters() -> Value {
    json!({})
}

impl ScheduleBody {
    fn spec(self) -> ScheduleSpec {
        ScheduleSpec {
            name: self.name.trim().to_owned(),
            kind: self.kind,
            format: self.format,
            period: self.period,
            hour: self.hour,
            weekday: self.weekday,
            month_day: self.month_day,
            time_zone: self.time_zone,
            recipients: self.recipients,
            filters: self.filters,
        }
    }
}

/// A create or replace request that may be stored: its spec, the time it
/// was checked, and its first run from then.
struct Admitted {
    spec: ScheduleSpec,
    now: i64,
    next: i64,
}

/// Reads the body, checks the spec and the caller's right to the report, and
/// finds the first run.
fn admitted(
    caller: &Caller,
    body: Result<ApiJson<ScheduleBody>, ApiError>,
) -> Result<Admitted, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let ApiJson(body) = body?;
    let spec = body.spec();
    let cadence = validate(&spec).map_err(|e| ApiError::bad_request(e.code, e.message))?;
    if spec.kind == "costs" {
        caller.require(Capability::ViewCosts)?;
        caller.require_feature("cost_tracking")?;
    }
    let now = now_ms();
    let next = cadence
        .next_after(now)
        .ok_or_else(|| ApiError::bad_request("bad_cadence", "this cadence never runs"))?;
    Ok(Admitted { spec, now, next })
}

async fn audit_saved(
    state: &AppState,
    caller: &Caller,
    action: &str,
    id: Uuid,
    spec: &ScheduleSpec,
) -> Result<(), ApiError> {
    state
        .audit(
            caller,
            action,
            format!("report_schedule:{id}"),
            json!({ "kind": spec.kind, "recipients": spec.recipients }),
        )
        .await
}

fn schedule_json(s: &ReportSchedule) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    v["next_run"] = json!(rfc3339_ms(s.next_run_ms));
    v["last_run"] = s.last_run_ms.map_or(Value::Null, |t| json!(rfc3339_ms(t)));
    v
}

fn run_json(r: &ReportRun) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["due"] = json!(rfc3339_ms(r.due_ms));
    v["ran_at"] = json!(rfc3339_ms(r.ran_at_ms));
    v
}

fn not_found() -> ApiError {
    ApiError::not_found("schedule_not_found", "no such report schedule")
}

pub async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let all = state.storage.list_report_schedules(caller.tenant).await?;
    Ok(Json(
        json!({ "schedules": all.iter().map(schedule_json).collect::<Vec<_>>() }),
    ))
}

pub async fn create_schedule(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<ScheduleBody>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Admitted { spec, now, next } = admitted(&caller, body)?;
    let s = state
        .storage
        .create_report_schedule(
            caller.tenant,
            &spec,
            caller.role.as_str(),
            caller.user_id,
            next,
            now,
        )
        .await?;
    audit_saved(&state, &caller, "report_schedule.create", s.id, &spec).await?;
    Ok((StatusCode::CREATED, Json(schedule_json(&s))))
}

pub async fn get_schedule(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let id = path_uuid(id)?;
    let s = state
        .storage
        .report_schedule(caller.tenant, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(schedule_json(&s)))
}

pub async fn update_schedule(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<ScheduleBody>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let id = path_uuid(id)?;
    let Admitted { spec, now, next } = admitted(&caller, body)?;
    let s = state
        .storage
        .update_report_schedule(caller.tenant, id, &spec, caller.role.as_str(), next, now)
        .await?
        .ok_or_else(not_found)?;
    audit_saved(&state, &caller, "report_schedule.update", id, &spec).await?;
    Ok(Json(schedule_json(&s)))
}

pub async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let id = path_uuid(id)?;
    let removed = state
        .storage
        .delete_report_schedule(caller.tenant, id)
        .await?;
    audited_removal(
        &state,
        &caller,
        removed,
        not_found(),
        "report_schedule.delete",
        format!("report_schedule:{id}"),
    )
    .await
}

pub async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let id = path_uuid(id)?;
    let runs = state
        .storage
        .list_report_runs(caller.tenant, id, MAX_LISTED)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(
        json!({ "runs": runs.iter().map(run_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailQuery {
    /// `pending`, `sent` or `dead`.
    state: Option<String>,
    limit: Option<u32>,
}

pub async fn list_mail(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<ApiQuery<MailQuery>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageConfig)?;
    let ApiQuery(q) = q?;
    if let Some(s) = q.state.as_deref() {
        if !["pending", "sent", "dead"].contains(&s) {
            return Err(ApiError::bad_request(
                "bad_state",
                "state must be pending, sent or dead",
            ));
        }
    }
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LISTED);
    let mail = state
        .storage
        .list_mail(caller.tenant, q.state.as_deref(), limit)
        .await?;
    Ok(Json(json!({ "messages": mail })))
}

pub async fn retry_mail(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    caller.require(Capability::ManageConfig)?;
    let Path(id) = id.map_err(|e| ApiError::bad_request("bad_path", e.body_text()))?;
    if !state
        .storage
        .retry_dead_mail(caller.tenant, &id, now_ms())
        .await?
    {
        return Err(ApiError::not_found(
            "message_not_found",
            "no dead message with that id",
        ));
    }
    state
        .audit(&caller, "mail.retry", format!("mail:{id}"), json!({}))
        .await?;
    Ok(StatusCode::ACCEPTED)
}

pub fn openapi() -> Value {
    let op = |id: &str, summary: &str, cap: Value, extra: Value| {
        let mut o = json!({ "operationId": id, "summary": summary, "tags": ["reports"], "x-capability": cap });
        if let (Some(o), Some(e)) = (o.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        o
    };
    let id = || json!([uuid_param("id")]);
    let time = json!({ "type": "string", "format": "date-time" });
    let nullable = |s: Value| json!({ "oneOf": [s, { "type": "null" }] });
    json!({
        "paths": {
            "/api/v1/report-schedules": {
                "get": op("listReportSchedules", "The tenant's report schedules", json!("read_fleet"),
                    json!({ "responses": { "200": json_response("the schedules", schema_ref("ReportScheduleList")) } })),
                "post": op("createReportSchedule", "Schedule a report by email; a cost report needs view_costs", json!("read_fleet"),
                    json!({ "requestBody": json_body(schema_ref("ReportScheduleRequest")),
                        "responses": { "201": json_response("the schedule with its first run", schema_ref("ReportSchedule")),
                            "400": error_response("bad_name, bad_report, bad_format, bad_cadence, bad_time_zone, bad_recipients, bad_filters"),
                            "403": error_response("forbidden (a cost report without view_costs), feature_disabled") } }))
            },
            "/api/v1/report-schedules/{id}": {
                "get": op("getReportSchedule", "One report schedule", json!("read_fleet"),
                    json!({ "parameters": id(), "responses": { "200": json_response("the schedule", schema_ref("ReportSchedule")), "404": error_response("schedule_not_found") } })),
                "put": op("updateReportSchedule", "Replace a schedule; its next run is computed afresh", json!("read_fleet"),
                    json!({ "parameters": id(), "requestBody": json_body(schema_ref("ReportScheduleRequest")),
                        "responses": { "200": json_response("the schedule", schema_ref("ReportSchedule")), "400": error_response("as for create"),
                            "403": error_response("forbidden"), "404": error_response("schedule_not_found") } })),
                "delete": op("deleteReportSchedule", "Remove a schedule and its run log", json!("read_fleet"),
                    json!({ "parameters": id(), "responses": { "204": { "description": "removed" }, "404": error_response("schedule_not_found") } }))
            },
            "/api/v1/report-schedules/{id}/runs": {
                "get": op("listReportRuns", "The schedule's runs, newest first", json!("read_fleet"),
                    json!({ "parameters": id(), "responses": { "200": json_response("the runs", schema_ref("ReportRunList")), "404": error_response("schedule_not_found") } }))
            },
            "/api/v1/mail": {
                "get": op("listMail", "The email outbox, newest first: pending, sent and dead messages", json!("manage_config"),
                    json!({ "parameters": [
                            { "name": "state", "in": "query", "schema": { "type": "string", "enum": ["pending", "sent", "dead"] } },
                            { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": MAX_LISTED } } ],
                        "responses": { "200": json_response("the messages", schema_ref("MailList")), "400": error_response("bad_state") } }))
            },
            "/api/v1/mail/{message_id}/retry": {
                "post": op("retryMail", "Queue a dead message again, with its attempts counted afresh", json!("manage_config"),
                    json!({ "parameters": [{ "name": "message_id", "in": "path", "required": true, "schema": { "type": "string" } }],
                        "responses": { "202": { "description": "queued" }, "404": error_response("message_not_found") } }))
            }
        },
        "components": { "schemas": {
            "ReportScheduleRequest": { "type": "object", "required": ["name", "kind", "period", "recipients"], "additionalProperties": false,
                "description": "daily takes neither weekday nor month_day, weekly a weekday, monthly a month_day; only the summary comes as pdf",
                "allOf": [
                    { "anyOf": [
                        { "properties": { "period": { "const": "daily" }, "weekday": false, "month_day": false } },
                        { "properties": { "period": { "const": "weekly" }, "month_day": false }, "required": ["weekday"] },
                        { "properties": { "period": { "const": "monthly" }, "weekday": false }, "required": ["month_day"] } ] },
                    { "anyOf": [{ "properties": { "format": { "const": "csv" } } }, { "properties": { "kind": { "const": "summary" } } }] } ],
                "properties": {
                "name": super::openapi::trimmed_text(200),
                "kind": { "type": "string", "enum": KINDS },
                "format": { "type": "string", "enum": ["csv", "pdf"], "default": "csv", "description": "pdf for the summary only" },
                "period": { "type": "string", "enum": PERIODS },
                "hour": { "type": "integer", "minimum": 0, "maximum": 23, "default": 6, "description": "local hour in time_zone" },
                "weekday": { "type": "integer", "minimum": 1, "maximum": 7, "description": "weekly: 1 is Monday" },
                "month_day": { "type": "integer", "minimum": 1, "maximum": 28, "description": "monthly" },
                "time_zone": { "type": "string", "default": "UTC", "description": "IANA name, e.g. Europe/Berlin",
                    "enum": jiff::tz::db().available().map(|n| n.as_str().to_owned()).collect::<Vec<_>>() },
                "recipients": { "type": "array", "items": { "type": "string", "format": "email" }, "minItems": 1, "maxItems": 20 },
                "filters": { "type": "object", "additionalProperties": false, "properties": {
                    "vehicle": { "type": "string", "format": "uuid" }, "days": { "type": "integer", "minimum": 1, "maximum": 365, "description": "idle report" } } } } },
            // An answer carries every field, weekday and month_day as null when
            // the cadence has none, and the stored filters as they were given.
            "ReportSchedule": { "type": "object",
                "required": ["id", "name", "kind", "format", "period", "hour", "time_zone", "recipients", "filters", "role", "next_run_ms", "next_run"],
                "properties": {
                "id": { "type": "string", "format": "uuid" },
                "name": { "type": "string" },
                "kind": { "type": "string", "enum": KINDS },
                "format": { "type": "string", "enum": ["csv", "pdf"] },
                "period": { "type": "string", "enum": PERIODS },
                "hour": { "type": "integer", "minimum": 0, "maximum": 23 },
                "weekday": nullable(json!({ "type": "integer", "minimum": 1, "maximum": 7 })),
                "month_day": nullable(json!({ "type": "integer", "minimum": 1, "maximum": 28 })),
                "time_zone": { "type": "string" },
                "recipients": { "type": "array", "items": { "type": "string" } },
                "filters": { "type": "object" },
                "role": { "type": "string" }, "created_by": nullable(json!({ "type": "string", "format": "uuid" })),
                "next_run_ms": { "type": "integer" }, "next_run": time, "last_run_ms": nullable(json!({ "type": "integer" })), "last_run": nullable(time.clone()),
                "created_at_ms": { "type": "integer" }, "updated_at_ms": { "type": "integer" } } },
            "ReportScheduleList": { "type": "object", "required": ["schedules"], "properties": { "schedules": { "type": "array", "items": schema_ref("ReportSchedule") } } },
            "ReportRun": { "type": "object", "required": ["due_ms", "status", "window_from", "window_to", "message_ids"], "properties": {
                "schedule_id": { "type": "string", "format": "uuid" }, "due_ms": { "type": "integer" }, "due": time, "ran_at_ms": { "type": "integer" }, "ran_at": time,
                "window_from": { "type": "string", "format": "date" }, "window_to": { "type": "string", "format": "date" },
                "status": { "type": "string", "enum": ["sent", "failed"] }, "error": nullable(json!({ "type": "string" })),
                "message_ids": { "type": "array", "items": { "type": "string" } },
                "attachment_name": nullable(json!({ "type": "string" })), "attachment_bytes": { "type": "integer" } } },
            "ReportRunList": { "type": "object", "required": ["runs"], "properties": { "runs": { "type": "array", "items": schema_ref("ReportRun") } } },
            "MailMessage": { "type": "object", "required": ["message_id", "state", "attempts"], "properties": {
                "message_id": { "type": "string", "description": "the Message-ID header, without angle brackets" },
                "source": { "type": "string", "enum": ["reservation", "report"] }, "to": { "type": "string" }, "subject": { "type": "string" },
                "state": { "type": "string", "enum": ["pending", "sent", "dead"] }, "attempts": { "type": "integer" },
                "last_error": nullable(json!({ "type": "string" })), "attachment_name": nullable(json!({ "type": "string" })),
                "created_at_ms": { "type": "integer" }, "next_attempt_at_ms": { "type": "integer" }, "sent_at_ms": nullable(json!({ "type": "integer" })) } },
            "MailList": { "type": "object", "required": ["messages"], "properties": { "messages": { "type": "array", "items": schema_ref("MailMessage") } } }
        } }
    })
}
