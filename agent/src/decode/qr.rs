//! QR codes in a camera frame: every code found, with its text and corners.
//!
//! rqrr finds and reads codes in a black-and-white image; yard photos are not
//! that. So the frame goes through a short list of passes, each a different
//! way of turning gray into black and white: rqrr's own row threshold on the
//! frame as it is, a local-mean threshold from an integral image (uneven light,
//! low contrast), a local-contrast (Sauvola) threshold that holds up under glare,
//! a half-size frame (blur and sensor noise average out, big modules get
//! cheaper) and a double-size one (small modules get enough pixels). Codes are
//! collected across passes, so two codes that need different passes are both
//! found. A frame is done once a pass has read a code and left no candidate
//! unread; a frame with no code runs every pass.
//!
//! Pure: pixels in, codes out.

use fleet_hal::camera::Frame;
use serde::Serialize;

/// One decoded code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QrCode {
    pub text: String,
    /// Corners in frame pixels: top-left, top-right, bottom-right, bottom-left
    /// as the code is printed (not as it appears: a code upside down has its
    /// top-left corner at the bottom right of the frame). Good to about a
    /// module.
    pub corners: [[i32; 2]; 4],
}

/// Every distinct code in `frame`.
pub fn decode(frame: &Frame) -> Vec<QrCode> {
    decode_gray(frame.width as usize, frame.height as usize, &frame.gray)
}

/// Every distinct code in a row-major 8-bit gray image of `w` by `h`.
pub fn decode_gray(w: usize, h: usize, gray: &[u8]) -> Vec<QrCode> {
    decode_traced(w, h, gray, &Pass::ALL).0
}

/// One way of turning the gray frame into black and white for rqrr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    /// rqrr's own row threshold on the frame as it is.
    AsIs,
    /// A local-mean threshold over a wide window: uneven light, low contrast.
    LocalMean,
    /// Sauvola's local-contrast threshold: glare and washed-out patches.
    LocalContrast,
    /// Half size: blur and noise average out.
    Half,
    /// Double size: small modules.
    Double,
    /// A 3x3 blur then a narrow local mean: noise on small modules.
    Smoothed,
}

impl Pass {
    /// The order [`decode`] tries them in: cheap and most often enough first.
    pub const ALL: [Pass; 6] = [
        Pass::AsIs,
        Pass::LocalMean,
        Pass::LocalContrast,
        Pass::Half,
        Pass::Double,
        Pass::Smoothed,
    ];

    fn binarise(self, g: &Gray, ii: &Integral) -> Option<(Bits, f64)> {
        let small = g.w.min(g.h);
        Some(match self {
            Pass::AsIs => (Bits::Gray(g.clone()), 1.0),
            Pass::LocalMean => (mean_threshold(g, ii, small / 8, 8), 1.0),
            Pass::LocalContrast => (sauvola(g, ii, small / 12, 0.2), 1.0),
            Pass::Half => {
                let half = g.half();
                let ii = Integral::new(&half);
                (mean_threshold(&half, &ii, small / 16, 6), 2.0)
            }
            Pass::Double => {
                // Only worth it where the frame is not already big.
                if g.w > 1000 {
                    return None;
                }
                let d = g.double();
                let ii = Integral::new(&d);
                (mean_threshold(&d, &ii, small / 4, 8), 0.5)
            }
            Pass::Smoothed => {
                let b = g.blur3(ii);
                let ii = Integral::new(&b);
                (mean_threshold(&b, &ii, small / 24, 3), 1.0)
            }
        })
    }
}

/// What one pass did on one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PassTrace {
    pub pass: Pass,
    /// Codes this pass read that no earlier pass had.
    pub new: usize,
    /// Candidates rqrr located but could not read.
    pub failed: usize,
    pub micros: u64,
}

/// [`decode_gray`] with only `passes`, in that order, saying what each did (for
/// the benchmark and for tuning the order).
pub fn decode_traced(
    w: usize,
    h: usize,
    gray: &[u8],
    passes: &[Pass],
) -> (Vec<QrCode>, Vec<PassTrace>) {
    let mut found = Vec::new();
    let mut trace = Vec::new();
    if w == 0 || h == 0 || gray.len() < w * h {
        return (found, trace);
    }
    // Frames far larger than a kiosk camera's are read at about 1000 pixels
    // across; the passes then work on that.
    let mut base = Gray {
        w,
        h,
        px: gray[..w * h].to_vec(),
    };
    let mut base_scale = 1.0;
    while base.w > 1280 {
        base = base.half();
        base_scale *= 2.0;
    }
    let ii = Integral::new(&base);
    for &pass in passes {
        let t0 = std::time::Instant::now();
        let Some((bits, scale)) = pass.binarise(&base, &ii) else {
            continue;
        };
        let (new, failed) = read(bits, scale * base_scale, &mut found);
        trace.push(PassTrace {
            pass,
            new,
            failed,
            micros: t0.elapsed().as_micros() as u64,
        });
        // Done: codes read and no candidate left unread. A second code that
        // this pass did not even locate is given up for speed; the camera
        // sees it again in the next frame.
        if !found.is_empty() && failed == 0 {
            break;
        }
    }
    (found, trace)
}

