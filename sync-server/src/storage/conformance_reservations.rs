//! The behaviour every backend's
//! [`ReservationStore`](super::reservations::ReservationStore) must show. Each
//! check takes a fresh, empty `Arc<dyn Storage>`; a backend runs them all with
//! [`conformance_reservations_suite!`](crate::conformance_reservations_suite).

use super::access::{ActorKind, AuditEntry, AuditQuery};
use super::assets::{Asset, AssetKind};
use super::conformance::NOW;
use super::reservations::{
    Approval, AvailabilityQuery, Change, FeedSubject, Notices, Reservation, ReservationFilter,
    ReservationSettings, Status, Write,
};
use super::Storage;
use crate::reservations::notify::{self, Notice};
use std::sync::Arc;
use uuid::Uuid;

const H: i64 = 3_600_000;
const BUF: i64 = 15 * 60_000;

pub async fn vehicle(
    storage: &Arc<dyn Storage>,
    tenant: Uuid,
    name: &str,
    group: Option<&str>,
    yard: Option<&str>,
) -> Uuid {
    let id = Uuid::new_v4();
    let asset = Asset {
        id,
        kind: AssetKind::Vehicle,
        name: name.into(),
        make: None,
        model: None,
        vin: None,
        plate: Some(format!("P-{name}")),
        vehicle_group: group.map(str::to_owned),
        home_yard: yard.map(str::to_owned),
        department: None,
        cost_center: None,
        purchase_price_cents: None,
        purchase_date: None,
        device_id: None,
        odometer_km: None,
        engine_hours: None,
        meter_at_ms: None,
        created_at_ms: NOW,
        updated_at_ms: NOW,
        retired_at_ms: None,
    };
    storage.create_asset(tenant, &asset).await.unwrap();
    id
}

pub fn booking(vehicle: Uuid, user: Uuid, start_ms: i64, end_ms: i64) -> Reservation {
    Reservation {
        id: Uuid::new_v4(),
        vehicle_id: vehicle,
        user_id: user,
        start_ms,
        end_ms,
        buffer_ms: BUF,
        status: Status::Pending,
        purpose: Some("site visit".into()),
        department: Some("ops".into()),
        cost_center: Some("CC-1".into()),
        reason: None,
        created_by: None,
        approved_by: None,
        version: 1,
        created_at_ms: NOW,
        updated_at_ms: NOW,
        reminded_at_ms: None,
        overdue_at_ms: None,
    }
}

fn done(w: Write) -> Reservation {
    match w {
        Write::Done(r) => r,
        other => panic!("expected the write to be done, got {other:?}"),
    }
}

pub async fn overlapping_holding_bookings_of_a_vehicle_are_refused_with_the_blocking_window(
    storage: Arc<dyn Storage>,
) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let (v, w) = (
        vehicle(&storage, t, "van", None, None).await,
        vehicle(&storage, t, "car", None, None).await,
    );
    let u = Uuid::new_v4();
    let first = done(
        storage
            .create_reservation(
                t,
                &booking(v, u, NOW + 10 * H, NOW + 12 * H),
                &Notices::none(),
            )
            .await
            .unwrap(),
    );
    // Overlapping, and inside the turnaround buffer on either side.
    for (s, e) in [
        (NOW + 11 * H, NOW + 13 * H),
        (NOW + 12 * H + BUF - 1, NOW + 14 * H),
        (NOW + 8 * H, NOW + 10 * H - BUF + 1),
    ] {
        match storage
            .create_reservation(t, &booking(v, u, s, e), &Notices::none())
            .await
            .unwrap()
        {
            Write::Conflict(b) => {
                assert_eq!(b.reservation_id, first.id);
                assert_eq!((b.start_ms, b.end_ms), (first.start_ms, first.end_ms));
            }
            other => panic!("{s}..{e}: expected a conflict, got {other:?}"),
        }
    }
    // Exactly a buffer apart on both sides, and another vehicle, are free.
    done(
        storage
            .create_reservation(
                t,
                &booking(v, u, NOW + 12 * H + BUF, NOW + 13 * H),
                &Notices::none(),
            )
            .await
            .unwrap(),
    );
    done(
        storage
            .create_reservation(
                t,
                &booking(v, u, NOW + 9 * H, NOW + 10 * H - BUF),
                &Notices::none(),
            )
            .await
            .unwrap(),
    );
    done(
        storage
            .create_reservation(
                t,
                &booking(w, u, NOW + 10 * H, NOW + 12 * H),
                &Notices::none(),
            )
            .await
            .unwrap(),
    );
    // A rejected booking holds nothing; a cancelled one frees its window.
    let mut rejected = booking(v, u, NOW + 11 * H, NOW + 11 * H + 1);
    rejected.status = Status::Rejected;
    done(
        storage
            .create_reservation(t, &rejected, &Notices::none())
            .await
            .unwrap(),
    );
    let mut cancel = Change::new(NOW);
    cancel.to = Some(Status::Cancelled);
    cancel.reason = Some("plans changed".into());
    let c = done(
        storage
            .update_reservation(t, first.id, &cancel, &Notices::none())
            .await
            .unwrap(),
    );
    assert_eq!((c.status, c.version), (Status::Cancelled, 2));
    done(
        storage
            .create_reservation(
                t,
                &booking(v, u, NOW + 10 * H, NOW + 12 * H),
                &Notices::none(),
            )
            .await
            .unwrap(),
    );
    // Another tenant's bookings neither block nor show.
    let other = storage.create_tenant("b").await.unwrap().tenant_id;
    assert!(storage
        .reservation(other, first.id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        storage
            .update_reservation(other, first.id, &cancel, &Notices::none())
            .await
            .unwrap(),
        Write::NotFound
    );
}

