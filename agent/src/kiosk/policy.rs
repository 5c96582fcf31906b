//! What the kiosk decides, over the verified offline snapshot it holds: which
//! label a scan names, and whether a driver may take a vehicle now. Pure: the
//! snapshot, the scanned text and the time come in, a decision goes out.

use fleet_protocol::label::{self, LabelError, LabelKind, TenantTrust};
use fleet_protocol::snapshot::{Snapshot, SnapshotAsset, WalkUp};
use serde::Serialize;
use uuid::Uuid;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
/// Odometer and fuel readings older than this are left off a check-in unless
/// `[kiosk] meter_max_age_h` says otherwise: they say more about an earlier
/// trip than about the vehicle now.
pub const DEFAULT_METER_MAX_AGE_MS: i64 = 12 * HOUR_MS;

/// Why the kiosk said no. Each has a stable snake_case code (events, the local
/// API) and a sentence for the screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    /// The label did not verify: forged, another fleet's, expired, unreadable.
    Label {
        error: LabelErrorKind,
    },
    /// A good label (or a typed code) the snapshot does not know.
    UnknownCode,
    BadgeRevoked {
        driver: String,
    },
    KeyRevoked,
    /// A badge where a vehicle or key was expected, or the other way round, at
    /// a step that cannot take it.
    WrongKind {
        expected: &'static str,
    },
    /// Reserved now, but for another driver.
    ReservedForAnother,
    /// The driver has a reservation for this vehicle, but not one covering now.
    ReservationNotNow {
        start_ms: i64,
        end_ms: i64,
    },
    WalkUpRefused,
    WalkUpQueued,
    UnsafeDefect {
        asset: String,
        /// What the open unsafe defects are (`brakes: pedal soft`), as the
        /// snapshot summarises them.
        defects: Vec<String>,
    },
    AlreadyCheckedOut {
        asset: String,
    },
    SnapshotMissing,
    SnapshotExpired {
        valid_until_ms: i64,
    },
}

/// [`LabelError`] without its payload, for a `Refusal` that compares and serializes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelErrorKind {
    Malformed,
    UnsupportedVersion,
    ForeignTenant,
    Forged,
    Expired,
}

impl From<&LabelError> for LabelErrorKind {
    fn from(e: &LabelError) -> Self {
        match e {
            LabelError::Malformed(_) => LabelErrorKind::Malformed,
            LabelError::UnsupportedVersion(_) => LabelErrorKind::UnsupportedVersion,
            LabelError::ForeignTenant => LabelErrorKind::ForeignTenant,
            LabelError::Forged => LabelErrorKind::Forged,
            LabelError::Expired { .. } => LabelErrorKind::Expired,
        }
    }
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Label { error } => match error {
                LabelErrorKind::Malformed => "label_malformed",
                LabelErrorKind::UnsupportedVersion => "label_unsupported_version",
                LabelErrorKind::ForeignTenant => "label_foreign_tenant",
                LabelErrorKind::Forged => "label_forged",
                LabelErrorKind::Expired => "label_expired",
            },
            Refusal::UnknownCode => "unknown_code",
            Refusal::BadgeRevoked { .. } => "badge_revoked",
            Refusal::KeyRevoked => "key_revoked",
            Refusal::WrongKind { .. } => "wrong_kind",
            Refusal::ReservedForAnother => "reserved_for_another",
            Refusal::ReservationNotNow { .. } => "reservation_not_now",
            Refusal::WalkUpRefused => "walkup_refused",
            Refusal::WalkUpQueued => "walkup_queued",
            Refusal::UnsafeDefect { .. } => "unsafe_defect",
            Refusal::AlreadyCheckedOut { .. } => "already_checked_out",
            Refusal::SnapshotMissing => "snapshot_missing",
            Refusal::SnapshotExpired { .. } => "snapshot_expired",
        }
    }

    /// What the screen says.
    pub fn message(&self) -> String {
        match self {
            Refusal::Label { error } => match error {
                LabelErrorKind::Malformed => "This code is not a fleet label.".into(),
                LabelErrorKind::UnsupportedVersion => {
                    "This label is newer than this kiosk understands. Ask for the kiosk to be updated."
                        .into()
                }
                LabelErrorKind::ForeignTenant => "This label belongs to another fleet.".into(),
                LabelErrorKind::Forged => {
                    "This label's signature is not valid: it is forged or damaged.".into()
                }
                LabelErrorKind::Expired => "This label has expired.".into(),
            },
            Refusal::UnknownCode => "This code is not known at this yard.".into(),
            Refusal::BadgeRevoked { driver } => {
                format!("The badge of {driver} has been revoked. See the dispatcher.")
            }
            Refusal::KeyRevoked => "This key tag has been withdrawn.".into(),
            Refusal::WrongKind { expected } => format!("Please scan {expected}."),
            Refusal::ReservedForAnother => {
                "This vehicle is reserved for another driver now.".into()
            }
            Refusal::ReservationNotNow { start_ms, end_ms } => format!(
                "Your reservation for this vehicle is from {} to {} (UTC), not now.",
                hhmm(*start_ms),
                hhmm(*end_ms)
            ),
            Refusal::WalkUpRefused => {
                "You have no reservation for this vehicle, and this yard does not hand out vehicles without one."
                    .into()
            }
            Refusal::WalkUpQueued => {
                "You have no reservation for this vehicle. Your request was sent to the dispatcher for approval."
                    .into()
            }
            Refusal::UnsafeDefect { asset, defects } if defects.is_empty() => {
                format!("{asset} has an open safety defect and cannot be handed out.")
            }
            Refusal::UnsafeDefect { asset, defects } => format!(
                "{asset} has an open safety defect and cannot be handed out: {}.",
                defects.join("; ")
            ),
            Refusal::AlreadyCheckedOut { asset } => {
                format!("{asset} is already checked out here. Check it in first.")
            }
            Refusal::SnapshotMissing => {
                "This kiosk has no reservation data yet. It needs to reach the server once.".into()
            }
            Refusal::SnapshotExpired { .. } => {
                "This kiosk's reservation data is out of date. It needs to reach the server.".into()
            }
        }
    }
}