/// A binarised image ready for rqrr.
enum Bits {
    /// rqrr thresholds it itself.
    Gray(Gray),
    /// `true` is black.
    Black(usize, usize, Vec<bool>),
}

/// Reads every candidate rqrr locates; returns (new codes, failed candidates).
fn read(bits: Bits, scale: f64, found: &mut Vec<QrCode>) -> (usize, usize) {
    let mut img = match bits {
        Bits::Gray(g) => {
            rqrr::PreparedImage::prepare_from_greyscale(g.w, g.h, |x, y| g.px[y * g.w + x])
        }
        Bits::Black(w, h, b) => rqrr::PreparedImage::prepare_from_bitmap(w, h, |x, y| b[y * w + x]),
    };
    let (mut new, mut failed) = (0, 0);
    for grid in img.detect_grids() {
        match grid.decode() {
            Ok((_, text)) => {
                if found.iter().any(|c| c.text == text) {
                    continue;
                }
                let corners = grid.bounds.map(|p| {
                    [
                        (p.x as f64 * scale).round() as i32,
                        (p.y as f64 * scale).round() as i32,
                    ]
                });
                found.push(QrCode { text, corners });
                new += 1;
            }
            Err(_) => failed += 1,
        }
    }
    (new, failed)
}

/// An owned gray image.
#[derive(Clone)]
struct Gray {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Gray {
    /// Half size by 2x2 box averaging.
    fn half(&self) -> Gray {
        let (w, h) = (self.w / 2, self.h / 2);
        let mut px = Vec::with_capacity(w * h);
        for y in 0..h {
            let r0 = &self.px[2 * y * self.w..];
            let r1 = &self.px[(2 * y + 1) * self.w..];
            for x in 0..w {
                let s = r0[2 * x] as u16
                    + r0[2 * x + 1] as u16
                    + r1[2 * x] as u16
                    + r1[2 * x + 1] as u16;
                px.push(((s + 2) / 4) as u8);
            }
        }
        Gray { w, h, px }
    }

    /// Double size, bilinear.
    fn double(&self) -> Gray {
        let (w, h) = (self.w * 2, self.h * 2);
        let mut px = Vec::with_capacity(w * h);
        for y in 0..h {
            // Centre of the output pixel in source coordinates.
            let sy = (y as f32 + 0.5) / 2.0 - 0.5;
            let y0 = (sy.floor().max(0.0)) as usize;
            let y1 = (y0 + 1).min(self.h - 1);
            let fy = (sy - y0 as f32).clamp(0.0, 1.0);
            for x in 0..w {
                let sx = (x as f32 + 0.5) / 2.0 - 0.5;
                let x0 = (sx.floor().max(0.0)) as usize;
                let x1 = (x0 + 1).min(self.w - 1);
                let fx = (sx - x0 as f32).clamp(0.0, 1.0);
                let p = |xx: usize, yy: usize| self.px[yy * self.w + xx] as f32;
                let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
                let bot = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
                px.push((top * (1.0 - fy) + bot * fy + 0.5) as u8);
            }
        }
        Gray { w, h, px }
    }

    /// 3x3 box blur (sensor noise), from the integral image.
    fn blur3(&self, ii: &Integral) -> Gray {
        let mut px = Vec::with_capacity(self.w * self.h);
        for y in 0..self.h {
            for x in 0..self.w {
                let (sum, n) = ii.window(x, y, 1);
                px.push(((sum + n as u64 / 2) / n as u64) as u8);
            }
        }
        Gray {
            w: self.w,
            h: self.h,
            px,
        }
    }
}

/// Summed-area tables of the pixels and of their squares.
struct Integral {
    w: usize,
    h: usize,
    sum: Vec<u64>,
    sq: Vec<u64>,
}

impl Integral {
    fn new(g: &Gray) -> Self {
        let stride = g.w + 1;
        let mut sum = vec![0u64; stride * (g.h + 1)];
        let mut sq = vec![0u64; stride * (g.h + 1)];
        for y in 0..g.h {
            let mut row = 0u64;
            let mut row_sq = 0u64;
            for x in 0..g.w {
                let v = g.px[y * g.w + x] as u64;
                row += v;
                row_sq += v * v;
                sum[(y + 1) * stride + x + 1] = sum[y * stride + x + 1] + row;
                sq[(y + 1) * stride + x + 1] = sq[y * stride + x + 1] + row_sq;
            }
        }
        Self {
            w: g.w,
            h: g.h,
            sum,
            sq,
        }
    }