pub async fn changes_apply_at_the_expected_version_and_status_and_recheck_the_window(
    storage: Arc<dyn Storage>,
) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let v = vehicle(&storage, t, "van", None, None).await;
    let u = Uuid::new_v4();
    let a = done(
        storage
            .create_reservation(
                t,
                &booking(v, u, NOW + 10 * H, NOW + 12 * H),
                &Notices::none(),
            )
            .await
            .unwrap(),
    );
    let b = done(
        storage
            .create_reservation(
                t,
                &booking(v, u, NOW + 14 * H, NOW + 16 * H),
                &Notices::none(),
            )
            .await
            .unwrap(),
    );
    let approver = Uuid::new_v4();
    let mut approve = Change::new(NOW + 1);
    approve.expected_version = Some(1);
    approve.from = vec![Status::Pending];
    approve.to = Some(Status::Approved);
    approve.approved_by = Some(approver);
    let ok = done(
        storage
            .update_reservation(t, a.id, &approve, &Notices::none())
            .await
            .unwrap(),
    );
    assert_eq!(ok.status, Status::Approved);
    assert_eq!(ok.approved_by, Some(approver));
    assert_eq!(ok.version, 2);
    assert_eq!(ok.updated_at_ms, NOW + 1);
    // The same approval again: stale (version and status moved on).
    match storage
        .update_reservation(t, a.id, &approve, &Notices::none())
        .await
        .unwrap()
    {
        Write::Stale(r) => assert_eq!(r.version, 2),
        other => panic!("expected stale, got {other:?}"),
    }
    // Moving a into b's window is refused and leaves a as it was.
    let mut moved = Change::new(NOW + 2);
    moved.window = Some((NOW + 13 * H, NOW + 15 * H, BUF));
    match storage
        .update_reservation(t, a.id, &moved, &Notices::none())
        .await
        .unwrap()
    {
        Write::Conflict(blk) => assert_eq!(blk.reservation_id, b.id),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(storage.reservation(t, a.id).await.unwrap().unwrap(), ok);
    // Moving within its own window is fine: it does not block itself.
    moved.window = Some((NOW + 11 * H, NOW + 13 * H, BUF));
    moved.purpose = Some(None);
    let m = done(
        storage
            .update_reservation(t, a.id, &moved, &Notices::none())
            .await
            .unwrap(),
    );
    assert_eq!(
        (m.start_ms, m.end_ms, m.version),
        (NOW + 11 * H, NOW + 13 * H, 3)
    );
    assert_eq!(m.purpose, None);
    assert_eq!(storage.reservation(t, a.id).await.unwrap().unwrap(), m);
    // Marks are recorded once the caller claims them.
    let mut remind = Change::new(NOW + 3);
    remind.expected_version = Some(3);
    remind.mark_reminded = true;
    let r = done(
        storage
            .update_reservation(t, a.id, &remind, &Notices::none())
            .await
            .unwrap(),
    );
    assert_eq!(r.reminded_at_ms, Some(NOW + 3));
    assert!(matches!(
        storage
            .update_reservation(t, a.id, &remind, &Notices::none())
            .await
            .unwrap(),
        Write::Stale(_)
    ));
    assert_eq!(
        storage
            .update_reservation(t, Uuid::new_v4(), &remind, &Notices::none())
            .await
            .unwrap(),
        Write::NotFound
    );
}

