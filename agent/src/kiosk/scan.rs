//! A scan: a QR code the kiosk has just been shown. The camera sees a held-up
//! label in frame after frame; [`ScanDeduper`] turns those sightings into one
//! scan per showing. Pure: frames' codes and times in, new scans out.

use crate::decode::qr::QrCode;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// A label shown to the camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The code's text, as printed (a signed label, see `fleet_protocol::label`).
    pub text: String,
    /// Where the code was in the frame that first showed it (frame pixels,
    /// top-left, top-right, bottom-right, bottom-left of the code).
    pub corners: [[i32; 2]; 4],
    /// The capture time of that frame.
    pub at: Instant,
}

/// How long a code must be out of sight before showing it again is a new scan.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
struct Sighting {
    last: Instant,
    frame: u64,
}

/// One scan per showing of a code: the same text in consecutive frames, or
/// seen again within the window of its last sighting, is the same scan; after
/// the window out of sight it is a new one.
#[derive(Debug)]
pub struct ScanDeduper {
    window: Duration,
    frame: u64,
    seen: HashMap<String, Sighting>,
}

impl Default for ScanDeduper {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl ScanDeduper {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            frame: 0,
            seen: HashMap::new(),
        }
    }

    /// The codes of one frame captured at `at`; returns those that are new
    /// scans, in the frame's order. Frames must come in capture order.
    pub fn frame(&mut self, at: Instant, codes: Vec<QrCode>) -> Vec<Scan> {
        self.frame += 1;
        let frame = self.frame;
        let window = self.window;
        let mut scans = Vec::new();
        for code in codes {
            let new = match self.seen.get(&code.text) {
                None => true,
                Some(s) if s.frame == frame => false,
                Some(s) => s.frame + 1 != frame && at.saturating_duration_since(s.last) > window,
            };
            self.seen
                .insert(code.text.clone(), Sighting { last: at, frame });
            if new {
                scans.push(Scan {
                    text: code.text,
                    corners: code.corners,
                    at,
                });
            }
        }
        // Forget codes out of sight for longer than the window (and not in
        // this frame), so the map holds only what is or was just in view.
        self.seen
            .retain(|_, s| s.frame == frame || at.saturating_duration_since(s.last) <= window);
        scans
    }

    /// Codes currently remembered (in view, or out of view within the window).
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> QrCode {
        QrCode {
            text: text.into(),
            corners: [[0, 0], [10, 0], [10, 10], [0, 10]],
        }
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn texts(scans: &[Scan]) -> Vec<&str> {
        scans.iter().map(|s| s.text.as_str()).collect()
    }

    #[test]
    fn a_code_held_in_view_across_frames_is_one_scan() {
        let t0 = Instant::now();
        let mut d = ScanDeduper::default();
        assert_eq!(texts(&d.frame(t0, vec![code("A")])), ["A"]);
        for i in 1..50 {
            assert!(d.frame(ms(t0, i * 100), vec![code("A")]).is_empty());
        }
    }

    #[test]
    fn consecutive_frames_are_one_scan_even_when_far_apart() {
        // A camera that stalls for 5 s between two frames with the code in both.
        let t0 = Instant::now();
        let mut d = ScanDeduper::default();
        assert_eq!(d.frame(t0, vec![code("A")]).len(), 1);
        assert!(d.frame(ms(t0, 5_000), vec![code("A")]).is_empty());
    }

    #[test]
    fn a_code_missed_in_a_few_frames_within_the_window_is_still_the_same_scan() {
        let t0 = Instant::now();
        let mut d = ScanDeduper::default();
        assert_eq!(d.frame(t0, vec![code("A")]).len(), 1);
        assert!(d.frame(ms(t0, 100), vec![]).is_empty());
        assert!(d.frame(ms(t0, 200), vec![]).is_empty());
        assert!(d.frame(ms(t0, 1_900), vec![code("A")]).is_empty());
        // The window counts from the last sighting, not the first.
        assert!(d.frame(ms(t0, 3_800), vec![code("A")]).is_empty());
    }

    #[test]
    fn a_code_that_comes_back_after_the_window_is_a_new_scan() {
        let t0 = Instant::now();
        let mut d = ScanDeduper::default();
        let first = d.frame(t0, vec![code("A")]);
        assert!(d.frame(ms(t0, 100), vec![]).is_empty());
        let again = d.frame(ms(t0, 2_101), vec![code("A")]);
        assert_eq!(texts(&again), ["A"]);
        assert_eq!(again[0].at, ms(t0, 2_101));
        assert_eq!(first[0].at, t0);
    }

    #[test]
    fn two_codes_in_one_frame_are_two_scans_and_a_repeat_in_the_frame_is_one() {
        let t0 = Instant::now();
        let mut d = ScanDeduper::default();
        let s = d.frame(t0, vec![code("BADGE"), code("KEY"), code("BADGE")]);
        assert_eq!(texts(&s), ["BADGE", "KEY"]);
        let s = d.frame(ms(t0, 100), vec![code("KEY"), code("ASSET")]);
        assert_eq!(texts(&s), ["ASSET"]);
    }

    #[test]
    fn codes_out_of_view_past_the_window_are_forgotten() {
        let t0 = Instant::now();
        let mut d = ScanDeduper::new(Duration::from_millis(500));
        d.frame(t0, vec![code("A"), code("B")]);
        d.frame(ms(t0, 400), vec![code("B")]);
        assert_eq!(d.remembered(), 2);
        d.frame(ms(t0, 800), vec![]);
        assert_eq!(d.remembered(), 1);
        d.frame(ms(t0, 1_000), vec![]);
        assert_eq!(d.remembered(), 0);
    }
}
