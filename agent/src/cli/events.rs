use crate::sync::anchors;
use clap::Args;
use fleet_protocol::{Event, TimeAnchor};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[arg(long = "data", value_name = "DIR")]
    data_dir: PathBuf,
    /// JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// Only events with a larger seq.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// At most this many events.
    #[arg(long)]
    limit: Option<usize>,
}

const PAGE: usize = 1_000;

pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let store = super::open_store(&args.data_dir)?;
    let anchors = store.anchors().await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut after = args.after;
    let mut left = args.limit.unwrap_or(usize::MAX);
    while left > 0 {
        let page = store.list_events(after, left.min(PAGE)).await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = last.seq;
        left = left.saturating_sub(page.len());
        for (event, acked) in &page {
            let line = if args.json {
                event_json(event, *acked, &anchors).to_string()
            } else {
                event_text(event, *acked, &anchors)
            };
            if writeln!(out, "{line}").is_err() {
                // The reader went away (`| head`): stop quietly.
                store.close().await?;
                return Ok(());
            }
        }
    }
    let _ = out.flush();
    store.close().await?;
    Ok(())
}

/// The event's best time: rebased through the best anchor of its boot, or the
/// device's wall-clock estimate, and where that time came from.
pub fn best_time(event: &Event, anchors: &[TimeAnchor]) -> (i64, &'static str) {
    match anchors::best_for(anchors, event.time.boot_id) {
        Some(a) => (a.rebase(event.time.mono_ms), a.source.as_str()),
        None => (event.time.wall_ms, "wall"),
    }
}

pub fn event_json(event: &Event, acked: bool, anchors: &[TimeAnchor]) -> serde_json::Value {
    let (time_ms, source) = best_time(event, anchors);
    serde_json::json!({
        "seq": event.seq,
        "kind": event.kind.as_str(),
        "priority": event.priority.as_str(),
        "boot_id": event.time.boot_id.to_string(),
        "mono_ms": event.time.mono_ms,
        "wall_ms": event.time.wall_ms,
        "hlc": event.time.hlc.0,
        "time": rfc3339(time_ms),
        "time_source": source,
        "acked": acked,
        "config_version": event.config_version,
        "data": event.data.to_json(),
    })
}

fn event_text(event: &Event, acked: bool, anchors: &[TimeAnchor]) -> String {
    let (time_ms, source) = best_time(event, anchors);
    format!(
        "{:>8} {} ({source}) {:<9} {:<20} {} {}",
        event.seq,
        rfc3339(time_ms),
        event.priority.as_str(),
        event.kind.as_str(),
        if acked { "acked  " } else { "pending" },
        event.data.to_json()
    )
}

/// Unix milliseconds as RFC 3339 UTC, with milliseconds when there are any.
pub fn rfc3339(ms: i64) -> String {
    use time::macros::format_description;
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return ms.to_string();
    };
    let formatted = if ms.rem_euclid(1_000) == 0 {
        t.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
    } else {
        t.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
    };
    formatted.unwrap_or_else(|_| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_protocol::{BootId, EventData, EventTime, Hlc, Kind, Priority, TimeSource};

    fn event(boot: BootId) -> Event {
        Event {
            seq: 7,
            kind: Kind::known("ignition_on"),
            priority: Priority::Critical,
            time: EventTime {
                boot_id: boot,
                mono_ms: 60_000,
                wall_ms: 1_000,
                hlc: Hlc(99),
            },
            config_version: 1,
            data: EventData::None,
        }
    }

    #[test]
    fn an_event_is_rebased_when_its_boot_has_an_anchor() {
        let boot = BootId::random();
        let anchor = TimeAnchor {
            boot_id: boot,
            mono_ms: 50_000,
            true_ms: 1_700_000_000_000,
            source: TimeSource::Server,
            uncertainty_ms: 10,
        };
        let v = event_json(&event(boot), true, &[anchor]);
        assert_eq!(v["time"], "2023-11-14T22:13:30Z");
        assert_eq!(v["time_source"], "server");
        let v = event_json(&event(boot), false, &[]);
        assert_eq!(v["time"], "1970-01-01T00:00:01Z");
        assert_eq!(v["time_source"], "wall");
        assert_eq!(v["acked"], false);
    }

    #[test]
    fn times_keep_milliseconds() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(1_700_000_000_100), "2023-11-14T22:13:20.100Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }
}