/// Any free vehicle from `from` to `to`, with the tenant's buffer.
fn any_vehicle(from: i64, to: i64) -> AvailabilityQuery {
    AvailabilityQuery {
        from_ms: from,
        to_ms: to,
        buffer_ms: BUF,
        vehicle_group: None,
        home_yard: None,
        kind: "vehicle".into(),
        limit: 100,
    }
}

pub async fn availability_lists_free_vehicles_matching_the_filters(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let busy = vehicle(&storage, t, "a-busy", Some("vans"), Some("north")).await;
    let free = vehicle(&storage, t, "b-free", Some("vans"), Some("north")).await;
    let car = vehicle(&storage, t, "c-car", Some("cars"), None).await;
    let retired = vehicle(&storage, t, "d-retired", Some("vans"), Some("north")).await;
    storage.retire_asset(t, retired, NOW).await.unwrap();
    let u = Uuid::new_v4();
    done(
        storage
            .create_reservation(
                t,
                &booking(busy, u, NOW + 10 * H, NOW + 12 * H),
                &Notices::none(),
            )
            .await
            .unwrap(),
    );
    // An earlier, long-finished booking does not matter.
    done(
        storage
            .create_reservation(t, &booking(free, u, NOW + H, NOW + 2 * H), &Notices::none())
            .await
            .unwrap(),
    );
    let q = any_vehicle;
    let names =
        |v: Vec<super::reservations::Reservable>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
    let all = storage
        .available_vehicles(t, &q(NOW + 11 * H, NOW + 13 * H))
        .await
        .unwrap();
    assert_eq!(names(all), ["b-free", "c-car"]);
    // Just outside the busy booking's buffer on both sides.
    assert_eq!(
        names(
            storage
                .available_vehicles(t, &q(NOW + 12 * H + BUF, NOW + 13 * H))
                .await
                .unwrap()
        ),
        ["a-busy", "b-free", "c-car"]
    );
    assert_eq!(
        names(
            storage
                .available_vehicles(t, &q(NOW + 8 * H, NOW + 10 * H - BUF))
                .await
                .unwrap()
        ),
        ["a-busy", "b-free", "c-car"]
    );
    assert_eq!(
        names(
            storage
                .available_vehicles(t, &q(NOW + 8 * H, NOW + 10 * H - BUF + 1))
                .await
                .unwrap()
        ),
        ["b-free", "c-car"]
    );
    let mut vans = q(NOW + 11 * H, NOW + 13 * H);
    vans.vehicle_group = Some("vans".into());
    assert_eq!(
        names(storage.available_vehicles(t, &vans).await.unwrap()),
        ["b-free"]
    );
    let mut default_yard = q(NOW, NOW + H);
    default_yard.home_yard = Some("default".into());
    let got = storage.available_vehicles(t, &default_yard).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, car);
    let mut trailers = q(NOW, NOW + H);
    trailers.kind = "trailer".into();
    assert!(storage
        .available_vehicles(t, &trailers)
        .await
        .unwrap()
        .is_empty());
    let other = storage.create_tenant("b").await.unwrap().tenant_id;
    assert!(storage
        .available_vehicles(other, &q(NOW, NOW + H))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        storage
            .reservable(t, car)
            .await
            .unwrap()
            .unwrap()
            .vehicle_group
            .as_deref(),
        Some("cars")
    );
    assert!(storage.reservable(other, car).await.unwrap().is_none());
}