fn hhmm(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:02}-{:02} {:02}:{:02}",
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => ms.to_string(),
    }
}

/// What a scan named, once verified and found in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Code {
    Badge {
        id: Uuid,
        driver: String,
    },
    /// An asset or vehicle tag, or a key tag (then `key` is set).
    Asset(AssetRef),
}

/// An asset as the flow carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetRef {
    pub id: Uuid,
    pub name: String,
    /// The key tag scanned, if the scan was a key tag.
    pub key: Option<Uuid>,
    /// The key-box slot holding its key, if it has one.
    pub slot: Option<u32>,
}

/// The snapshot, if it can be used at `now_ms`.
pub fn usable(snapshot: Option<&Snapshot>, now_ms: i64) -> Result<&Snapshot, Refusal> {
    let snap = snapshot.ok_or(Refusal::SnapshotMissing)?;
    if now_ms > snap.valid_until_ms {
        return Err(Refusal::SnapshotExpired {
            valid_until_ms: snap.valid_until_ms,
        });
    }
    Ok(snap)
}

/// What a scanned or typed text names. A typed short code (`K7Q-2F9-XM4`) is
/// looked up in the snapshot; anything else must be a label signed by the
/// tenant's key.
pub fn resolve(
    text: &str,
    snap: &Snapshot,
    trust: &TenantTrust,
    now_ms: i64,
) -> Result<Code, Refusal> {
    let text = text.trim();
    let (kind, id) = if text.len() <= 16 && label::normalize_short_code(text).is_some() {
        let id = snap.resolve_short_code(text).ok_or(Refusal::UnknownCode)?;
        (kind_of(snap, id).ok_or(Refusal::UnknownCode)?, id)
    } else {
        let l =
            label::verify_at(text, trust, now_ms.div_euclid(1000)).map_err(|e| Refusal::Label {
                error: LabelErrorKind::from(&e),
            })?;
        (l.kind, l.id)
    };
    match kind {
        LabelKind::Badge => {
            let b = snap.badge(id).ok_or(Refusal::UnknownCode)?;
            if b.revoked {
                return Err(Refusal::BadgeRevoked {
                    driver: b.driver_name.clone(),
                });
            }
            Ok(Code::Badge {
                id,
                driver: b.driver_name.clone(),
            })
        }
        LabelKind::Key => {
            let k = snap.key(id).ok_or(Refusal::UnknownCode)?;
            if k.revoked {
                return Err(Refusal::KeyRevoked);
            }
            let a = snap.asset(k.asset).ok_or(Refusal::UnknownCode)?;
            Ok(Code::Asset(AssetRef {
                id: a.id,
                name: a.name.clone(),
                key: Some(id),
                slot: Some(k.slot),
            }))
        }
        LabelKind::Asset | LabelKind::Vehicle => {
            let a = snap.asset(id).ok_or(Refusal::UnknownCode)?;
            Ok(Code::Asset(AssetRef {
                id,
                name: a.name.clone(),
                key: None,
                slot: slot_of(snap, id),
            }))
        }
    }
}

