//! The body a webhook receives, per format: our own JSON, or a readable message
//! for a chat channel's incoming webhook (Slack, Microsoft Teams, Discord,
//! Telegram's `sendMessage`).

use serde_json::{json, Value};

pub const FORMATS: &[&str] = &["json", "slack", "teams", "discord", "telegram"];

/// The request body for `payload` (see [`super::payload`]) in `format`.
pub fn render(format: &str, payload: &Value) -> Value {
    match format {
        "slack" => json!({ "text": message(payload) }),
        "teams" => json!({
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "summary": title(payload),
            "title": title(payload),
            "text": message(payload),
        }),
        "discord" => json!({ "content": message(payload) }),
        // The chat id travels in the URL (`…/sendMessage?chat_id=…`).
        "telegram" => json!({ "text": message(payload) }),
        _ => payload.clone(),
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn title(p: &Value) -> String {
    match str_at(p, &["kind"]).unwrap_or("") {
        "fault" => "Vehicle fault".into(),
        "geofence" => "Geofence crossing".into(),
        "device_offline" => "Device offline".into(),
        "custody_conflict" => "Custody conflict".into(),
        other => format!("Fleet event {other}"),
    }
}

/// One or two readable lines about the event.
pub fn message(p: &Value) -> String {
    let device = str_at(p, &["device", "name"])
        .or_else(|| str_at(p, &["device", "id"]))
        .unwrap_or("a device");
    let at = str_at(p, &["occurred_at"]).unwrap_or("");
    let data = p.get("data").cloned().unwrap_or(Value::Null);
    let line = match str_at(p, &["kind"]).unwrap_or("") {
        "fault" => {
            let code = match (data.get("spn"), data.get("fmi")) {
                (Some(spn), Some(fmi)) => format!("SPN {spn} FMI {fmi}"),
                _ => data
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or("a diagnostic trouble code")
                    .to_owned(),
            };
            format!("Fault on {device}: {code} is active")
        }
        "geofence" => {
            let fence = data
                .get("name")
                .or_else(|| data.get("geofence_id"))
                .and_then(Value::as_str)
                .unwrap_or("a geofence");
            let verb = if str_at(p, &["event_kind"]) == Some("geofence_exit") {
                "left"
            } else {
                "entered"
            };
            format!("{device} {verb} {fence}")
        }
        "device_offline" => {
            let since = data
                .get("last_seen")
                .and_then(Value::as_str)
                .unwrap_or("a while");
            format!("{device} has not synced since {since}")
        }
        "custody_conflict" => {
            let what = data
                .get("summary")
                .or_else(|| data.get("asset"))
                .and_then(Value::as_str)
                .unwrap_or("two devices disagree about who holds an asset");
            format!("Custody conflict: {what}")
        }
        other => format!("{other} on {device}"),
    };
    if at.is_empty() {
        line
    } else {
        format!("{line} ({at})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault() -> Value {
        json!({
            "id": "d:7", "kind": "fault", "event_kind": "dtc_set",
            "occurred_at": "2026-11-22T10:00:00Z",
            "device": {"id": "d", "name": "truck-7"},
            "data": {"spn": 110, "fmi": 0}
        })
    }

    #[test]
    fn chat_formats_carry_a_readable_line() {
        let line = "Fault on truck-7: SPN 110 FMI 0 is active (2026-11-22T10:00:00Z)";
        assert_eq!(render("slack", &fault())["text"], line);
        assert_eq!(render("discord", &fault())["content"], line);
        assert_eq!(render("telegram", &fault())["text"], line);
        let teams = render("teams", &fault());
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(teams["title"], "Vehicle fault");
        assert_eq!(render("json", &fault()), fault());
    }

    #[test]
    fn each_kind_reads_well() {
        let geo = json!({"kind": "geofence", "event_kind": "geofence_exit",
            "device": {"name": "van-2"}, "data": {"name": "Depot"}});
        assert_eq!(message(&geo), "van-2 left Depot");
        let off = json!({"kind": "device_offline", "device": {"name": "van-2"},
            "data": {"last_seen": "2026-11-22T09:00:00Z"}});
        assert_eq!(
            message(&off),
            "van-2 has not synced since 2026-11-22T09:00:00Z"
        );
        let custody = json!({"kind": "custody_conflict", "data": {"summary": "key 12 held twice"}});
        assert_eq!(message(&custody), "Custody conflict: key 12 held twice");
    }
}