/// The two-step availability query (a range scan that proves vehicles busy,
/// then a probe for the rest) answers as a check of every booking would, where
/// the scan cannot see far enough: a booking that began days before the
/// window, one that starts more than a day into a long window, and a vehicle
/// with so many short bookings that the scan's row cap runs out.
pub async fn availability_agrees_with_checking_every_booking(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let u = Uuid::new_v4();
    let day = 24 * H;
    let base = NOW + 10 * day;
    let mut holding: Vec<(String, i64, i64)> = Vec::new();
    let mut names = Vec::new();
    let mut book = |name: &str, start: i64, end: i64, status: Status| {
        if status.holds() {
            holding.push((name.to_owned(), start, end));
        }
        let mut b = booking(Uuid::nil(), u, start, end);
        b.status = status;
        (name.to_owned(), b)
    };
    let mut plan = Vec::new();
    // Five days straight, from two days before the first window.
    plan.push(book(
        "long",
        base - 2 * day,
        base + 3 * day,
        Status::Approved,
    ));
    // Half-hour bookings back to back (with the buffer) over four days.
    for i in 0..128 {
        let start = base - day + i * (30 * 60_000 + BUF);
        plan.push(book("short", start, start + 30 * 60_000, Status::Pending));
    }
    // Ten hours every day.
    for i in -3..8 {
        let start = base + i * day + 6 * H;
        plan.push(book("daily", start, start + 10 * H, Status::Approved));
    }
    // Uneven lengths and gaps, from a fixed sequence.
    let mut at = base - 3 * day;
    for (len, gap) in [(3, 40), (30, 2), (1, 70), (50, 5), (7, 1), (20, 30), (2, 3)] {
        plan.push(book("uneven", at, at + len * H, Status::Approved));
        at += (len + gap) * H + BUF;
    }
    // Only bookings that no longer hold.
    plan.push(book("cancelled", base, base + 4 * day, Status::Cancelled));
    plan.push(book("no-show", base - day, base + day, Status::NoShow));
    let mut ids = std::collections::HashMap::new();
    for name in [
        "long",
        "short",
        "daily",
        "uneven",
        "cancelled",
        "no-show",
        "idle",
    ] {
        ids.insert(name, vehicle(&storage, t, name, None, None).await);
        names.push(name.to_owned());
    }
    for (name, mut b) in plan {
        b.vehicle_id = ids[name.as_str()];
        done(
            storage
                .create_reservation(t, &b, &Notices::none())
                .await
                .unwrap(),
        );
    }
    names.sort();

    let lengths = [30 * 60_000, 2 * H, 8 * H, day, 3 * day, 7 * day];
    let mut checked = 0;
    for (n, from) in (base - 2 * day..base + 5 * day)
        .step_by(5 * H as usize)
        .enumerate()
    {
        let to = from + lengths[n % lengths.len()];
        let got: Vec<String> = storage
            .available_vehicles(t, &any_vehicle(from, to))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        let want: Vec<String> = names
            .iter()
            .filter(|v| {
                !holding
                    .iter()
                    .any(|(w, s, e)| w == *v && *s < to + BUF && *e + BUF > from)
            })
            .cloned()
            .collect();
        assert_eq!(got, want, "window {from}..{to}");
        checked += 1;
    }
    assert!(checked > 30);
}

pub async fn lists_filter_and_page_in_start_order(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let v = vehicle(&storage, t, "van", None, None).await;
    let w = vehicle(&storage, t, "car", None, None).await;
    let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
    let mut made = Vec::new();
    for i in 0..6 {
        let (veh, user) = if i % 2 == 0 { (v, u1) } else { (w, u2) };
        let mut b = booking(veh, user, NOW + i * H, NOW + i * H + H / 2);
        if i == 5 {
            b.department = Some("sales".into());
        }
        made.push(done(
            storage
                .create_reservation(t, &b, &Notices::none())
                .await
                .unwrap(),
        ));
    }
    let all = ReservationFilter {
        limit: 100,
        ..Default::default()
    };
    let got = storage.list_reservations(t, &all).await.unwrap();
    assert_eq!(got, made);
    let by_user = ReservationFilter {
        user_id: Some(u2),
        ..all.clone()
    };
    assert_eq!(
        storage.list_reservations(t, &by_user).await.unwrap().len(),
        3
    );
    let by_vehicle_window = ReservationFilter {
        vehicle_id: Some(v),
        from_ms: Some(NOW + H),
        to_ms: Some(NOW + 4 * H + 1),
        ..all.clone()
    };
    let got = storage
        .list_reservations(t, &by_vehicle_window)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|r| r.id).collect::<Vec<_>>(),
        [made[2].id, made[4].id]
    );
    let sales = ReservationFilter {
        department: Some("sales".into()),
        cost_center: Some("CC-1".into()),
        ..all.clone()
    };
    assert_eq!(
        storage.list_reservations(t, &sales).await.unwrap(),
        [made[5].clone()]
    );
    let mut cancel = Change::new(NOW);
    cancel.to = Some(Status::Cancelled);
    done(
        storage
            .update_reservation(t, made[0].id, &cancel, &Notices::none())
            .await
            .unwrap(),
    );
    let holding = ReservationFilter {
        statuses: vec![Status::Cancelled, Status::Rejected],
        ..all.clone()
    };
    let got = storage.list_reservations(t, &holding).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, made[0].id);
    // Pages of two, resuming after the last row seen.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = storage
            .list_reservations(
                t,
                &ReservationFilter {
                    after,
                    limit: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| (r.start_ms, r.id));
        seen.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(seen, made.iter().map(|r| r.id).collect::<Vec<_>>());
}