/// The kind of the thing `id` names in the snapshot (short codes carry no kind).
fn kind_of(snap: &Snapshot, id: Uuid) -> Option<LabelKind> {
    if snap.badge(id).is_some() {
        Some(LabelKind::Badge)
    } else if snap.key(id).is_some() {
        Some(LabelKind::Key)
    } else {
        snap.asset(id).map(|a| a.kind)
    }
}

/// The slot of the first key tag of `asset` that is not withdrawn.
fn slot_of(snap: &Snapshot, asset: Uuid) -> Option<u32> {
    snap.keys
        .iter()
        .filter(|k| k.asset == asset && !k.revoked)
        .map(|k| k.slot)
        .min()
}

/// A check-out the policy allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// The reservation it fulfils; `None` for an allowed walk-up.
    pub reservation: Option<Uuid>,
    /// When the vehicle is due back: the reservation's end, or the policy's
    /// longest check-out for a walk-up.
    pub due_ms: i64,
}

/// May `badge` take `asset` at `now_ms`? A reservation of this driver for this
/// vehicle covers now if it has started (or starts within the grace window)
/// and has not ended. Without one, the tenant's walk-up policy decides, unless
/// the vehicle is reserved for someone else now.
pub fn check_out(
    snap: &Snapshot,
    badge: Uuid,
    asset: Uuid,
    now_ms: i64,
) -> Result<Approval, Refusal> {
    let b = snap.badge(badge).ok_or(Refusal::UnknownCode)?;
    if b.revoked {
        return Err(Refusal::BadgeRevoked {
            driver: b.driver_name.clone(),
        });
    }
    let a = snap.asset(asset).ok_or(Refusal::UnknownCode)?;
    if a.unsafe_defect {
        return Err(Refusal::UnsafeDefect {
            asset: a.name.clone(),
            defects: snap
                .defects_of(asset)
                .filter(|d| d.is_unsafe)
                .map(|d| d.summary())
                .collect(),
        });
    }
    let grace = i64::from(snap.policy.grace_minutes) * MINUTE_MS;
    let covers = |start: i64, end: i64| start - grace <= now_ms && now_ms < end;
    let mine: Vec<_> = snap
        .reservations
        .iter()
        .filter(|r| r.vehicle == asset && r.badge == badge)
        .collect();
    if let Some(r) = mine.iter().find(|r| covers(r.start_ms, r.end_ms)) {
        return Ok(Approval {
            reservation: Some(r.id),
            due_ms: r.end_ms,
        });
    }
    if snap
        .reservations
        .iter()
        .any(|r| r.vehicle == asset && r.badge != badge && covers(r.start_ms, r.end_ms))
    {
        return Err(Refusal::ReservedForAnother);
    }
    // The driver's nearest reservation for this vehicle, to say when it is.
    if let Some(r) = mine
        .iter()
        .filter(|r| r.end_ms > now_ms)
        .min_by_key(|r| r.start_ms)
        .or_else(|| mine.iter().max_by_key(|r| r.end_ms))
    {
        return Err(Refusal::ReservationNotNow {
            start_ms: r.start_ms,
            end_ms: r.end_ms,
        });
    }
    match snap.policy.walk_up {
        WalkUp::Allow => Ok(Approval {
            reservation: None,
            due_ms: now_ms + i64::from(snap.policy.max_checkout_hours) * HOUR_MS,
        }),
        WalkUp::Refuse => Err(Refusal::WalkUpRefused),
        WalkUp::Queue => Err(Refusal::WalkUpQueued),
    }
}

/// The vehicle's odometer and fuel as its gateway last reported them, each
/// with its time, if no older than the kiosk's limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Meters {
    pub odometer_km: Option<f64>,
    pub odometer_at_ms: Option<i64>,
    pub fuel_pct: Option<f64>,
    pub fuel_at_ms: Option<i64>,
}

