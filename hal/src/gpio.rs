//! The kiosk's digital lines: green and red LEDs, a buzzer and one relay per
//! key-box slot as outputs, the key box's door sensor as an input.
//!
//! Every line is an embedded-hal 1.0 [`OutputPin`] or [`InputPin`]. On a
//! Raspberry Pi they are rppal pins (feature `rpi`, [`open_output`] and
//! [`open_input`]); in tests and the demo they are [`SimOutput`], which records
//! every transition with its time, and [`SimInput`], which the test sets.
//! [`KioskPins`] bundles them behind one error type so the kiosk flows hold the
//! same struct on either.

use embedded_hal::digital::{ErrorKind, ErrorType, InputPin, OutputPin, StatefulOutputPin};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    /// The pin could not be opened or driven; says which line and why.
    #[error("GPIO {line}: {reason}")]
    Pin { line: String, reason: String },
    /// A key-box slot the kiosk does not have.
    #[error("no key-box slot {0} (the kiosk has {1})")]
    NoSuchSlot(usize, usize),
}

impl embedded_hal::digital::Error for GpioError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// One change of an output's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub at: Instant,
    pub high: bool,
}

#[derive(Debug)]
struct SimOutputState {
    high: bool,
    transitions: Vec<Transition>,
}

/// A simulated output that records every transition (a set to the level it
/// already has is not one). Clones share the line, so a test keeps one and
/// hands the other to the code under test.
#[derive(Debug, Clone)]
pub struct SimOutput(Arc<Mutex<SimOutputState>>);

impl SimOutput {
    /// A line starting at `high`, with no transitions yet.
    pub fn new(high: bool) -> Self {
        Self(Arc::new(Mutex::new(SimOutputState {
            high,
            transitions: Vec::new(),
        })))
    }

    pub fn is_high_now(&self) -> bool {
        self.lock().high
    }

    /// Every transition so far, oldest first, timed on tokio's clock (so a
    /// paused test clock gives exact durations).
    pub fn transitions(&self) -> Vec<Transition> {
        self.lock().transitions.clone()
    }

    /// How long the line was high between `from` and `to`, from the record.
    pub fn high_for(&self, from: Instant, to: Instant) -> std::time::Duration {
        let s = self.lock();
        // The level at `from` is the last transition before it, else the level
        // before the first transition.
        let mut high = match s.transitions.iter().rev().find(|t| t.at <= from) {
            Some(t) => t.high,
            None => s.transitions.first().map_or(s.high, |t| !t.high),
        };
        let mut since = from;
        let mut total = std::time::Duration::ZERO;
        for t in s.transitions.iter().filter(|t| t.at > from && t.at < to) {
            if high {
                total += t.at - since;
            }
            high = t.high;
            since = t.at;
        }
        if high && to > since {
            total += to - since;
        }
        total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimOutputState> {
        // A panicking test thread cannot leave the record half-written: every
        // update is one push.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn drive(&self, high: bool) {
        let mut s = self.lock();
        if s.high != high {
            s.high = high;
            s.transitions.push(Transition {
                at: Instant::now(),
                high,
            });
        }
    }
}

impl Default for SimOutput {
    fn default() -> Self {
        Self::new(false)
    }
}

impl ErrorType for SimOutput {
    type Error = Infallible;
}

impl OutputPin for SimOutput {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.drive(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.drive(true);
        Ok(())
    }
}

impl StatefulOutputPin for SimOutput {
    fn is_set_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.lock().high)
    }

    fn is_set_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.lock().high)
    }
}

/// A simulated input whose level the test sets; clones share the line.
#[derive(Debug, Clone, Default)]
pub struct SimInput(Arc<AtomicBool>);

impl SimInput {
    pub fn new(high: bool) -> Self {
        Self(Arc::new(AtomicBool::new(high)))
    }

    pub fn set_high(&self, high: bool) {
        self.0.store(high, Ordering::Relaxed);
    }
}

impl ErrorType for SimInput {
    type Error = Infallible;
}

impl InputPin for SimInput {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.0.load(Ordering::Relaxed))
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.0.load(Ordering::Relaxed))
    }
}

/// Any output pin, its errors as [`GpioError`] naming the line.
pub type DynOutput = Box<dyn OutputPin<Error = GpioError> + Send>;
/// Any input pin, its errors as [`GpioError`] naming the line.
pub type DynInput = Box<dyn InputPin<Error = GpioError> + Send>;

/// A pin whose own error type becomes [`GpioError`] with the line's name.
pub struct Named<P> {
    line: String,
    pin: P,
}

