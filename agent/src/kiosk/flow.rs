//! The kiosk's screens as a state machine. Pure: an input, the time and what
//! the kiosk knows (snapshot, tenant key, who holds what) go in; the next step
//! and the effects to carry out (record, release a key, signal) come out.
//!
//! Check-out: badge then vehicle or key tag (or the vehicle first, then the
//! badge) → the policy decides → Confirm → Done, or Refused with a reason.
//! Check-in: a vehicle or key tag that is checked out → rating, notes, damage
//! marks, photo, signature → Done. Every step but Idle times out back to Idle.

use super::policy::{self, Approval, AssetRef, Code, Refusal};
use fleet_protocol::custody::CustodyOp;
use fleet_protocol::label::TenantTrust;
use fleet_protocol::snapshot::Snapshot;
use serde::Serialize;
use uuid::Uuid;

/// How long a half-done check-out waits for the next scan or the confirm.
pub const SCAN_TIMEOUT_MS: i64 = 60_000;
/// How long a result (done, refused) stays on the screen.
pub const RESULT_TIMEOUT_MS: i64 = 10_000;
/// How long the check-in form waits between inputs.
pub const CHECKIN_TIMEOUT_MS: i64 = 300_000;
pub const MAX_NOTES_CHARS: usize = 2_000;
pub const MAX_DAMAGE_MARKS: usize = 32;

/// A damage mark on the vehicle outline, in fractions of the drawing (0..=1).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DamageMark {
    pub x: f32,
    pub y: f32,
    #[serde(default)]
    pub note: String,
}

/// A stored image: its content address and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobRef {
    pub sha256: String,
    pub bytes: usize,
}

/// The photo of a check-in and its thumbnail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Photo {
    pub full: BlobRef,
    pub thumb: BlobRef,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CheckInForm {
    pub rating: Option<u8>,
    pub notes: String,
    pub damage: Vec<DamageMark>,
    pub photo: Option<Photo>,
    pub signature: Option<BlobRef>,
}

/// The check-out a driver is about to confirm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOut {
    pub badge: Uuid,
    pub driver: String,
    pub asset: AssetRef,
    pub approval: Approval,
}

/// A check-in as submitted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckIn {
    pub asset: AssetRef,
    /// The check-out it closes.
    pub holder: CustodyOp,
    pub form: CheckInForm,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    Idle,
    BadgeScanned { badge: Uuid, driver: String },
    AssetScanned { asset: AssetRef },
    Confirm { checkout: CheckOut },
    CheckIn { checkin: Box<CheckIn> },
    CheckedOut { checkout: CheckOut },
    CheckedIn { asset: AssetRef },
    Refused { reason: Refusal, message: String },
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::Idle => "idle",
            Step::BadgeScanned { .. } => "badge_scanned",
            Step::AssetScanned { .. } => "asset_scanned",
            Step::Confirm { .. } => "confirm",
            Step::CheckIn { .. } => "check_in",
            Step::CheckedOut { .. } => "checked_out",
            Step::CheckedIn { .. } => "checked_in",
            Step::Refused { .. } => "refused",
        }
    }

    fn timeout_ms(&self) -> Option<i64> {
        match self {
            Step::Idle => None,
            Step::BadgeScanned { .. } | Step::AssetScanned { .. } | Step::Confirm { .. } => {
                Some(SCAN_TIMEOUT_MS)
            }
            Step::CheckIn { .. } => Some(CHECKIN_TIMEOUT_MS),
            Step::CheckedOut { .. } | Step::CheckedIn { .. } | Step::Refused { .. } => {
                Some(RESULT_TIMEOUT_MS)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A label's text from the camera, or a typed short code.
    Scan(String),
    Confirm,
    Cancel,
    Rating(u8),
    Notes(String),
    Damage(Vec<DamageMark>),
    Photo(Photo),
    Signature(BlobRef),
    Submit,
    /// Time passes; only timeouts happen.
    Tick,
}

/// What the kiosk must do because of a step. Carried out in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Record the check-out durably, note it in the custody document, then
    /// release the key and signal success.
    CheckOut(CheckOut),
    CheckIn(Box<CheckIn>),
    /// A walk-up for a dispatcher to approve.
    WalkUpQueued {
        badge: Uuid,
        asset: AssetRef,
    },
    /// Record the refusal and signal it (red LED, error beep).
    Refused(Refusal),
}

/// An input the current step cannot take; nothing happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{input} is not possible at the {step} step")]
    NotNow {
        input: &'static str,
        step: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the check-in needs {0} first")]
    Incomplete(&'static str),
}

impl InputError {
    pub fn code(&self) -> &'static str {
        match self {
            InputError::NotNow { .. } => "not_now",
            InputError::Invalid(_) => "invalid_input",
            InputError::Incomplete(_) => "checkin_incomplete",
        }
    }
}

/// What the kiosk knows when an input arrives.
pub struct Ctx<'a> {
    pub now_ms: i64,
    pub snapshot: Option<&'a Snapshot>,
    pub trust: Option<&'a TenantTrust>,
    /// The check-out in force for an asset, from its custody document.
    pub holder: &'a dyn Fn(Uuid) -> Option<CustodyOp>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flow {
    pub step: Step,
    /// When the step began (or last took an input), Unix ms.
    pub since_ms: i64,
}

