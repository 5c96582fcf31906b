//! The kiosk's lines in use: a slot relay pulsed to release a key, green LED and
//! a short beep for success, red LED and an error beep for a refusal, red
//! blinking while the key box's door has been left open. Timing runs on
//! tokio's clock, so tests with a paused clock see exact pulse lengths.

use fleet_hal::gpio::{GpioError, KioskPins};
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const SUCCESS_BEEP: Duration = Duration::from_millis(150);
const LED_ON: Duration = Duration::from_secs(2);
const ERROR_BEEPS: u32 = 3;
const ERROR_BEEP: Duration = Duration::from_millis(100);
const BLINK: Duration = Duration::from_millis(500);

/// The lines, shared by the flow's effects and the door watch.
#[derive(Clone)]
pub struct Signals {
    pins: Arc<Mutex<KioskPins>>,
    pulse: Duration,
}

impl Signals {
    pub fn new(mut pins: KioskPins, pulse: Duration) -> Result<Self, GpioError> {
        pins.all_off()?;
        Ok(Self {
            pins: Arc::new(Mutex::new(pins)),
            pulse,
        })
    }

    fn lock(&self) -> MutexGuard<'_, KioskPins> {
        // Each use drives whole lines; a panic elsewhere leaves no half-state.
        self.pins.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn slots(&self) -> usize {
        self.lock().slots.len()
    }