pub async fn settings_default_until_set_and_feed_tokens_rotate(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let other = storage.create_tenant("b").await.unwrap().tenant_id;
    assert_eq!(
        storage.reservation_settings(t).await.unwrap(),
        ReservationSettings::default()
    );
    let mut s = ReservationSettings {
        turnaround_minutes: 30,
        ..Default::default()
    };
    s.approval.insert("vans".into(), Approval::Auto);
    storage.set_reservation_settings(t, &s, NOW).await.unwrap();
    assert_eq!(storage.reservation_settings(t).await.unwrap(), s);
    assert_eq!(
        storage.reservation_settings(other).await.unwrap(),
        ReservationSettings::default()
    );
    let v = Uuid::new_v4();
    assert_eq!(
        storage
            .calendar_token(t, FeedSubject::Vehicle, v)
            .await
            .unwrap(),
        None
    );
    storage
        .set_calendar_token(t, FeedSubject::Vehicle, v, [1; 32], NOW)
        .await
        .unwrap();
    storage
        .set_calendar_token(t, FeedSubject::Vehicle, v, [2; 32], NOW + 1)
        .await
        .unwrap();
    assert_eq!(
        storage
            .calendar_token(t, FeedSubject::Vehicle, v)
            .await
            .unwrap(),
        Some([2; 32])
    );
    assert_eq!(
        storage
            .calendar_token(t, FeedSubject::User, v)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage
            .calendar_token(other, FeedSubject::Vehicle, v)
            .await
            .unwrap(),
        None
    );
}

pub async fn yard_bookings_are_approved_ones_of_the_yard_with_each_badge(
    storage: Arc<dyn Storage>,
) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let north = vehicle(&storage, t, "north-van", None, Some("north")).await;
    let home = vehicle(&storage, t, "home-van", None, None).await;
    let user = storage
        .create_user(
            t,
            super::access::NewUser {
                email: "d@example.com".into(),
                name: "Dana".into(),
                role: crate::http::auth::Role::Driver,
            },
            None,
            NOW,
        )
        .await
        .unwrap()
        .user_id;
    let (b1, b2) = (Uuid::new_v4(), Uuid::new_v4());
    storage.link_badge(t, user, b1).await.unwrap();
    storage.link_badge(t, user, b2).await.unwrap();
    let mut approved = booking(north, user, NOW + H, NOW + 2 * H);
    approved.status = Status::Approved;
    done(
        storage
            .create_reservation(t, &approved, &Notices::none())
            .await
            .unwrap(),
    );
    // Pending, later than the horizon, and another yard's: not carried.
    done(
        storage
            .create_reservation(
                t,
                &booking(north, user, NOW + 3 * H, NOW + 4 * H),
                &Notices::none(),
            )
            .await
            .unwrap(),
    );
    let mut late = booking(north, user, NOW + 30 * H, NOW + 31 * H);
    late.status = Status::Approved;
    done(
        storage
            .create_reservation(t, &late, &Notices::none())
            .await
            .unwrap(),
    );
    let mut home_b = booking(home, user, NOW + H, NOW + 2 * H);
    home_b.status = Status::Approved;
    done(
        storage
            .create_reservation(t, &home_b, &Notices::none())
            .await
            .unwrap(),
    );

    let got = storage
        .yard_bookings(t, "north", NOW, NOW + 24 * H)
        .await
        .unwrap();
    let mut badges: Vec<Uuid> = got.iter().map(|b| b.badge_id).collect();
    badges.sort();
    let mut want = vec![b1, b2];
    want.sort();
    assert_eq!(badges, want);
    assert!(got
        .iter()
        .all(|b| b.reservation_id == approved.id && b.vehicle_id == north));
    let got = storage
        .yard_bookings(t, "default", NOW, NOW + 24 * H)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|b| b.vehicle_id == home));
}

/// A backend's way to make every later insert into the mail outbox fail, for
/// the failure-injection checks; the guard a test storage comes with knows
/// its database.
pub trait OutboxFault {
    fn break_mail_outbox(&self) -> impl std::future::Future<Output = ()>;
}

/// A tenant with SMTP configured, a driver with an address, a vehicle, and
/// webhooks: one for reservation events, one for faults only.
async fn notified_tenant(storage: &Arc<dyn Storage>) -> (Uuid, Uuid, Uuid, Uuid, Uuid) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let settings = ReservationSettings {
        smtp: Some(super::reservations::SmtpSettings {
            host: "mail.example.com".into(),
            port: 587,
            from: "fleet@example.com".into(),
            starttls: true,
            username: None,
            password: None,
        }),
        ..Default::default()
    };
    storage
        .set_reservation_settings(t, &settings, NOW)
        .await
        .unwrap();
    let user = storage
        .create_user(
            t,
            super::access::NewUser {
                email: "dana@example.com".into(),
                name: "Dana".into(),
                role: crate::http::auth::Role::Driver,
            },
            None,
            NOW,
        )
        .await
        .unwrap()
        .user_id;
    let v = vehicle(storage, t, "van", None, None).await;
    let hook = storage
        .create_webhook(
            t,
            "https://hooks.example.com/r",
            &[crate::webhooks::KIND_RESERVATION.to_owned()],
            "json",
            "s3cret",
            NOW,
        )
        .await
        .unwrap()
        .id;
    let faults = storage
        .create_webhook(
            t,
            "https://hooks.example.com/f",
            &[crate::webhooks::KIND_FAULT.to_owned()],
            "json",
            "s3cret",
            NOW,
        )
        .await
        .unwrap()
        .id;
    (t, user, v, hook, faults)
}