impl Flow {
    pub fn new(now_ms: i64) -> Self {
        Flow {
            step: Step::Idle,
            since_ms: now_ms,
        }
    }

    /// Take one input. On error nothing changed (except a timeout, which is
    /// applied first in any case).
    pub fn handle(&mut self, input: Input, ctx: &Ctx<'_>) -> Result<Vec<Effect>, InputError> {
        self.expire(ctx.now_ms);
        let step = std::mem::replace(&mut self.step, Step::Idle);
        let tick = input == Input::Tick;
        match transition(step.clone(), input, ctx) {
            Ok((next, effects)) => {
                self.step = next;
                if !tick {
                    self.since_ms = ctx.now_ms;
                }
                Ok(effects)
            }
            Err(e) => {
                self.step = step;
                Err(e)
            }
        }
    }

    /// Back to Idle if the step has waited too long.
    pub fn expire(&mut self, now_ms: i64) -> bool {
        match self.step.timeout_ms() {
            Some(t) if now_ms - self.since_ms >= t => {
                self.step = Step::Idle;
                self.since_ms = now_ms;
                true
            }
            _ => false,
        }
    }
}

fn refused(reason: Refusal) -> (Step, Vec<Effect>) {
    (
        Step::Refused {
            message: reason.message(),
            reason: reason.clone(),
        },
        vec![Effect::Refused(reason)],
    )
}

fn not_now(input: &Input, step: &Step) -> InputError {
    let input = match input {
        Input::Scan(_) => "a scan",
        Input::Confirm => "confirm",
        Input::Cancel => "cancel",
        Input::Rating(_) => "a rating",
        Input::Notes(_) => "notes",
        Input::Damage(_) => "damage marks",
        Input::Photo(_) => "a photo",
        Input::Signature(_) => "a signature",
        Input::Submit => "submit",
        Input::Tick => "tick",
    };
    InputError::NotNow {
        input,
        step: step.name(),
    }
}

type Outcome = Result<(Step, Vec<Effect>), InputError>;

fn transition(step: Step, input: Input, ctx: &Ctx<'_>) -> Outcome {
    match (step, input) {
        (step, Input::Tick) => Ok((step, vec![])),
        (_, Input::Cancel) => Ok((Step::Idle, vec![])),
        (
            Step::Idle | Step::CheckedOut { .. } | Step::CheckedIn { .. } | Step::Refused { .. },
            Input::Scan(text),
        ) => Ok(first_scan(&text, ctx)),
        (Step::BadgeScanned { badge, driver }, Input::Scan(text)) => {
            Ok(match scan(&text, ctx) {
                Err(r) => refused(r),
                // Another badge: the new driver starts over.
                Ok(Code::Badge { id, driver }) => {
                    (Step::BadgeScanned { badge: id, driver }, vec![])
                }
                Ok(Code::Asset(asset)) => decide(badge, driver, asset, ctx),
            })
        }
        (Step::AssetScanned { asset }, Input::Scan(text)) => Ok(match scan(&text, ctx) {
            Err(r) => refused(r),
            Ok(Code::Badge { id, driver }) => decide(id, driver, asset, ctx),
            // Another vehicle: it replaces the first.
            Ok(Code::Asset(_)) => first_scan(&text, ctx),
        }),
        (Step::Confirm { checkout }, Input::Confirm) => Ok((
            Step::CheckedOut {
                checkout: checkout.clone(),
            },
            vec![Effect::CheckOut(checkout)],
        )),
        (Step::CheckIn { mut checkin }, input) => checkin_input(&mut checkin, input).map(|done| {
            if done {
                let asset = checkin.asset.clone();
                (Step::CheckedIn { asset }, vec![Effect::CheckIn(checkin)])
            } else {
                (Step::CheckIn { checkin }, vec![])
            }
        }),
        (step, input) => Err(not_now(&input, &step)),
    }
}