impl<P> Named<P> {
    pub fn new(line: impl Into<String>, pin: P) -> Self {
        Self {
            line: line.into(),
            pin,
        }
    }

    fn err(&self, e: impl std::fmt::Debug) -> GpioError {
        GpioError::Pin {
            line: self.line.clone(),
            reason: format!("{e:?}"),
        }
    }
}

impl<P> ErrorType for Named<P> {
    type Error = GpioError;
}

impl<P: OutputPin> OutputPin for Named<P> {
    fn set_low(&mut self) -> Result<(), GpioError> {
        self.pin.set_low().map_err(|e| self.err(e))
    }

    fn set_high(&mut self) -> Result<(), GpioError> {
        self.pin.set_high().map_err(|e| self.err(e))
    }
}

impl<P: InputPin> InputPin for Named<P> {
    fn is_high(&mut self) -> Result<bool, GpioError> {
        self.pin.is_high().map_err(|e| self.err(e))
    }

    fn is_low(&mut self) -> Result<bool, GpioError> {
        self.pin.is_low().map_err(|e| self.err(e))
    }
}

/// Box an output pin under a line name.
pub fn dyn_output<P: OutputPin + Send + 'static>(line: &str, pin: P) -> DynOutput {
    Box::new(Named::new(line, pin))
}

/// Box an input pin under a line name.
pub fn dyn_input<P: InputPin + Send + 'static>(line: &str, pin: P) -> DynInput {
    Box::new(Named::new(line, pin))
}

/// The kiosk's lines. Outputs are active high (a relay board's driver
/// transistor, an LED through its resistor); the door input is high when the
/// key box is open (a reed switch to 3.3 V; wire it that way or invert in
/// [`open_input`]).
pub struct KioskPins {
    pub green: DynOutput,
    pub red: DynOutput,
    pub buzzer: DynOutput,
    /// Slot relays, slot 0 first; energised releases that slot's key.
    pub slots: Vec<DynOutput>,
    pub door: DynInput,
}

impl KioskPins {
    /// Drive one slot's relay.
    pub fn slot(&mut self, slot: usize) -> Result<&mut DynOutput, GpioError> {
        let n = self.slots.len();
        self.slots
            .get_mut(slot)
            .ok_or(GpioError::NoSuchSlot(slot, n))
    }

    /// Every output low: LEDs and buzzer off, every slot locked.
    pub fn all_off(&mut self) -> Result<(), GpioError> {
        self.green.set_low()?;
        self.red.set_low()?;
        self.buzzer.set_low()?;
        for s in &mut self.slots {
            s.set_low()?;
        }
        Ok(())
    }

    /// Simulated lines for `slots` key-box slots, with the handles a test reads
    /// and sets (the door starts closed).
    pub fn simulated(slots: usize) -> (Self, SimKioskPins) {
        let sim = SimKioskPins {
            green: SimOutput::default(),
            red: SimOutput::default(),
            buzzer: SimOutput::default(),
            slots: (0..slots).map(|_| SimOutput::default()).collect(),
            door: SimInput::new(false),
        };
        let pins = Self {
            green: dyn_output("green", sim.green.clone()),
            red: dyn_output("red", sim.red.clone()),
            buzzer: dyn_output("buzzer", sim.buzzer.clone()),
            slots: sim
                .slots
                .iter()
                .enumerate()
                .map(|(i, s)| dyn_output(&format!("slot {i}"), s.clone()))
                .collect(),
            door: dyn_input("door", sim.door.clone()),
        };
        (pins, sim)
    }
}

/// The test's side of [`KioskPins::simulated`].
#[derive(Debug, Clone)]
pub struct SimKioskPins {
    pub green: SimOutput,
    pub red: SimOutput,
    pub buzzer: SimOutput,
    pub slots: Vec<SimOutput>,
    pub door: SimInput,
}

/// BCM numbers of the kiosk's lines on a Raspberry Pi.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KioskPinMap {
    pub green: u8,
    pub red: u8,
    pub buzzer: u8,
    pub slots: Vec<u8>,
    pub door: u8,
    /// The door line reads low when the box is open (a switch to ground with
    /// the pull-up on).
    #[serde(default)]
    pub door_active_low: bool,
}

/// A Raspberry Pi GPIO line (BCM numbering) as an output, starting low.
#[cfg(feature = "rpi")]
pub fn open_output(bcm: u8) -> Result<rppal::gpio::OutputPin, GpioError> {
    let pin = rppal_pin(bcm)?;
    let mut out = pin.into_output_low();
    // Leave the line as it is on exit rather than floating a relay input.
    out.set_reset_on_drop(false);
    Ok(out)
}