fn notices_of(t: Uuid, said: &[Notice], r: &Reservation) -> Notices {
    let to = notify::Recipient {
        name: "Dana".into(),
        email: "dana@example.com".into(),
    };
    let mut out = Notices::none();
    for n in said {
        out.extend(notify::notices(t, *n, r, "van", Some(&to)));
    }
    out
}

/// `r` as `change` (pinned to `r`'s version) leaves it.
fn after(r: &Reservation, change: &mut Change) -> Reservation {
    change.expected_version = Some(r.version);
    let mut next = r.clone();
    change.apply(&mut next);
    next
}

async fn mail_ids(storage: &Arc<dyn Storage>, t: Uuid) -> Vec<String> {
    let mut ids: Vec<String> = storage
        .list_mail(t, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message_id)
        .collect();
    ids.sort();
    ids
}

async fn delivery_events(storage: &Arc<dyn Storage>, t: Uuid, hook: Uuid) -> Vec<String> {
    let mut ids: Vec<String> = storage
        .list_deliveries(t, hook, 100)
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|d| d.event_id)
        .collect();
    ids.sort();
    ids
}

fn audit_entry(t: Uuid, user: Uuid, action: &str, id: Uuid) -> AuditEntry {
    AuditEntry {
        tenant_id: t,
        audit_id: Uuid::new_v4(),
        at_ms: NOW,
        actor_kind: ActorKind::Key,
        actor_key_id: Some(Uuid::new_v4()),
        actor_user_id: Some(user),
        action: action.into(),
        target: format!("reservation:{id}"),
        detail: serde_json::json!({ "version": 2 }),
        request_id: Some("req-1".into()),
    }
}

