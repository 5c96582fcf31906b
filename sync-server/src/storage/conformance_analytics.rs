//! The behaviour every backend's [`AnalyticsStore`](super::analytics::AnalyticsStore)
//! and its ingest-time rollups must show. Each check takes a fresh, empty
//! `Arc<dyn Storage>`; a backend runs them all with
//! [`conformance_analytics_suite!`](crate::conformance_analytics_suite).

use super::analytics::{ServiceRecord, ServiceSchedule, WorkOrder};
use super::conformance::{batch, fixture, BOOT, NOW};
use super::{Storage, StorageError};
use crate::analytics::local_day;
use crate::analytics::report::AnalyticsSettings;
use fleet_protocol::{Event, EventData, EventTime, Hlc, Kind, Priority};
use serde_json::{json, Value};
use std::sync::Arc;
use uuid::Uuid;

/// NOW rounded down to a UTC midnight, so hand-computed days are easy to name.
const DAY0: i64 = NOW - NOW.rem_euclid(86_400_000);

fn ev(seq: u64, kind: &'static str, wall_ms: i64, data: Value) -> Event {
    Event {
        seq,
        kind: Kind::known(kind),
        priority: Priority::Critical,
        time: EventTime {
            boot_id: BOOT,
            mono_ms: seq * 1000,
            wall_ms,
            hlc: Hlc::new(wall_ms as u64, 0),
        },
        config_version: 1,
        data: EventData::Json(data),
    }
}

fn h(hours: f64) -> i64 {
    (hours * 3_600_000.0) as i64
}

pub async fn rollups_count_each_stored_event_once_whatever_the_batches(storage: Arc<dyn Storage>) {
    let f = fixture(storage).await;
    let (s, d) = (&f.storage, &f.device);
    let t = d.tenant_id;
    let day = local_day(DAY0, 0);
    // 08:00-10:00: a 2 h trip with 30 min idle in it, 50 km, 12 l; a 20 min idle
    // ending 11:00; a harsh brake; 90 s speeding.
    let events = vec![
        ev(
            1,
            "trip_end",
            DAY0 + h(10.0),
            json!({"duration_s": 7200.0, "idle_s": 1800.0, "distance_m": 50000.0, "fuel_used_l": 12.0, "driving_events": 2, "odometer_end_km": 1050.0}),
        ),
        ev(2, "idle", DAY0 + h(11.0), json!({"duration_s": 1200.0})),
        ev(3, "harsh_braking", DAY0 + h(9.0), json!({"peak_mps2": 5.1})),
        ev(4, "speeding", DAY0 + h(9.5), json!({"duration_s": 90.0})),
        ev(5, "odometer", DAY0 + h(7.0), json!({"odometer_km": 1000.0})),
    ];
    // Two overlapping batches, the later one first, then the whole again.
    s.ingest_batch(d, batch(d, 3, 5, events[2..].to_vec()), NOW)
        .await
        .unwrap();
    s.ingest_batch(d, batch(d, 1, 3, events[..3].to_vec()), NOW)
        .await
        .unwrap();
    s.ingest_batch(d, batch(d, 1, 5, events.clone()), NOW)
        .await
        .unwrap();

    let days = s
        .vehicle_days(t, d.device_id, day - 1, day + 1)
        .await
        .unwrap();
    assert_eq!(days.len(), 1, "one day of data");
    let (got_day, r) = &days[0];
    assert_eq!(*got_day, day);
    assert_eq!(r.events, 5);
    // Driving: 7200 - 1800 = 5400 s; idle events: 1200 s; engine on 6600 s.
    assert_eq!(r.driving_ms, 5_400_000);
    assert_eq!(r.idle_ms, 1_200_000);
    assert_eq!(r.engine_on_ms, 6_600_000);
    assert_eq!(r.trips, 1);
    assert!((r.distance_m - 50_000.0).abs() < 1e-6);
    assert!((r.fuel_used_l - 12.0).abs() < 1e-9);
    assert_eq!(r.harsh_braking, 1);
    assert_eq!(r.speeding_ms, 90_000);
    assert_eq!(
        (r.odometer_min_km, r.odometer_max_km),
        (Some(1000.0), Some(1050.0))
    );
    // Hours 8 and 9 each get 2700 s of driving; hour 10 the 1200 s idle.
    assert_eq!(r.hour_use_ms[8], 2_700_000);
    assert_eq!(r.hour_use_ms[9], 2_700_000);
    assert_eq!(r.hour_use_ms[10], 1_200_000);

    let trips = s.trips(t, DAY0, DAY0 + h(24.0), None, 10).await.unwrap();
    assert_eq!(trips.len(), 1);
    assert_eq!(trips[0].0, d.device_id);
    assert_eq!(trips[0].1.start_ms, DAY0 + h(8.0));

    let period = s
        .period_summary(t, day - 6, day, 30 * 60_000)
        .await
        .unwrap();
    assert_eq!(period.len(), 1);
    let p = &period[0];
    assert_eq!(p.name, "truck-1");
    assert_eq!((p.days_with_data, p.days_used), (1, 1));
    assert_eq!(p.engine_on_ms, 6_600_000);
    assert_eq!(p.last_used_day, Some(day));

    let heat = s.hour_use(t, day, day, Some(d.device_id)).await.unwrap();
    assert_eq!(heat, vec![(day, r.hour_use_ms)]);

    // Another tenant sees none of it.
    let other = s.create_tenant("other").await.unwrap().tenant_id;
    assert!(s
        .vehicle_days(other, d.device_id, day, day)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .trips(other, 0, i64::MAX, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .period_summary(other, day, day, 0)
        .await
        .unwrap()
        .is_empty());
}

pub async fn days_follow_the_tenant_offset_once_set(storage: Arc<dyn Storage>) {
    let f = fixture(storage).await;
    let (s, d) = (&f.storage, &f.device);
    let t = d.tenant_id;
    assert_eq!(
        s.analytics_settings(t).await.unwrap(),
        AnalyticsSettings::default()
    );
    let settings = AnalyticsSettings {
        utc_offset_min: 120,
        fuel_price_cents_per_l: Some(175),
        ..Default::default()
    };
    s.set_analytics_settings(t, &settings, NOW).await.unwrap();
    assert_eq!(s.analytics_settings(t).await.unwrap(), settings);
    // 23:00 UTC is 01:00 the next local day at +02:00.
    let at = DAY0 + h(23.0);
    s.ingest_batch(
        d,
        batch(d, 1, 1, vec![ev(1, "harsh_braking", at, json!({}))]),
        NOW,
    )
    .await
    .unwrap();
    let days = s.vehicle_days(t, d.device_id, 0, i32::MAX).await.unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].0, local_day(DAY0, 0) + 1);
    assert_eq!(days[0].1.covered_hours, 1 << 1);
}