/// `asset`'s readings no older than `max_age_ms` at `now_ms`. A reading from
/// the future (a gateway's clock ahead) counts as recent.
pub fn recent_meters(asset: &SnapshotAsset, now_ms: i64, max_age_ms: i64) -> Meters {
    let fresh = |v: Option<f64>, at: Option<i64>| match (v, at) {
        (Some(v), Some(at)) if now_ms - at <= max_age_ms && v.is_finite() => (Some(v), Some(at)),
        _ => (None, None),
    };
    let (odometer_km, odometer_at_ms) = fresh(asset.odometer_km, asset.odometer_at_ms);
    let (fuel_pct, fuel_at_ms) = fresh(asset.fuel_pct, asset.fuel_at_ms);
    Meters {
        odometer_km,
        odometer_at_ms,
        fuel_pct,
        fuel_at_ms,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use fleet_protocol::label::Label;
    use fleet_protocol::snapshot::{
        KioskPolicy, SnapshotAsset, SnapshotBadge, SnapshotDefect, SnapshotKey, SnapshotReservation,
    };

    pub const NOW: i64 = 1_780_000_000_000;

    /// A test id whose short code (its first 45 bits) differs from every other's.
    pub fn id(n: u128) -> Uuid {
        Uuid::from_u128(n << 100 | n)
    }

    /// A yard: two drivers (Ann; Bob, revoked), three vehicles (van, truck with
    /// an unsafe defect, car), key tags for van (slot 2) and car (slot 0), and
    /// Ann's reservation of the van from now - 10 min to now + 2 h.
    pub struct Yard {
        pub key: SigningKey,
        pub trust: TenantTrust,
        pub snap: Snapshot,
        pub ann: Uuid,
        pub bob: Uuid,
        pub van: Uuid,
        pub truck: Uuid,
        pub car: Uuid,
        pub van_key: Uuid,
        pub res: Uuid,
    }

    impl Yard {
        pub fn new() -> Self {
            let key = SigningKey::from_bytes(&[7u8; 32]);
            let tenant = id(0x11);
            let trust = TenantTrust::new(tenant, key.verifying_key());
            let (ann, bob) = (id(0xa1), id(0xb0b));
            let (van, truck, car) = (id(0x7a1), id(0x7a2), id(0x7a3));
            let (van_key, car_key) = (id(0xc1), id(0xc2));
            let res = id(0x5e5);
            let mut snap = Snapshot::empty(tenant, "north", NOW - 60_000, NOW + 86_400_000);
            snap.policy = KioskPolicy {
                walk_up: WalkUp::Refuse,
                grace_minutes: 15,
                max_checkout_hours: 8,
            };
            snap.badges = vec![
                SnapshotBadge {
                    id: ann,
                    driver_name: "Ann".into(),
                    revoked: false,
                },
                SnapshotBadge {
                    id: bob,
                    driver_name: "Bob".into(),
                    revoked: true,
                },
            ];
            let asset = |id, name: &str, unsafe_defect| SnapshotAsset {
                id,
                kind: LabelKind::Vehicle,
                name: name.into(),
                short_code: label::short_code(id),
                unsafe_defect,
                odometer_km: Some(1234.5),
                odometer_at_ms: Some(NOW - 60_000),
                fuel_pct: Some(80.0),
                fuel_at_ms: Some(NOW - 5 * HOUR_MS),
            };
            snap.assets = vec![
                asset(van, "Van 12", false),
                asset(truck, "Truck 3", true),
                asset(car, "Car 5", false),
            ];
            snap.keys = vec![
                SnapshotKey {
                    id: van_key,
                    asset: van,
                    slot: 2,
                    revoked: false,
                },
                SnapshotKey {
                    id: car_key,
                    asset: car,
                    slot: 0,
                    revoked: false,
                },
            ];
            snap.reservations = vec![SnapshotReservation {
                id: res,
                vehicle: van,
                badge: ann,
                start_ms: NOW - 10 * MINUTE_MS,
                end_ms: NOW + 2 * HOUR_MS,
            }];
            for id in [ann, bob, van, truck, car, van_key, car_key] {
                snap.short_codes.insert(label::short_code(id), id);
            }
            Yard {
                key,
                trust,
                snap,
                ann,
                bob,
                van,
                truck,
                car,
                van_key,
                res,
            }
        }

        pub fn label(&self, kind: LabelKind, id: Uuid) -> String {
            Label::new(kind, id).sign(&self.key)
        }
    }

    #[test]
    fn a_badge_label_names_its_driver_and_a_key_tag_its_vehicle_and_slot() {
        let y = Yard::new();
        let badge = resolve(&y.label(LabelKind::Badge, y.ann), &y.snap, &y.trust, NOW);
        assert_eq!(
            badge,
            Ok(Code::Badge {
                id: y.ann,
                driver: "Ann".into()
            })
        );
        let key = resolve(&y.label(LabelKind::Key, y.van_key), &y.snap, &y.trust, NOW);
        assert_eq!(
            key,
            Ok(Code::Asset(AssetRef {
                id: y.van,
                name: "Van 12".into(),
                key: Some(y.van_key),
                slot: Some(2)
            }))
        );
        let van = resolve(&y.label(LabelKind::Vehicle, y.van), &y.snap, &y.trust, NOW);
        assert!(matches!(
            van,
            Ok(Code::Asset(AssetRef {
                slot: Some(2),
                key: None,
                ..
            }))
        ));
    }

    #[test]
    fn a_typed_short_code_in_any_case_resolves_like_the_label() {
        let y = Yard::new();
        let typed = label::short_code(y.van_key)
            .to_lowercase()
            .replace('-', " ");
        let code = resolve(&typed, &y.snap, &y.trust, NOW).expect("resolves");
        assert!(matches!(code, Code::Asset(AssetRef { slot: Some(2), .. })));
        assert_eq!(
            resolve("ZZZ-ZZZ-ZZZ", &y.snap, &y.trust, NOW),
            Err(Refusal::UnknownCode)
        );
    }

    #[test]
    fn forged_foreign_expired_and_malformed_labels_are_refused_with_their_own_codes() {
        let y = Yard::new();
        let mut forged = y.label(LabelKind::Badge, y.ann).into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).expect("ascii");
        let other = SigningKey::from_bytes(&[9u8; 32]);
        let foreign = Label::new(LabelKind::Badge, y.ann).sign(&other);
        let mut exp = Label::new(LabelKind::Badge, y.ann);
        exp.expires_at_s = Some((NOW / 1000 - 60) as u32);
        let expired = exp.sign(&y.key);
        let code = |t: &str| resolve(t, &y.snap, &y.trust, NOW).map_err(|r| r.code());
        assert_eq!(code(&forged), Err("label_forged"));
        assert_eq!(code(&foreign), Err("label_foreign_tenant"));
        assert_eq!(code(&expired), Err("label_expired"));
        assert_eq!(
            code("https://example.com/not-a-label"),
            Err("label_malformed")
        );
        let unknown = y.label(LabelKind::Vehicle, id(0xdead));
        assert_eq!(code(&unknown), Err("unknown_code"));
    }

    #[test]
    fn a_revoked_badge_is_refused_at_the_scan_with_the_drivers_name() {
        let y = Yard::new();
        let r = resolve(&y.label(LabelKind::Badge, y.bob), &y.snap, &y.trust, NOW);
        assert_eq!(
            r,
            Err(Refusal::BadgeRevoked {
                driver: "Bob".into()
            })
        );
        assert!(r.unwrap_err().message().contains("Bob"));
    }

    #[test]
    fn a_reservation_covers_from_grace_before_its_start_until_its_end() {
        let y = Yard::new();
        let approved = check_out(&y.snap, y.ann, y.van, NOW).expect("approved");
        assert_eq!(approved.reservation, Some(y.res));
        assert_eq!(approved.due_ms, NOW + 2 * HOUR_MS);
        // 15 min grace before a start 10 min ago: from NOW - 25 min.
        assert!(check_out(&y.snap, y.ann, y.van, NOW - 25 * MINUTE_MS).is_ok());
        assert!(matches!(
            check_out(&y.snap, y.ann, y.van, NOW - 26 * MINUTE_MS),
            Err(Refusal::ReservationNotNow { .. })
        ));
        assert!(matches!(
            check_out(&y.snap, y.ann, y.van, NOW + 2 * HOUR_MS),
            Err(Refusal::ReservationNotNow { .. })
        ));
    }

    #[test]
    fn walk_ups_follow_the_tenant_policy() {
        let mut y = Yard::new();
        assert_eq!(
            check_out(&y.snap, y.ann, y.car, NOW),
            Err(Refusal::WalkUpRefused)
        );
        y.snap.policy.walk_up = WalkUp::Queue;
        assert_eq!(
            check_out(&y.snap, y.ann, y.car, NOW),
            Err(Refusal::WalkUpQueued)
        );
        y.snap.policy.walk_up = WalkUp::Allow;
        assert_eq!(
            check_out(&y.snap, y.ann, y.car, NOW),
            Ok(Approval {
                reservation: None,
                due_ms: NOW + 8 * HOUR_MS
            })
        );
    }

    #[test]
    fn a_vehicle_reserved_for_another_driver_is_not_a_walk_up() {
        let mut y = Yard::new();
        y.snap.policy.walk_up = WalkUp::Allow;
        y.snap.badges[1].revoked = false;
        assert_eq!(
            check_out(&y.snap, y.bob, y.van, NOW),
            Err(Refusal::ReservedForAnother)
        );
    }

    #[test]
    fn an_unsafe_vehicle_and_a_revoked_badge_are_refused_before_any_reservation() {
        let mut y = Yard::new();
        y.snap.reservations[0].vehicle = y.truck;
        assert_eq!(
            check_out(&y.snap, y.ann, y.truck, NOW),
            Err(Refusal::UnsafeDefect {
                asset: "Truck 3".into(),
                defects: vec![],
            })
        );
        // With the snapshot's summary, the refusal says what the defect is.
        y.snap.defects = vec![
            SnapshotDefect::new(y.truck, Some("brakes"), "pedal soft", true),
            SnapshotDefect::new(y.truck, Some("mirror"), "cracked", false),
        ];
        let refused = check_out(&y.snap, y.ann, y.truck, NOW).expect_err("refused");
        assert_eq!(
            refused.message(),
            "Truck 3 has an open safety defect and cannot be handed out: brakes: pedal soft."
        );
        assert!(matches!(
            check_out(&y.snap, y.bob, y.van, NOW),
            Err(Refusal::BadgeRevoked { .. })
        ));
    }

    #[test]
    fn a_missing_or_expired_snapshot_is_unusable() {
        let y = Yard::new();
        assert_eq!(usable(None, NOW), Err(Refusal::SnapshotMissing));
        assert!(usable(Some(&y.snap), NOW).is_ok());
        assert_eq!(
            usable(Some(&y.snap), NOW + 86_400_001).map(|_| ()),
            Err(Refusal::SnapshotExpired {
                valid_until_ms: NOW + 86_400_000
            })
        );
    }

    #[test]
    fn only_recent_meter_readings_go_on_a_check_in() {
        let y = Yard::new();
        let van = y.snap.asset(y.van).expect("van");
        let m = recent_meters(van, NOW, 2 * HOUR_MS);
        assert_eq!(m.odometer_km, Some(1234.5));
        assert_eq!(m.odometer_at_ms, Some(NOW - 60_000));
        assert_eq!((m.fuel_pct, m.fuel_at_ms), (None, None), "five hours old");
        let m = recent_meters(van, NOW, DEFAULT_METER_MAX_AGE_MS);
        assert_eq!(m.fuel_pct, Some(80.0), "within twelve hours");
        let m = recent_meters(
            van,
            NOW + DEFAULT_METER_MAX_AGE_MS,
            DEFAULT_METER_MAX_AGE_MS,
        );
        assert_eq!(m, Meters::default(), "both too old by then");
    }

    #[test]
    fn every_refusal_has_a_distinct_code_and_a_sentence() {
        let all = [
            Refusal::Label {
                error: LabelErrorKind::Malformed,
            },
            Refusal::Label {
                error: LabelErrorKind::UnsupportedVersion,
            },
            Refusal::Label {
                error: LabelErrorKind::ForeignTenant,
            },
            Refusal::Label {
                error: LabelErrorKind::Forged,
            },
            Refusal::Label {
                error: LabelErrorKind::Expired,
            },
            Refusal::UnknownCode,
            Refusal::BadgeRevoked { driver: "X".into() },
            Refusal::KeyRevoked,
            Refusal::WrongKind {
                expected: "a badge",
            },
            Refusal::ReservedForAnother,
            Refusal::ReservationNotNow {
                start_ms: NOW,
                end_ms: NOW + HOUR_MS,
            },
            Refusal::WalkUpRefused,
            Refusal::WalkUpQueued,
            Refusal::UnsafeDefect {
                asset: "X".into(),
                defects: vec![],
            },
            Refusal::AlreadyCheckedOut { asset: "X".into() },
            Refusal::SnapshotMissing,
            Refusal::SnapshotExpired { valid_until_ms: 0 },
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(Refusal::code).collect();
        assert_eq!(codes.len(), all.len());
        for r in &all {
            let m = r.message();
            assert!(m.ends_with('.') && m.len() > 10, "{m}");
        }
    }
}