async fn audit_actions(storage: &Arc<dyn Storage>, t: Uuid) -> Vec<String> {
    storage
        .query_audit(
            t,
            AuditQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

pub async fn a_done_write_queues_its_notices_and_a_refused_one_queues_none(
    storage: Arc<dyn Storage>,
) {
    let (t, user, v, hook, faults) = notified_tenant(&storage).await;
    let mut b = booking(v, user, NOW + 10 * H, NOW + 12 * H);
    b.status = Status::Approved;
    let said = [Notice::Created, Notice::Approved];
    let first = done(
        storage
            .create_reservation(t, &b, &notices_of(t, &said, &b))
            .await
            .unwrap(),
    );
    let mut want_mail: Vec<String> = said
        .iter()
        .map(|n| crate::mail::message_id(&n.event_id(&first)))
        .collect();
    want_mail.sort();
    let mut want_events: Vec<String> = said.iter().map(|n| n.event_id(&first)).collect();
    want_events.sort();
    assert_eq!(mail_ids(&storage, t).await, want_mail);
    assert_eq!(delivery_events(&storage, t, hook).await, want_events);
    assert!(delivery_events(&storage, t, faults).await.is_empty());
    let mail = storage.list_mail(t, None, 10).await.unwrap();
    assert!(mail
        .iter()
        .all(|m| m.to == "dana@example.com" && m.source == "reservation" && m.state == "pending"));

    // A conflicting booking and a stale change are refused and queue nothing.
    let clash = booking(v, user, NOW + 11 * H, NOW + 13 * H);
    assert!(matches!(
        storage
            .create_reservation(t, &clash, &notices_of(t, &[Notice::Created], &clash))
            .await
            .unwrap(),
        Write::Conflict(_)
    ));
    let mut cancel = Change::new(NOW + 1);
    cancel.from = vec![Status::Pending, Status::Approved];
    cancel.to = Some(Status::Cancelled);
    let mut stale = cancel.clone();
    let next = after(&first, &mut stale);
    stale.expected_version = Some(first.version + 7);
    let mut with_audit = notices_of(t, &[Notice::Cancelled], &next);
    with_audit.audit = Some(audit_entry(t, user, "reservation.refused", first.id));
    assert!(matches!(
        storage
            .update_reservation(t, first.id, &stale, &with_audit)
            .await
            .unwrap(),
        Write::Stale(_)
    ));
    assert_eq!(mail_ids(&storage, t).await, want_mail);
    assert_eq!(delivery_events(&storage, t, hook).await, want_events);
    assert!(audit_actions(&storage, t).await.is_empty());

    // A done change queues its own and writes its audit entry, and the same
    // notice again queues nothing.
    let next = after(&first, &mut cancel);
    let mut with_audit = notices_of(t, &[Notice::Cancelled], &next);
    let entry = audit_entry(t, user, "reservation.cancel", first.id);
    with_audit.audit = Some(entry.clone());
    let cancelled = done(
        storage
            .update_reservation(t, first.id, &cancel, &with_audit)
            .await
            .unwrap(),
    );
    assert_eq!(cancelled, next);
    let stored = storage
        .query_audit(
            t,
            AuditQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stored, [entry]);
    let again = notices_of(t, &[Notice::Cancelled], &next);
    let mut touch = Change::new(NOW + 2);
    touch.purpose = Some(Some("again".into()));
    done(
        storage
            .update_reservation(t, first.id, &touch, &again)
            .await
            .unwrap(),
    );
    let mail = mail_ids(&storage, t).await;
    assert_eq!(mail.len(), 3);
    assert!(mail.contains(&crate::mail::message_id(&Notice::Cancelled.event_id(&next))));
    assert_eq!(delivery_events(&storage, t, hook).await.len(), 3);
}

pub async fn a_booking_whose_notices_cannot_be_queued_is_not_stored(
    storage: Arc<dyn Storage>,
    fault: &impl OutboxFault,
) {
    let (t, user, v, hook, _) = notified_tenant(&storage).await;
    let kept = booking(v, user, NOW + 10 * H, NOW + 12 * H);
    let kept = done(
        storage
            .create_reservation(t, &kept, &notices_of(t, &[Notice::Created], &kept))
            .await
            .unwrap(),
    );
    let mail_before = mail_ids(&storage, t).await;
    let events_before = delivery_events(&storage, t, hook).await;
    assert_eq!((mail_before.len(), events_before.len()), (1, 1));

    fault.break_mail_outbox().await;
    // The webhook row is written before the mail fails: both go with the booking.
    let lost = booking(v, user, NOW + 20 * H, NOW + 22 * H);
    assert!(storage
        .create_reservation(t, &lost, &notices_of(t, &[Notice::Created], &lost))
        .await
        .is_err());
    assert_eq!(storage.reservation(t, lost.id).await.unwrap(), None);
    let mut approve = Change::new(NOW + 1);
    approve.from = vec![Status::Pending];
    approve.to = Some(Status::Approved);
    let next = after(&kept, &mut approve);
    assert!(storage
        .update_reservation(
            t,
            kept.id,
            &approve,
            &notices_of(t, &[Notice::Approved], &next)
        )
        .await
        .is_err());
    assert_eq!(storage.reservation(t, kept.id).await.unwrap(), Some(kept));
    assert_eq!(mail_ids(&storage, t).await, mail_before);
    assert_eq!(delivery_events(&storage, t, hook).await, events_before);
    // The window the failed booking asked for is still free.
    let free = storage
        .available_vehicles(
            t,
            &AvailabilityQuery {
                from_ms: NOW + 20 * H,
                to_ms: NOW + 22 * H,
                buffer_ms: BUF,
                vehicle_group: None,
                home_yard: None,
                kind: "vehicle".into(),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(free.len(), 1);
    // A write with nothing to tell still works.
    done(
        storage
            .create_reservation(t, &lost, &Notices::none())
            .await
            .unwrap(),
    );
}

pub async fn a_reminder_and_an_overdue_notice_are_queued_once_when_replicas_race(
    storage: Arc<dyn Storage>,
) {
    let (t, user, v, hook, _) = notified_tenant(&storage).await;
    // Approved, starting in 30 minutes: every replica's pass decides to remind.
    let mut soon = booking(v, user, NOW + H / 2, NOW + 2 * H);
    soon.status = Status::Approved;
    done(
        storage
            .create_reservation(t, &soon, &Notices::none())
            .await
            .unwrap(),
    );
    let replicas: Vec<crate::AppState> = (0..6)
        .map(|_| crate::AppState::new(storage.clone()))
        .collect();
    let passes = futures_util::future::join_all(
        replicas
            .iter()
            .map(|s| crate::reservations::task::run_once(s, NOW)),
    )
    .await;
    let reminders: u32 = passes.into_iter().map(|p| p.unwrap().reminders).sum();
    assert_eq!(reminders, 1);
    let reminded = storage.reservation(t, soon.id).await.unwrap().unwrap();
    assert_eq!(reminded.reminded_at_ms, Some(NOW));
    let want = Notice::Reminder.event_id(&reminded);
    assert_eq!(
        mail_ids(&storage, t).await,
        [crate::mail::message_id(&want)]
    );
    assert_eq!(delivery_events(&storage, t, hook).await, [want]);
    // A later pass has nothing more to say.
    let later = crate::reservations::task::run_once(&replicas[0], NOW + 60_000)
        .await
        .unwrap();
    assert_eq!(later.reminders, 0);
    assert_eq!(mail_ids(&storage, t).await.len(), 1);

    // Out past its end and grace: replicas racing to flag it overdue.
    let mut out = booking(v, user, NOW - 5 * H, NOW - 3 * H);
    out.status = Status::Active;
    let out = done(
        storage
            .create_reservation(t, &out, &Notices::none())
            .await
            .unwrap(),
    );
    let settings = storage.reservation_settings(t).await.unwrap();
    let race = (0..6).map(|_| {
        let storage = storage.clone();
        let out = out.clone();
        let settings = settings.clone();
        async move {
            let action = crate::reservations::schedule::decide(&out, true, NOW, &settings);
            assert_eq!(action, Some(crate::reservations::schedule::Action::Overdue));
            let change =
                crate::reservations::schedule::change_for(action.unwrap(), &out, NOW, &settings);
            let mut next = out.clone();
            change.apply(&mut next);
            storage
                .update_reservation(
                    t,
                    out.id,
                    &change,
                    &notices_of(t, &[Notice::Overdue], &next),
                )
                .await
                .unwrap()
        }
    });
    let writes = futures_util::future::join_all(race).await;
    assert_eq!(
        writes
            .iter()
            .filter(|w| matches!(w, Write::Done(_)))
            .count(),
        1
    );
    let flagged = storage.reservation(t, out.id).await.unwrap().unwrap();
    let overdue = Notice::Overdue.event_id(&flagged);
    assert!(mail_ids(&storage, t)
        .await
        .contains(&crate::mail::message_id(&overdue)));
    assert_eq!(mail_ids(&storage, t).await.len(), 2);
    assert_eq!(delivery_events(&storage, t, hook).await.len(), 2);
}

#[macro_export]
macro_rules! conformance_reservations_suite {
    (optional $make:expr) => {
        $crate::conformance_reservations_suite!(@optional $make;
            overlapping_holding_bookings_of_a_vehicle_are_refused_with_the_blocking_window,
            changes_apply_at_the_expected_version_and_status_and_recheck_the_window,
            availability_lists_free_vehicles_matching_the_filters,
            availability_agrees_with_checking_every_booking,
            lists_filter_and_page_in_start_order,
            settings_default_until_set_and_feed_tokens_rotate,
            yard_bookings_are_approved_ones_of_the_yard_with_each_badge,
            a_done_write_queues_its_notices_and_a_refused_one_queues_none,
            a_reminder_and_an_overdue_notice_are_queued_once_when_replicas_race,
        );
        $crate::conformance_reservations_suite!(@optional_fault $make;
            a_booking_whose_notices_cannot_be_queued_is_not_stored,
        );
    };
    (@optional $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((storage, _guard)) = $make.await else { return };
                $crate::storage::conformance_reservations::$name(storage).await;
            }
        )*
    };
    (@optional_fault $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((storage, guard)) = $make.await else { return };
                $crate::storage::conformance_reservations::$name(storage, &guard).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::conformance_reservations_suite!(@tests $make;
            overlapping_holding_bookings_of_a_vehicle_are_refused_with_the_blocking_window,
            changes_apply_at_the_expected_version_and_status_and_recheck_the_window,
            availability_lists_free_vehicles_matching_the_filters,
            availability_agrees_with_checking_every_booking,
            lists_filter_and_page_in_start_order,
            settings_default_until_set_and_feed_tokens_rotate,
            yard_bookings_are_approved_ones_of_the_yard_with_each_badge,
            a_done_write_queues_its_notices_and_a_refused_one_queues_none,
            a_reminder_and_an_overdue_notice_are_queued_once_when_replicas_race,
        );
        $crate::conformance_reservations_suite!(@fault $make;
            a_booking_whose_notices_cannot_be_queued_is_not_stored,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (storage, _guard) = $make.await;
                $crate::storage::conformance_reservations::$name(storage).await;
            }
        )*
    };
    (@fault $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (storage, guard) = $make.await;
                $crate::storage::conformance_reservations::$name(storage, &guard).await;
            }
        )*
    };
}