pub async fn recurring_faults_and_parked_fuel_drops_raise_one_open_alert_each(
    storage: Arc<dyn Storage>,
) {
    let f = fixture(storage).await;
    let (s, d) = (&f.storage, &f.device);
    let t = d.tenant_id;
    let dtc = json!({"source": 0, "spn": 520, "fmi": 3, "oc": 1, "lamps": 0});
    // The same code on three days within 30: the third raises the alert, the
    // fourth does not raise another while the first is open.
    let mut seq = 0;
    for day in [0, 10, 20, 25] {
        seq += 1;
        s.ingest_batch(
            d,
            batch(
                d,
                seq,
                seq,
                vec![ev(
                    seq,
                    "dtc_set",
                    DAY0 + h(24.0 * f64::from(day)),
                    dtc.clone(),
                )],
            ),
            NOW,
        )
        .await
        .unwrap();
        let open = s.maintenance_alerts(t, true).await.unwrap();
        assert_eq!(open.len(), usize::from(day >= 20), "after day {day}");
    }
    seq += 1;
    s.ingest_batch(
        d,
        batch(
            d,
            seq,
            seq,
            vec![ev(
                seq,
                "fuel_drop",
                DAY0 + h(30.0),
                json!({"drop_pct": 15.0, "ignition": false}),
            )],
        ),
        NOW,
    )
    .await
    .unwrap();
    let open = s.maintenance_alerts(t, true).await.unwrap();
    let mut kinds: Vec<&str> = open.iter().map(|a| a.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, vec!["fuel_drop_parked", "recurring_fault"]);
    let fault = open.iter().find(|a| a.kind == "recurring_fault").unwrap();
    assert_eq!(fault.key, "SPN 520 FMI 3");
    assert_eq!(fault.device_id, d.device_id);

    let faults = s.fault_summary(t, 0, i32::MAX).await.unwrap();
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].count, 4);

    // Each alert is handed on once.
    let taken = s.take_unnotified_alerts(NOW, 10).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert!(taken.iter().all(|(tenant, _)| *tenant == t));
    assert!(s.take_unnotified_alerts(NOW, 10).await.unwrap().is_empty());

    let acked = s
        .acknowledge_alert(t, fault.id, NOW + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acked.acknowledged_at_ms, Some(NOW + 1));
    assert_eq!(s.maintenance_alerts(t, true).await.unwrap().len(), 1);
    assert_eq!(s.maintenance_alerts(t, false).await.unwrap().len(), 2);
    let other = s.create_tenant("other").await.unwrap().tenant_id;
    assert_eq!(
        s.acknowledge_alert(other, fault.id, NOW).await.unwrap(),
        None
    );
    assert!(s.maintenance_alerts(other, false).await.unwrap().is_empty());
}

