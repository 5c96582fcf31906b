//! The behaviour every backend's [`MailStore`](super::mail::MailStore) and
//! [`ReportStore`](super::reports::ReportStore) must show. Each check takes a
//! fresh, empty `Arc<dyn Storage>`; a backend runs them all with
//! [`conformance_mail_suite!`](crate::conformance_mail_suite).

use super::conformance::NOW;
use super::mail::{Attachment, MailOutcome, NewMail};
use super::reports::{ReportRun, ScheduleSpec};
use super::Storage;
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

const LEASE: i64 = 60_000;
const DAY: i64 = 86_400_000;

fn mail(id: &str, attachment: bool) -> NewMail {
    NewMail {
        message_id: format!("{id}@fleet-sync"),
        source: "test".into(),
        to_addr: "dana@example.com".into(),
        to_name: Some("Dana".into()),
        subject: format!("subject {id}"),
        body: "hello\n".into(),
        attachment: attachment.then(|| Attachment {
            name: "report.csv".into(),
            content_type: "text/csv".into(),
            bytes: b"a,b\n1,2\n".to_vec(),
        }),
    }
}

pub async fn mail_is_queued_once_per_message_id_retried_and_dead_letters_stay_listed(
    storage: Arc<dyn Storage>,
) {
    let t = storage.create_tenant("acme").await.unwrap().tenant_id;
    let other = storage.create_tenant("other").await.unwrap().tenant_id;
    let m = mail("one", true);
    assert_eq!(
        storage
            .enqueue_mail(t, std::slice::from_ref(&m), NOW)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        storage
            .enqueue_mail(t, std::slice::from_ref(&m), NOW + 5)
            .await
            .unwrap(),
        0,
        "the same message id is not queued twice"
    );
    let claimed = storage.claim_mail(NOW, LEASE, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].tenant_id, t);
    assert_eq!(claimed[0].mail, m, "body and attachment come back whole");
    assert_eq!(claimed[0].attempts, 0);
    assert!(
        storage
            .claim_mail(NOW + 1, LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "a claimed message is leased"
    );
    storage
        .record_mail_attempt(
            t,
            &m.message_id,
            &MailOutcome::Failed {
                error: "421 try later".into(),
                retry_at_ms: Some(NOW + 1_000),
            },
            NOW + 2,
        )
        .await
        .unwrap();
    assert!(storage
        .claim_mail(NOW + 999, LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    let again = storage.claim_mail(NOW + 1_000, LEASE, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    storage
        .record_mail_attempt(
            t,
            &m.message_id,
            &MailOutcome::Failed {
                error: "550 no such user".into(),
                retry_at_ms: None,
            },
            NOW + 1_001,
        )
        .await
        .unwrap();
    let dead = storage.list_mail(t, Some("dead"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].last_error.as_deref(), Some("550 no such user"));
    assert_eq!(dead[0].attachment_name.as_deref(), Some("report.csv"));
    assert!(storage
        .claim_mail(NOW + 10 * LEASE, LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(storage.list_mail(other, None, 10).await.unwrap().is_empty());
    assert!(!storage
        .retry_dead_mail(other, &m.message_id, NOW + 2_000)
        .await
        .unwrap());
    assert!(storage
        .retry_dead_mail(t, &m.message_id, NOW + 2_000)
        .await
        .unwrap());
    let retried = storage.claim_mail(NOW + 2_000, LEASE, 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 0);
    storage
        .record_mail_attempt(t, &m.message_id, &MailOutcome::Sent, NOW + 2_001)
        .await
        .unwrap();
    // A late failure report from a lease that ran out does not undo the send.
    storage
        .record_mail_attempt(
            t,
            &m.message_id,
            &MailOutcome::Failed {
                error: "late".into(),
                retry_at_ms: Some(NOW + 3_000),
            },
            NOW + 2_002,
        )
        .await
        .unwrap();
    let all = storage.list_mail(t, None, 10).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].state, "sent");
    assert_eq!(all[0].sent_at_ms, Some(NOW + 2_001));
    assert!(storage
        .claim_mail(NOW + 10_000, LEASE, 10)
        .await
        .unwrap()
        .is_empty());
}

fn spec() -> ScheduleSpec {
    ScheduleSpec {
        name: "daily utilization".into(),
        kind: "utilization".into(),
        format: "csv".into(),
        period: "daily".into(),
        hour: 7,
        weekday: None,
        month_day: None,
        time_zone: "Europe/Berlin".into(),
        recipients: vec!["ops@example.com".into()],
        filters: json!({"days": 7}),
    }
}

fn run(schedule: Uuid, due_ms: i64, ids: Vec<String>) -> ReportRun {
    ReportRun {
        schedule_id: schedule,
        due_ms,
        ran_at_ms: due_ms + 10,
        window_from: "2026-11-15".into(),
        window_to: "2026-11-21".into(),
        status: "sent".into(),
        error: None,
        message_ids: ids,
        attachment_name: Some("utilization.csv".into()),
        attachment_bytes: 8,
    }
}

pub async fn a_due_report_is_claimed_once_and_its_run_recorded_once(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("acme").await.unwrap().tenant_id;
    let other = storage.create_tenant("other").await.unwrap().tenant_id;
    let who = Some(Uuid::new_v4());
    let s = storage
        .create_report_schedule(t, &spec(), "manager", who, NOW, NOW - DAY)
        .await
        .unwrap();
    assert_eq!(s.spec, spec());
    assert_eq!(s.role, "manager");
    assert_eq!(s.created_by, who);
    assert_eq!(s.next_run_ms, NOW);
    assert_eq!(
        storage.list_report_schedules(t).await.unwrap(),
        vec![s.clone()]
    );
    assert!(storage
        .list_report_schedules(other)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(storage.report_schedule(other, s.id).await.unwrap(), None);

    assert!(storage
        .claim_due_reports(NOW - 1, LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    let claimed = storage.claim_due_reports(NOW, LEASE, 10).await.unwrap();
    assert_eq!(claimed, vec![(t, s.clone())]);
    assert!(
        storage
            .claim_due_reports(NOW + 1, LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "a claimed schedule is leased"
    );

    let m = mail("report-run", true);
    let r = run(s.id, NOW, vec![m.message_id.clone()]);
    assert!(storage
        .finish_report_run(t, &r, NOW + DAY, std::slice::from_ref(&m))
        .await
        .unwrap());
    assert!(
        !storage
            .finish_report_run(t, &r, NOW + DAY, &[mail("second", false)])
            .await
            .unwrap(),
        "the same run is not recorded twice"
    );
    let queued = storage.list_mail(t, None, 10).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].message_id, m.message_id);
    assert_eq!(
        storage.list_report_runs(t, s.id, 10).await.unwrap(),
        Some(vec![r.clone()])
    );
    assert_eq!(
        storage.list_report_runs(other, s.id, 10).await.unwrap(),
        None
    );
    let after = storage.report_schedule(t, s.id).await.unwrap().unwrap();
    assert_eq!(after.next_run_ms, NOW + DAY);
    assert_eq!(after.last_run_ms, Some(NOW));
    assert!(
        storage
            .claim_due_reports(NOW + LEASE * 2, LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "the next run is a day later"
    );

    // A lease that runs out (a replica died mid-run) lets another claim it.
    assert_eq!(
        storage
            .claim_due_reports(NOW + DAY, LEASE, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        storage
            .claim_due_reports(NOW + DAY + LEASE, LEASE, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let mut changed = spec();
    changed.kind = "summary".into();
    changed.format = "pdf".into();
    assert_eq!(
        storage
            .update_report_schedule(other, s.id, &changed, "admin", NOW, NOW)
            .await
            .unwrap(),
        None
    );
    let updated = storage
        .update_report_schedule(t, s.id, &changed, "admin", NOW + 3 * DAY, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.spec, changed);
    assert_eq!(updated.role, "admin");
    assert_eq!(updated.updated_at_ms, NOW);
    // A run finished against the old time writes nothing.
    assert!(!storage
        .finish_report_run(
            t,
            &run(s.id, NOW + DAY, vec![]),
            NOW + 2 * DAY,
            &[mail("stale", false)]
        )
        .await
        .unwrap());
    assert_eq!(storage.list_mail(t, None, 10).await.unwrap().len(), 1);

    assert!(!storage.delete_report_schedule(other, s.id).await.unwrap());
    assert!(storage.delete_report_schedule(t, s.id).await.unwrap());
    assert_eq!(storage.list_report_runs(t, s.id, 10).await.unwrap(), None);
    assert!(storage.list_report_schedules(t).await.unwrap().is_empty());
}

#[macro_export]
macro_rules! conformance_mail_suite {
    // `$make` gives an Option: `None` skips (a backend that is not configured).
    (optional $make:expr) => {
        $crate::conformance_mail_suite!(@optional $make;
            mail_is_queued_once_per_message_id_retried_and_dead_letters_stay_listed,
            a_due_report_is_claimed_once_and_its_run_recorded_once,
        );
    };
    (@optional $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((storage, _guard)) = $make.await else { return };
                $crate::storage::conformance_mail::$name(storage).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::conformance_mail_suite!(@tests $make;
            mail_is_queued_once_per_message_id_retried_and_dead_letters_stay_listed,
            a_due_report_is_claimed_once_and_its_run_recorded_once,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (storage, _guard) = $make.await;
                $crate::storage::conformance_mail::$name(storage).await;
            }
        )*
    };
}