    /// Energise `slot`'s relay now and release it after the pulse. Returns once
    /// the relay is energised.
    pub fn release(&self, slot: usize) -> Result<(), GpioError> {
        self.lock().slot(slot)?.set_high()?;
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(me.pulse).await;
            let mut pins = me.lock();
            if let Err(e) = pins.slot(slot).and_then(|p| p.set_low()) {
                tracing::error!(slot, error = %e, "cannot de-energise the key-box relay");
            }
        });
        Ok(())
    }

    /// Green LED and a short beep.
    pub fn success(&self) {
        self.drive(|p| &mut p.green, true);
        self.drive(|p| &mut p.red, false);
        self.drive(|p| &mut p.buzzer, true);
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SUCCESS_BEEP).await;
            me.drive(|p| &mut p.buzzer, false);
            tokio::time::sleep(LED_ON - SUCCESS_BEEP).await;
            me.drive(|p| &mut p.green, false);
        });
    }

    /// Red LED and three short beeps.
    pub fn refuse(&self) {
        self.drive(|p| &mut p.green, false);
        self.drive(|p| &mut p.red, true);
        let me = self.clone();
        tokio::spawn(async move {
            for _ in 0..ERROR_BEEPS {
                me.drive(|p| &mut p.buzzer, true);
                tokio::time::sleep(ERROR_BEEP).await;
                me.drive(|p| &mut p.buzzer, false);
                tokio::time::sleep(ERROR_BEEP).await;
            }
            tokio::time::sleep(LED_ON - ERROR_BEEP * 2 * ERROR_BEEPS).await;
            me.drive(|p| &mut p.red, false);
        });
    }

    /// Whether the key box's door is open now.
    pub fn door_open(&self) -> Result<bool, GpioError> {
        self.lock().door.is_high()
    }

    fn drive(
        &self,
        line: impl FnOnce(&mut KioskPins) -> &mut fleet_hal::gpio::DynOutput,
        high: bool,
    ) {
        let mut pins = self.lock();
        let pin = line(&mut pins);
        let r = if high { pin.set_high() } else { pin.set_low() };
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot drive a kiosk signal line");
        }
    }

    /// Blink the red LED until `stop` turns true; leaves it off.
    pub async fn blink_red(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut on = false;
        loop {
            on = !on;
            self.drive(|p| &mut p.red, on);
            tokio::select! {
                _ = tokio::time::sleep(BLINK) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        self.drive(|p| &mut p.red, false);
    }
}

/// What the door watch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "door", rename_all = "snake_case")]
pub enum DoorEvent {
    /// Open for longer than allowed: raise the alert.
    LeftOpen { open_for_ms: u64 },
    /// Closed again after an alert.
    Closed { open_for_ms: u64 },
}

/// The key box's door over time. Pure: feed it the level and the time.
#[derive(Debug, Clone)]
pub struct DoorWatch {
    alert_after_ms: u64,
    open_since: Option<u64>,
    alerted: bool,
}

impl DoorWatch {
    pub fn new(alert_after: Duration) -> Self {
        Self {
            alert_after_ms: u64::try_from(alert_after.as_millis()).unwrap_or(u64::MAX),
            open_since: None,
            alerted: false,
        }
    }

    pub fn alerted(&self) -> bool {
        self.alerted
    }

    pub fn observe(&mut self, open: bool, now_ms: u64) -> Option<DoorEvent> {
        match (open, self.open_since) {
            (true, None) => {
                self.open_since = Some(now_ms);
                None
            }
            (true, Some(since)) => {
                let open_for_ms = now_ms.saturating_sub(since);
                if !self.alerted && open_for_ms >= self.alert_after_ms {
                    self.alerted = true;
                    Some(DoorEvent::LeftOpen { open_for_ms })
                } else {
                    None
                }
            }
            (false, Some(since)) => {
                self.open_since = None;
                let was_alerted = std::mem::take(&mut self.alerted);
                was_alerted.then(|| DoorEvent::Closed {
                    open_for_ms: now_ms.saturating_sub(since),
                })
            }
            (false, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_release_pulses_only_that_slots_relay_for_the_pulse_length() {
        let (pins, sim) = KioskPins::simulated(3);
        let s = Signals::new(pins, Duration::from_millis(800)).expect("pins");
        let t0 = Instant::now();
        s.release(1).expect("slot 1");
        assert!(sim.slots[1].is_high_now());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let t = sim.slots[1].transitions();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].at - t[0].at, Duration::from_millis(800));
        assert_eq!(
            sim.slots[1].high_for(t0, Instant::now()),
            Duration::from_millis(800)
        );
        assert!(sim.slots[0].transitions().is_empty() && sim.slots[2].transitions().is_empty());
        assert!(matches!(s.release(3), Err(GpioError::NoSuchSlot(3, 3))));
    }

    #[tokio::test(start_paused = true)]
    async fn success_is_green_and_one_beep_and_a_refusal_red_and_three() {
        let (pins, sim) = KioskPins::simulated(1);
        let s = Signals::new(pins, Duration::from_millis(500)).expect("pins");
        s.success();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(sim.green.transitions().len(), 2);
        assert_eq!(sim.buzzer.transitions().len(), 2);
        assert!(sim.red.transitions().is_empty());
        s.refuse();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(sim.red.transitions().len(), 2);
        assert_eq!(sim.buzzer.transitions().len(), 2 + 6);
        assert!(!sim.red.is_high_now() && !sim.buzzer.is_high_now());
    }

    #[test]
    fn a_door_left_open_alerts_once_and_its_closing_is_reported() {
        let mut d = DoorWatch::new(Duration::from_secs(30));
        assert_eq!(d.observe(false, 0), None);
        assert_eq!(d.observe(true, 1_000), None);
        assert_eq!(d.observe(true, 30_999), None);
        assert_eq!(
            d.observe(true, 31_000),
            Some(DoorEvent::LeftOpen {
                open_for_ms: 30_000
            })
        );
        assert_eq!(d.observe(true, 60_000), None, "once per opening");
        assert_eq!(
            d.observe(false, 61_000),
            Some(DoorEvent::Closed {
                open_for_ms: 60_000
            })
        );
        // A short opening (taking a key) raises nothing.
        assert_eq!(d.observe(true, 70_000), None);
        assert_eq!(d.observe(false, 75_000), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_red_led_blinks_until_told_to_stop() {
        let (pins, sim) = KioskPins::simulated(1);
        let s = Signals::new(pins, Duration::from_millis(500)).expect("pins");
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn({
            let s = s.clone();
            async move { s.blink_red(rx).await }
        });
        tokio::time::sleep(Duration::from_millis(2_250)).await;
        tx.send(true).expect("send");
        task.await.expect("blink");
        assert!(sim.red.transitions().len() >= 4);
        assert!(!sim.red.is_high_now());
    }
}