/// Resolve a scan against the snapshot, if there is a usable one.
fn scan(text: &str, ctx: &Ctx<'_>) -> Result<Code, Refusal> {
    let snap = policy::usable(ctx.snapshot, ctx.now_ms)?;
    let trust = ctx.trust.ok_or(Refusal::SnapshotMissing)?;
    policy::resolve(text, snap, trust, ctx.now_ms)
}

/// A scan with nothing pending: a badge starts a check-out; a vehicle that is
/// out starts its check-in, one that is in starts a check-out.
fn first_scan(text: &str, ctx: &Ctx<'_>) -> (Step, Vec<Effect>) {
    match scan(text, ctx) {
        Err(r) => refused(r),
        Ok(Code::Badge { id, driver }) => (Step::BadgeScanned { badge: id, driver }, vec![]),
        Ok(Code::Asset(asset)) => match (ctx.holder)(asset.id) {
            Some(holder) => (
                Step::CheckIn {
                    checkin: Box::new(CheckIn {
                        asset,
                        holder,
                        form: CheckInForm::default(),
                    }),
                },
                vec![],
            ),
            None => (Step::AssetScanned { asset }, vec![]),
        },
    }
}

/// Badge and vehicle known: may this driver take it now?
fn decide(badge: Uuid, driver: String, asset: AssetRef, ctx: &Ctx<'_>) -> (Step, Vec<Effect>) {
    if (ctx.holder)(asset.id).is_some() {
        return refused(Refusal::AlreadyCheckedOut { asset: asset.name });
    }
    let Ok(snap) = policy::usable(ctx.snapshot, ctx.now_ms) else {
        return refused(Refusal::SnapshotMissing);
    };
    match policy::check_out(snap, badge, asset.id, ctx.now_ms) {
        Ok(approval) => (
            Step::Confirm {
                checkout: CheckOut {
                    badge,
                    driver,
                    asset,
                    approval,
                },
            },
            vec![],
        ),
        Err(Refusal::WalkUpQueued) => {
            let (step, mut effects) = refused(Refusal::WalkUpQueued);
            effects.insert(0, Effect::WalkUpQueued { badge, asset });
            (step, effects)
        }
        Err(r) => refused(r),
    }
}