/// A Raspberry Pi GPIO line (BCM numbering) as an input; `pull_up` for a switch
/// to ground.
#[cfg(feature = "rpi")]
pub fn open_input(bcm: u8, pull_up: bool) -> Result<rppal::gpio::InputPin, GpioError> {
    let pin = rppal_pin(bcm)?;
    Ok(if pull_up {
        pin.into_input_pullup()
    } else {
        pin.into_input()
    })
}

#[cfg(feature = "rpi")]
fn rppal_pin(bcm: u8) -> Result<rppal::gpio::Pin, GpioError> {
    let gpio = rppal::gpio::Gpio::new().map_err(|e| GpioError::Pin {
        line: format!("{bcm}"),
        reason: e.to_string(),
    })?;
    gpio.get(bcm).map_err(|e| GpioError::Pin {
        line: format!("{bcm}"),
        reason: e.to_string(),
    })
}

/// An input read inverted (active low wiring seen as active high).
pub struct Inverted<P>(pub P);

impl<P: ErrorType> ErrorType for Inverted<P> {
    type Error = P::Error;
}

impl<P: InputPin> InputPin for Inverted<P> {
    fn is_high(&mut self) -> Result<bool, P::Error> {
        self.0.is_low()
    }

    fn is_low(&mut self) -> Result<bool, P::Error> {
        self.0.is_high()
    }
}

#[cfg(feature = "rpi")]
impl KioskPins {
    /// Open the lines of `map` on this Pi; every output starts low.
    pub fn open_rpi(map: &KioskPinMap) -> Result<Self, GpioError> {
        let out = |line: &str, bcm: u8| -> Result<DynOutput, GpioError> {
            Ok(dyn_output(
                &format!("{line} (BCM {bcm})"),
                open_output(bcm)?,
            ))
        };
        let door_line = format!("door (BCM {})", map.door);
        let door = if map.door_active_low {
            dyn_input(&door_line, Inverted(open_input(map.door, true)?))
        } else {
            dyn_input(&door_line, open_input(map.door, false)?)
        };
        Ok(Self {
            green: out("green", map.green)?,
            red: out("red", map.red)?,
            buzzer: out("buzzer", map.buzzer)?,
            slots: map
                .slots
                .iter()
                .enumerate()
                .map(|(i, bcm)| out(&format!("slot {i}"), *bcm))
                .collect::<Result<_, _>>()?,
            door,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_sim_output_records_each_change_with_its_time_and_not_repeats() {
        let line = SimOutput::new(false);
        let mut pin = line.clone();
        let t0 = Instant::now();
        pin.set_low().unwrap();
        pin.set_high().unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        pin.set_high().unwrap();
        pin.set_low().unwrap();
        let rec = line.transitions();
        assert_eq!(
            rec,
            vec![
                Transition { at: t0, high: true },
                Transition {
                    at: t0 + Duration::from_millis(250),
                    high: false
                },
            ]
        );
        assert!(!line.is_high_now());
        assert!(!pin.is_set_high().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn high_for_sums_the_pulses_inside_the_interval() {
        let line = SimOutput::new(false);
        let mut pin = line.clone();
        let t0 = Instant::now();
        for _ in 0..3 {
            pin.set_high().unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            pin.set_low().unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let end = Instant::now();
        assert_eq!(line.high_for(t0, end), Duration::from_millis(300));
        // From the middle of the second pulse to the middle of the third.
        let a = t0 + Duration::from_millis(200);
        let b = t0 + Duration::from_millis(350);
        assert_eq!(line.high_for(a, b), Duration::from_millis(100));
    }

    #[test]
    fn a_sim_input_reads_what_the_test_set_through_every_clone() {
        let door = SimInput::new(false);
        let mut pin = door.clone();
        assert!(pin.is_low().unwrap());
        door.set_high(true);
        assert!(pin.is_high().unwrap());
        let mut inv = Inverted(door.clone());
        assert!(inv.is_low().unwrap());
    }

    #[test]
    fn simulated_kiosk_pins_drive_the_handles_and_refuse_a_missing_slot() {
        let (mut pins, sim) = KioskPins::simulated(2);
        pins.green.set_high().unwrap();
        pins.slot(1).unwrap().set_high().unwrap();
        assert!(sim.green.is_high_now());
        assert!(sim.slots[1].is_high_now() && !sim.slots[0].is_high_now());
        assert!(matches!(pins.slot(2), Err(GpioError::NoSuchSlot(2, 2))));
        sim.door.set_high(true);
        assert!(pins.door.is_high().unwrap());
        pins.all_off().unwrap();
        assert!(!sim.green.is_high_now() && !sim.slots[1].is_high_now());
    }
}