pub async fn schedules_services_and_work_orders_are_kept_per_tenant(storage: Arc<dyn Storage>) {
    let f = fixture(storage).await;
    let (s, d) = (&f.storage, &f.device);
    let t = d.tenant_id;
    let sched = ServiceSchedule {
        id: Uuid::new_v4(),
        name: "oil".into(),
        device_id: Some(d.device_id),
        vehicle_group: None,
        every_km: Some(15_000.0),
        every_engine_hours: None,
        every_days: Some(365),
        created_at_ms: NOW,
    };
    s.create_service_schedule(t, &sched).await.unwrap();
    assert_eq!(s.service_schedules(t).await.unwrap(), vec![sched.clone()]);
    let foreign = ServiceSchedule {
        id: Uuid::new_v4(),
        device_id: Some(Uuid::new_v4()),
        ..sched.clone()
    };
    assert!(matches!(
        s.create_service_schedule(t, &foreign).await,
        Err(StorageError::UnknownDevice)
    ));

    let order = WorkOrder {
        id: Uuid::new_v4(),
        device_id: d.device_id,
        schedule_id: Some(sched.id),
        title: "oil change".into(),
        status: "open".into(),
        parts_cents: 4_500,
        labor_cents: 6_000,
        opened_at_ms: NOW,
        closed_at_ms: None,
        updated_at_ms: NOW,
    };
    s.create_work_order(t, &order).await.unwrap();
    let done = WorkOrder {
        status: "completed".into(),
        closed_at_ms: Some(NOW + 5),
        updated_at_ms: NOW + 5,
        ..order.clone()
    };
    assert_eq!(
        s.update_work_order(t, &done).await.unwrap(),
        Some(done.clone())
    );
    assert_eq!(s.work_order(t, order.id).await.unwrap(), Some(done.clone()));
    assert_eq!(
        s.work_orders(t, Some(d.device_id)).await.unwrap(),
        vec![done.clone()]
    );
    assert!(s
        .work_orders(t, Some(Uuid::new_v4()))
        .await
        .unwrap()
        .is_empty());

    let rec = ServiceRecord {
        schedule_id: sched.id,
        device_id: d.device_id,
        done_at_ms: NOW + 5,
        odometer_km: Some(12_000.0),
        engine_hours: None,
        work_order_id: Some(order.id),
    };
    s.record_service(t, &rec).await.unwrap();
    let later = ServiceRecord {
        done_at_ms: NOW + 10,
        ..rec.clone()
    };
    s.record_service(t, &later).await.unwrap();
    assert_eq!(s.service_records(t).await.unwrap(), vec![later]);

    let other = s.create_tenant("other").await.unwrap().tenant_id;
    assert!(s.service_schedules(other).await.unwrap().is_empty());
    assert_eq!(s.work_order(other, order.id).await.unwrap(), None);
    assert_eq!(s.update_work_order(other, &done).await.unwrap(), None);
    assert!(!s.delete_service_schedule(other, sched.id).await.unwrap());
    assert!(s.delete_service_schedule(t, sched.id).await.unwrap());
    assert!(s.service_records(t).await.unwrap().is_empty());
}

#[macro_export]
macro_rules! conformance_analytics_suite {
    (optional $make:expr) => {
        $crate::conformance_analytics_suite!(@optional $make;
            rollups_count_each_stored_event_once_whatever_the_batches,
            days_follow_the_tenant_offset_once_set,
            recurring_faults_and_parked_fuel_drops_raise_one_open_alert_each,
            schedules_services_and_work_orders_are_kept_per_tenant,
        );
    };
    (@optional $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((storage, _guard)) = $make.await else { return };
                $crate::storage::conformance_analytics::$name(storage).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::conformance_analytics_suite!(@tests $make;
            rollups_count_each_stored_event_once_whatever_the_batches,
            days_follow_the_tenant_offset_once_set,
            recurring_faults_and_parked_fuel_drops_raise_one_open_alert_each,
            schedules_services_and_work_orders_are_kept_per_tenant,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (storage, _guard) = $make.await;
                $crate::storage::conformance_analytics::$name(storage).await;
            }
        )*
    };
}