/// One input to the check-in form; `true` once it is submitted complete.
fn checkin_input(c: &mut CheckIn, input: Input) -> Result<bool, InputError> {
    let f = &mut c.form;
    match input {
        Input::Rating(r) if (1..=5).contains(&r) => f.rating = Some(r),
        Input::Rating(r) => {
            return Err(InputError::Invalid(format!(
                "a condition rating is 1 to 5, not {r}"
            )))
        }
        Input::Notes(n) if n.chars().count() <= MAX_NOTES_CHARS => f.notes = n,
        Input::Notes(_) => {
            return Err(InputError::Invalid(format!(
                "notes are at most {MAX_NOTES_CHARS} characters"
            )))
        }
        Input::Damage(marks) => {
            if marks.len() > MAX_DAMAGE_MARKS {
                return Err(InputError::Invalid(format!(
                    "at most {MAX_DAMAGE_MARKS} damage marks"
                )));
            }
            let inside = |v: f32| (0.0..=1.0).contains(&v);
            if marks
                .iter()
                .any(|m| !inside(m.x) || !inside(m.y) || m.note.chars().count() > 200)
            {
                return Err(InputError::Invalid(
                    "a damage mark lies within the drawing (0 to 1) with a note of at most 200 characters"
                        .into(),
                ));
            }
            f.damage = marks;
        }
        Input::Photo(p) => f.photo = Some(p),
        Input::Signature(s) => f.signature = Some(s),
        Input::Submit => {
            if f.rating.is_none() {
                return Err(InputError::Incomplete("a condition rating"));
            }
            if f.signature.is_none() {
                return Err(InputError::Incomplete("the driver's signature"));
            }
            return Ok(true);
        }
        other => {
            return Err(not_now(
                &other,
                &Step::CheckIn {
                    checkin: Box::new(c.clone()),
                },
            ))
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kiosk::policy::tests::{Yard, NOW};
    use fleet_protocol::custody::CustodyAction;
    use fleet_protocol::label::LabelKind;
    use fleet_protocol::snapshot::WalkUp;

    struct World {
        y: Yard,
        held: Vec<CustodyOp>,
        now: i64,
        trust_known: bool,
        snapshot_known: bool,
    }

    impl World {
        fn new() -> Self {
            World {
                y: Yard::new(),
                held: vec![],
                now: NOW,
                trust_known: true,
                snapshot_known: true,
            }
        }

        fn step(&self, flow: &mut Flow, input: Input) -> Result<Vec<Effect>, InputError> {
            let held = self.held.clone();
            let holder = move |asset: Uuid| held.iter().find(|op| op.event_id == asset).cloned();
            let ctx = Ctx {
                now_ms: self.now,
                snapshot: self.snapshot_known.then_some(&self.y.snap),
                trust: self.trust_known.then_some(&self.y.trust),
                holder: &holder,
            };
            flow.handle(input, &ctx)
        }

        fn badge(&self, id: Uuid) -> Input {
            Input::Scan(self.y.label(LabelKind::Badge, id))
        }

        fn vehicle(&self, id: Uuid) -> Input {
            Input::Scan(self.y.label(LabelKind::Vehicle, id))
        }

        /// Mark `asset` as held by Ann (the test's holder lookup keys on event_id).
        fn hold(&mut self, asset: Uuid) {
            self.held.push(CustodyOp {
                op: CustodyAction::CheckOut,
                kiosk: "k".into(),
                badge: self.y.ann,
                at_ms: NOW - 1000,
                event_id: asset,
            });
        }
    }

    fn refusal_code(flow: &Flow) -> Option<&'static str> {
        match &flow.step {
            Step::Refused { reason, .. } => Some(reason.code()),
            _ => None,
        }
    }

    #[test]
    fn badge_then_vehicle_then_confirm_checks_out_with_the_reservation_and_slot() {
        let w = World::new();
        let mut f = Flow::new(NOW);
        assert_eq!(w.step(&mut f, w.badge(w.y.ann)), Ok(vec![]));
        assert_eq!(f.step.name(), "badge_scanned");
        assert_eq!(w.step(&mut f, w.vehicle(w.y.van)), Ok(vec![]));
        let Step::Confirm { checkout } = &f.step else {
            panic!("{:?}", f.step)
        };
        assert_eq!(checkout.approval.reservation, Some(w.y.res));
        assert_eq!(checkout.asset.slot, Some(2));
        let effects = w.step(&mut f, Input::Confirm).expect("confirm");
        assert!(
            matches!(&effects[..], [Effect::CheckOut(c)] if c.badge == w.y.ann && c.asset.id == w.y.van)
        );
        assert_eq!(f.step.name(), "checked_out");
    }

    #[test]
    fn vehicle_first_asks_for_the_badge_then_decides() {
        let w = World::new();
        let mut f = Flow::new(NOW);
        w.step(&mut f, Input::Scan(w.y.label(LabelKind::Key, w.y.van_key)))
            .expect("key");
        assert_eq!(f.step.name(), "asset_scanned");
        w.step(&mut f, w.badge(w.y.ann)).expect("badge");
        assert_eq!(f.step.name(), "confirm");
    }

    #[test]
    fn no_key_is_released_before_the_driver_confirms() {
        let w = World::new();
        let mut f = Flow::new(NOW);
        w.step(&mut f, w.badge(w.y.ann)).expect("badge");
        let effects = w.step(&mut f, w.vehicle(w.y.van)).expect("van");
        assert!(effects.is_empty());
        assert_eq!(w.step(&mut f, Input::Cancel), Ok(vec![]));
        assert_eq!(f.step, Step::Idle);
    }

    #[test]
    fn a_refused_scan_says_why_and_signals() {
        let w = World::new();
        let mut f = Flow::new(NOW);
        let effects = w.step(&mut f, w.badge(w.y.bob)).expect("handled");
        assert_eq!(refusal_code(&f), Some("badge_revoked"));
        assert!(matches!(
            &effects[..],
            [Effect::Refused(Refusal::BadgeRevoked { .. })]
        ));
        let Step::Refused { message, .. } = &f.step else {
            unreachable!()
        };
        assert!(message.contains("Bob"), "{message}");
        // A refusal screen takes the next scan at once.
        w.step(&mut f, w.badge(w.y.ann)).expect("badge");
        assert_eq!(f.step.name(), "badge_scanned");
    }

    #[test]
    fn a_forged_label_mid_check_out_is_refused() {
        let w = World::new();
        let mut f = Flow::new(NOW);
        w.step(&mut f, w.badge(w.y.ann)).expect("badge");
        let mut text = w.y.label(LabelKind::Vehicle, w.y.van);
        text.replace_range(10..11, if &text[10..11] == "A" { "B" } else { "A" });
        w.step(&mut f, Input::Scan(text)).expect("handled");
        assert_eq!(refusal_code(&f), Some("label_forged"));
    }

    #[test]
    fn each_policy_refusal_reaches_the_screen() {
        let mut w = World::new();
        let cases = [(w.y.car, "walkup_refused"), (w.y.truck, "unsafe_defect")];
        for (vehicle, code) in cases {
            let mut f = Flow::new(NOW);
            w.step(&mut f, w.badge(w.y.ann)).expect("badge");
            w.step(&mut f, w.vehicle(vehicle)).expect("vehicle");
            assert_eq!(refusal_code(&f), Some(code));
        }
        w.now = NOW + 3 * 3_600_000;
        w.y.snap.valid_until_ms = NOW + 86_400_000;
        let mut f = Flow::new(w.now);
        w.step(&mut f, w.badge(w.y.ann)).expect("badge");
        w.step(&mut f, w.vehicle(w.y.van)).expect("van");
        assert_eq!(refusal_code(&f), Some("reservation_not_now"));
    }

    #[test]
    fn a_queued_walk_up_is_recorded_and_refused_for_now() {
        let mut w = World::new();
        w.y.snap.policy.walk_up = WalkUp::Queue;
        let mut f = Flow::new(NOW);
        w.step(&mut f, w.badge(w.y.ann)).expect("badge");
        let effects = w.step(&mut f, w.vehicle(w.y.car)).expect("car");
        assert!(matches!(
            &effects[..],
            [
                Effect::WalkUpQueued { .. },
                Effect::Refused(Refusal::WalkUpQueued)
            ]
        ));
        assert_eq!(refusal_code(&f), Some("walkup_queued"));
    }

    #[test]
    fn a_vehicle_already_out_cannot_be_checked_out_again_here() {
        let mut w = World::new();
        w.hold(w.y.van);
        let mut f = Flow::new(NOW);
        w.step(&mut f, w.badge(w.y.ann)).expect("badge");
        w.step(&mut f, w.vehicle(w.y.van)).expect("van");
        assert_eq!(refusal_code(&f), Some("already_checked_out"));
    }

    #[test]
    fn without_a_snapshot_or_after_it_expires_every_scan_is_refused() {
        let mut w = World::new();
        w.snapshot_known = false;
        let mut f = Flow::new(NOW);
        w.step(&mut f, w.badge(w.y.ann)).expect("handled");
        assert_eq!(refusal_code(&f), Some("snapshot_missing"));
        w.snapshot_known = true;
        w.now = w.y.snap.valid_until_ms + 1;
        let mut f = Flow::new(w.now);
        w.step(&mut f, w.badge(w.y.ann)).expect("handled");
        assert_eq!(refusal_code(&f), Some("snapshot_expired"));
    }

    #[test]
    fn a_checked_out_vehicle_scanned_starts_its_check_in_which_needs_rating_and_signature() {
        let mut w = World::new();
        w.hold(w.y.van);
        let mut f = Flow::new(NOW);
        w.step(&mut f, w.vehicle(w.y.van)).expect("van");
        assert_eq!(f.step.name(), "check_in");
        assert_eq!(
            w.step(&mut f, Input::Submit),
            Err(InputError::Incomplete("a condition rating"))
        );
        assert!(matches!(
            w.step(&mut f, Input::Rating(6)),
            Err(InputError::Invalid(_))
        ));
        w.step(&mut f, Input::Rating(4)).expect("rating");
        w.step(&mut f, Input::Notes("scratch on the left door".into()))
            .expect("notes");
        w.step(
            &mut f,
            Input::Damage(vec![DamageMark {
                x: 0.2,
                y: 0.5,
                note: "scratch".into(),
            }]),
        )
        .expect("damage");
        assert!(matches!(
            w.step(
                &mut f,
                Input::Damage(vec![DamageMark {
                    x: 1.5,
                    y: 0.5,
                    note: String::new()
                }])
            ),
            Err(InputError::Invalid(_))
        ));
        assert_eq!(
            w.step(&mut f, Input::Submit),
            Err(InputError::Incomplete("the driver's signature"))
        );
        let sig = BlobRef {
            sha256: "ab".repeat(32),
            bytes: 900,
        };
        w.step(&mut f, Input::Signature(sig.clone())).expect("sig");
        let effects = w.step(&mut f, Input::Submit).expect("submit");
        let [Effect::CheckIn(c)] = &effects[..] else {
            panic!("{effects:?}")
        };
        assert_eq!(c.form.rating, Some(4));
        assert_eq!(c.form.damage.len(), 1, "the invalid marks changed nothing");
        assert_eq!(c.form.signature, Some(sig));
        assert_eq!(c.holder.badge, w.y.ann);
        assert_eq!(f.step.name(), "checked_in");
    }

    #[test]
    fn inputs_out_of_step_are_errors_that_change_nothing() {
        let w = World::new();
        let mut f = Flow::new(NOW);
        assert!(matches!(
            w.step(&mut f, Input::Confirm),
            Err(InputError::NotNow { .. })
        ));
        assert!(matches!(
            w.step(&mut f, Input::Rating(3)),
            Err(InputError::NotNow { .. })
        ));
        assert_eq!(f.step, Step::Idle);
        w.step(&mut f, w.badge(w.y.ann)).expect("badge");
        assert!(w.step(&mut f, Input::Submit).is_err());
        assert_eq!(f.step.name(), "badge_scanned");
    }

    #[test]
    fn every_waiting_step_times_out_to_idle() {
        let mut w = World::new();
        let mut f = Flow::new(NOW);
        w.step(&mut f, w.badge(w.y.ann)).expect("badge");
        w.now += SCAN_TIMEOUT_MS - 1;
        w.step(&mut f, Input::Tick).expect("tick");
        assert_eq!(f.step.name(), "badge_scanned");
        w.now += 1;
        w.step(&mut f, Input::Tick).expect("tick");
        assert_eq!(f.step, Step::Idle);

        // A result screen clears sooner; a confirm not given in time releases nothing.
        let mut f = Flow::new(w.now);
        w.step(&mut f, w.badge(w.y.bob)).expect("refused");
        w.now += RESULT_TIMEOUT_MS;
        assert!(f.expire(w.now));
        let mut f = Flow::new(w.now);
        w.step(&mut f, w.badge(w.y.ann)).expect("badge");
        w.now += 1000;
        w.step(&mut f, w.vehicle(w.y.van)).expect("van");
        w.now += SCAN_TIMEOUT_MS;
        assert!(matches!(
            w.step(&mut f, Input::Confirm),
            Err(InputError::NotNow { step: "idle", .. })
        ));
    }

    #[test]
    fn the_check_in_form_waits_longer_than_a_scan() {
        let mut w = World::new();
        w.hold(w.y.van);
        let mut f = Flow::new(NOW);
        w.step(&mut f, w.vehicle(w.y.van)).expect("van");
        w.now += SCAN_TIMEOUT_MS * 2;
        w.step(&mut f, Input::Rating(5)).expect("still open");
        w.now += CHECKIN_TIMEOUT_MS;
        assert!(f.expire(w.now));
    }

    #[test]
    fn a_second_badge_replaces_the_first_driver() {
        let mut w = World::new();
        w.y.snap.badges[1].revoked = false;
        let mut f = Flow::new(NOW);
        w.step(&mut f, w.badge(w.y.bob)).expect("bob");
        w.step(&mut f, w.badge(w.y.ann)).expect("ann");
        assert!(matches!(&f.step, Step::BadgeScanned { badge, .. } if *badge == w.y.ann));
    }
}
