//! The ignition sense line: a digital input wired to the key switch.
//!
//! [`DebouncedIgnition`] turns any embedded-hal 1.0 [`InputPin`] into an
//! [`IgnitionInput`] by polling it and accepting a level only once it has held for
//! the debounce time (a cranking engine browns the line out). The pin is a
//! Raspberry Pi GPIO through rppal (feature `rpi`) or a [`SimPin`].

use embedded_hal::digital::{ErrorType, InputPin};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum IgnitionError {
    #[error("ignition input closed")]
    Closed,
    #[error("ignition input I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("ignition pin: {0}")]
    Pin(String),
}

/// A digital input that reports the key switch.
pub trait IgnitionInput: Send {
    /// The level right now.
    fn is_on(&self) -> bool;
    /// Wait for the next edge and return the new level with its time (microseconds
    /// on the source's clock).
    fn changed(&mut self) -> impl Future<Output = Result<(bool, u64), IgnitionError>> + Send;
}

/// How often the pin is read. An ignition edge needs no better resolution.
pub const POLL: Duration = Duration::from_millis(10);

/// A polled, debounced ignition input on any embedded-hal pin.
pub struct DebouncedIgnition<P> {
    pin: P,
    active_low: bool,
    debounce: Duration,
    on: bool,
    opened: Instant,
}

fn pin_error(e: impl std::fmt::Debug) -> IgnitionError {
    IgnitionError::Pin(format!("{e:?}"))
}

impl<P: InputPin + Send> DebouncedIgnition<P> {
    /// Reads the current level as the starting state. `active_low` for wiring
    /// through an optocoupler that pulls the pin down when the key is on.
    pub fn new(mut pin: P, active_low: bool, debounce: Duration) -> Result<Self, IgnitionError> {
        let high = pin.is_high().map_err(pin_error)?;
        Ok(Self {
            pin,
            active_low,
            debounce,
            on: high != active_low,
            opened: Instant::now(),
        })
    }

    fn read(&mut self) -> Result<bool, IgnitionError> {
        Ok(self.pin.is_high().map_err(pin_error)? != self.active_low)
    }
}

impl<P: InputPin + Send> IgnitionInput for DebouncedIgnition<P> {
    fn is_on(&self) -> bool {
        self.on
    }

    async fn changed(&mut self) -> Result<(bool, u64), IgnitionError> {
        let mut ticker = tokio::time::interval(POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since: Option<Instant> = None;
        loop {
            ticker.tick().await;
            let level = self.read()?;
            if level == self.on {
                since = None;
                continue;
            }
            let first = *since.get_or_insert_with(Instant::now);
            if first.elapsed() >= self.debounce {
                self.on = level;
                return Ok((level, (first - self.opened).as_micros() as u64));
            }
        }
    }
}

/// A pin the test or the simulator sets; clones share the level.
#[derive(Debug, Clone, Default)]
pub struct SimPin(Arc<AtomicBool>);

impl SimPin {
    pub fn new(high: bool) -> Self {
        Self(Arc::new(AtomicBool::new(high)))
    }

    pub fn set_high(&self, high: bool) {
        self.0.store(high, Ordering::Relaxed);
    }
}

impl ErrorType for SimPin {
    type Error = Infallible;
}

impl InputPin for SimPin {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.0.load(Ordering::Relaxed))
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.0.load(Ordering::Relaxed))
    }
}

/// A Raspberry Pi GPIO pin (BCM numbering) as an input with no pull: the sense
/// circuit drives the line.
#[cfg(feature = "rpi")]
pub fn open_gpio(bcm: u8) -> Result<rppal::gpio::InputPin, IgnitionError> {
    let gpio = rppal::gpio::Gpio::new().map_err(|e| IgnitionError::Pin(e.to_string()))?;
    let pin = gpio
        .get(bcm)
        .map_err(|e| IgnitionError::Pin(format!("GPIO {bcm}: {e}")))?;
    Ok(pin.into_input())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_glitch_shorter_than_the_debounce_is_ignored() {
        let pin = SimPin::new(false);
        let mut ign =
            DebouncedIgnition::new(pin.clone(), false, Duration::from_millis(100)).expect("pin");
        assert!(!ign.is_on());
        let glitch = pin.clone();
        tokio::spawn(async move {
            glitch.set_high(true);
            tokio::time::sleep(Duration::from_millis(50)).await;
            glitch.set_high(false);
            tokio::time::sleep(Duration::from_millis(500)).await;
            glitch.set_high(true);
        });
        let t0 = Instant::now();
        let (on, _) = ign.changed().await.expect("edge");
        assert!(on && ign.is_on());
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(650) && waited < Duration::from_millis(700),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_active_low_line_reads_on_when_pulled_down() {
        let pin = SimPin::new(false);
        let mut ign = DebouncedIgnition::new(pin.clone(), true, Duration::ZERO).expect("pin");
        assert!(ign.is_on());
        pin.set_high(true);
        assert!(!ign.changed().await.expect("edge").0);
    }
}