    fn bounds(&self, x: usize, y: usize, r: usize) -> (usize, usize, usize, usize) {
        (
            x.saturating_sub(r),
            y.saturating_sub(r),
            (x + r + 1).min(self.w),
            (y + r + 1).min(self.h),
        )
    }

    fn area(t: &[u64], stride: usize, (x0, y0, x1, y1): (usize, usize, usize, usize)) -> u64 {
        t[y1 * stride + x1] + t[y0 * stride + x0] - t[y0 * stride + x1] - t[y1 * stride + x0]
    }

    /// Sum and pixel count of the window of radius `r` around (x, y), clipped.
    fn window(&self, x: usize, y: usize, r: usize) -> (u64, usize) {
        let b = self.bounds(x, y, r);
        let n = (b.2 - b.0) * (b.3 - b.1);
        (Self::area(&self.sum, self.w + 1, b), n)
    }

    /// Sum, sum of squares and count of the same window.
    fn window_sq(&self, x: usize, y: usize, r: usize) -> (u64, u64, usize) {
        let b = self.bounds(x, y, r);
        let n = (b.2 - b.0) * (b.3 - b.1);
        (
            Self::area(&self.sum, self.w + 1, b),
            Self::area(&self.sq, self.w + 1, b),
            n,
        )
    }
}

/// Black where a pixel is more than `offset_pct` percent darker than the mean
/// of the `window`-wide square around it (Bradley's adaptive threshold).
fn mean_threshold(g: &Gray, ii: &Integral, window: usize, offset_pct: u64) -> Bits {
    let r = (window / 2).max(4);
    let mut bits = Vec::with_capacity(g.w * g.h);
    for y in 0..g.h {
        for x in 0..g.w {
            let (sum, n) = ii.window(x, y, r);
            let v = g.px[y * g.w + x] as u64;
            bits.push(v * n as u64 * 100 < sum * (100 - offset_pct));
        }
    }
    Bits::Black(g.w, g.h, bits)
}

/// Sauvola's threshold: the mean lowered in proportion to how little the
/// window varies, so a washed-out patch of glare still splits into modules
/// while flat paper stays white.
fn sauvola(g: &Gray, ii: &Integral, window: usize, k: f64) -> Bits {
    let r = (window / 2).max(4);
    let mut bits = Vec::with_capacity(g.w * g.h);
    for y in 0..g.h {
        for x in 0..g.w {
            let (s, sq, n) = ii.window_sq(x, y, r);
            let n = n as f64;
            let mean = s as f64 / n;
            let var = (sq as f64 / n - mean * mean).max(0.0);
            let t = mean * (1.0 + k * (var.sqrt() / 128.0 - 1.0));
            bits.push((g.px[y * g.w + x] as f64) < t);
        }
    }
    Bits::Black(g.w, g.h, bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` as a QR code drawn at `module` pixels a module, with a 4-module
    /// quiet zone, at (ox, oy) on a `w` by `h` page of `paper`, ink `ink`.
    #[allow(clippy::too_many_arguments)]
    fn draw_text(
        text: &str,
        w: usize,
        h: usize,
        ox: usize,
        oy: usize,
        module: usize,
        paper: u8,
        ink: u8,
    ) -> Vec<u8> {
        let mut px = vec![paper; w * h];
        stamp(&mut px, w, text, ox, oy, module, ink);
        px
    }

    fn stamp(px: &mut [u8], w: usize, text: &str, ox: usize, oy: usize, module: usize, ink: u8) {
        let code = qrcode::QrCode::new(text.as_bytes()).expect("encodable");
        let n = code.width();
        let colors = code.to_colors();
        for my in 0..n {
            for mx in 0..n {
                if colors[my * n + mx] != qrcode::Color::Dark {
                    continue;
                }
                for dy in 0..module {
                    for dx in 0..module {
                        let x = ox + (mx + 4) * module + dx;
                        let y = oy + (my + 4) * module + dy;
                        px[y * w + x] = ink;
                    }
                }
            }
        }
    }

    fn draw(
        w: usize,
        h: usize,
        ox: usize,
        oy: usize,
        module: usize,
        paper: u8,
        ink: u8,
    ) -> Vec<u8> {
        draw_text("HELLO", w, h, ox, oy, module, paper, ink)
    }

    fn texts(codes: &[QrCode]) -> Vec<&str> {
        codes.iter().map(|c| c.text.as_str()).collect()
    }

    #[test]
    fn a_clean_code_is_read_with_its_corners() {
        let px = draw(200, 160, 10, 5, 5, 255, 0);
        let codes = decode_gray(200, 160, &px);
        assert_eq!(texts(&codes), ["HELLO"], "{codes:?}");
        // The code spans modules 4..25 of the drawing: x 30..135, y 25..130.
        // rqrr's corners are good to about a module (5 pixels here): its far
        // corners lie a module outside the code.
        let [tl, tr, br, bl] = codes[0].corners;
        let near = |p: [i32; 2], x: i32, y: i32| (p[0] - x).abs() <= 6 && (p[1] - y).abs() <= 6;
        assert!(near(tl, 30, 25), "{tl:?}");
        assert!(near(tr, 135, 25), "{tr:?}");
        assert!(near(br, 135, 130), "{br:?}");
        assert!(near(bl, 30, 130), "{bl:?}");
    }

    #[test]
    fn a_faint_code_on_a_lit_gradient_is_read_by_a_local_threshold() {
        let (w, h) = (240, 200);
        let mut px = draw(w, h, 40, 20, 5, 200, 150);
        // Light falls off from left to right across the whole frame.
        for y in 0..h {
            for x in 0..w {
                let shade = 1.0 - 0.6 * x as f32 / w as f32;
                px[y * w + x] = (px[y * w + x] as f32 * shade) as u8;
            }
        }
        assert_eq!(texts(&decode_gray(w, h, &px)), ["HELLO"]);
    }

    #[test]
    fn a_code_with_two_pixel_modules_is_read_at_double_size() {
        let px = draw(120, 100, 3, 2, 2, 230, 40);
        assert_eq!(texts(&decode_gray(120, 100, &px)), ["HELLO"]);
    }

    #[test]
    fn corners_are_in_frame_pixels_when_the_code_was_read_at_another_scale() {
        // Big enough that the frame is halved before the passes.
        let (w, h) = (1600, 900);
        let px = draw(w, h, 400, 100, 20, 255, 0);
        let codes = decode_gray(w, h, &px);
        assert_eq!(texts(&codes), ["HELLO"]);
        let [tl, ..] = codes[0].corners;
        assert!(
            (tl[0] - 480).abs() <= 8 && (tl[1] - 180).abs() <= 8,
            "{tl:?}"
        );
    }

    #[test]
    fn two_codes_in_one_frame_are_both_read() {
        let (w, h) = (400, 200);
        let mut px = draw_text("FIRST", w, h, 0, 10, 5, 255, 0);
        stamp(&mut px, w, "SECOND", 200, 20, 4, 30);
        let codes = decode_gray(w, h, &px);
        let mut got = texts(&codes);
        got.sort();
        assert_eq!(got, ["FIRST", "SECOND"]);
    }

    #[test]
    fn blank_noise_and_degenerate_frames_give_no_codes() {
        assert!(decode_gray(0, 0, &[]).is_empty());
        assert!(decode_gray(10, 10, &[0; 5]).is_empty());
        assert!(decode_gray(64, 48, &vec![255; 64 * 48]).is_empty());
        let mut seed = 7u32;
        let noise: Vec<u8> = (0..160 * 120)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 24) as u8
            })
            .collect();
        assert!(decode_gray(160, 120, &noise).is_empty());
    }

    #[test]
    fn the_mean_threshold_marks_dark_pixels_against_their_neighbourhood() {
        let mut g = Gray {
            w: 20,
            h: 20,
            px: vec![100; 400],
        };
        g.px[10 * 20 + 10] = 60;
        let ii = Integral::new(&g);
        let Bits::Black(_, _, bits) = mean_threshold(&g, &ii, 8, 10) else {
            panic!("bitmap expected")
        };
        assert_eq!(bits.iter().filter(|b| **b).count(), 1);
        assert!(bits[10 * 20 + 10]);
    }

    #[test]
    fn half_and_double_keep_the_picture() {
        let g = Gray {
            w: 4,
            h: 2,
            px: vec![0, 100, 200, 200, 100, 0, 200, 200],
        };
        assert_eq!(g.half().px, vec![50, 200]);
        let d = g.double();
        assert_eq!((d.w, d.h), (8, 4));
        assert_eq!(d.px[0], 0);
        assert_eq!(d.px[7], 200);
    }
}
