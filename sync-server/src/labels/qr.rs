//! A QR code as a matrix of modules, drawn as SVG paths or a PNG.

use super::LabelError;
use qrcode::{Color, EcLevel, QrCode};
use std::fmt::Write as _;

/// Light modules around the code that scanners need (the QR quiet zone).
pub const QUIET_ZONE: usize = 4;

/// The modules of one QR code, row by row, `true` for dark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrMatrix {
    pub width: usize,
    dark: Vec<bool>,
}

impl QrMatrix {
    /// Encodes `text` at error-correction level M: a label may be scuffed, and
    /// a signed label's 129 to 135 characters still fit version 7.
    pub fn encode(text: &str) -> Result<Self, LabelError> {
        let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
            .map_err(|e| LabelError::TooLong(e.to_string()))?;
        let width = code.width();
        let dark = code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        Ok(QrMatrix { width, dark })
    }

    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        self.dark[y * self.width + x]
    }

    /// Runs of dark modules per row: `(x, y, length)`, to draw fewer shapes.
    pub fn dark_runs(&self) -> Vec<(usize, usize, usize)> {
        let mut runs = Vec::new();
        for y in 0..self.width {
            let mut x = 0;
            while x < self.width {
                if self.is_dark(x, y) {
                    let start = x;
                    while x < self.width && self.is_dark(x, y) {
                        x += 1;
                    }
                    runs.push((start, y, x - start));
                } else {
                    x += 1;
                }
            }
        }
        runs
    }

    /// Modules across, quiet zone included.
    pub fn size_with_quiet_zone(&self) -> usize {
        self.width + 2 * QUIET_ZONE
    }

    /// A scalable SVG: one path of unit squares in a view box of modules.
    pub fn svg(&self) -> String {
        let size = self.size_with_quiet_zone();
        let mut path = String::new();
        for (x, y, len) in self.dark_runs() {
            let _ = write!(
                path,
                "M{} {}h{len}v1h-{len}z",
                x + QUIET_ZONE,
                y + QUIET_ZONE
            );
        }
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" width=\"{px}\" height=\"{px}\" shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>",
            px = size * 8
        )
    }

    /// Gray pixels, `scale` pixels per module, quiet zone included.
    pub fn gray(&self, scale: usize) -> (usize, Vec<u8>) {
        let px = self.size_with_quiet_zone() * scale;
        let mut out = vec![255u8; px * px];
        for (x, y, len) in self.dark_runs() {
            for row in 0..scale {
                let py = (y + QUIET_ZONE) * scale + row;
                let from = py * px + (x + QUIET_ZONE) * scale;
                out[from..from + len * scale].fill(0);
            }
        }
        (px, out)
    }

    /// An 8-bit grayscale PNG, `scale` pixels per module.
    pub fn png(&self, scale: usize) -> Result<Vec<u8>, LabelError> {
        let (px, gray) = self.gray(scale.max(1));
        let side = u32::try_from(px).map_err(|e| LabelError::Png(e.to_string()))?;
        let img = image::GrayImage::from_raw(side, side, gray)
            .ok_or_else(|| LabelError::Png("pixel buffer size".into()))?;
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .map_err(|e| LabelError::Png(e.to_string()))?;
        Ok(out.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "6BFOXN%TS3DH6WS+A8D$SD-9QG+A*YDG:K8W1F0B5Z35HE4:BCA7QSEFR2Y7L.Q0AM:U-OJJDPD*LLNXO-LT7/DJ0O*%98:3WA*TT:B:08J2VJ+L+/F$G7B4I10ZW/5RN9WJ";

    #[test]
    fn a_signed_label_length_fits_a_version_7_code_at_level_m() {
        let m = QrMatrix::encode(LABEL).unwrap();
        assert!(m.width <= 45, "{} modules", m.width);
    }

    #[test]
    fn the_png_and_svg_draw_the_same_modules() {
        let m = QrMatrix::encode("HELLO").unwrap();
        let (px, gray) = m.gray(3);
        assert_eq!(px, m.size_with_quiet_zone() * 3);
        for y in 0..m.width {
            for x in 0..m.width {
                let p = gray[((y + QUIET_ZONE) * 3 + 1) * px + (x + QUIET_ZONE) * 3 + 1];
                assert_eq!(p == 0, m.is_dark(x, y), "module {x},{y}");
            }
        }
        let dark_cells: usize = m.dark_runs().iter().map(|r| r.2).sum();
        assert_eq!(
            dark_cells,
            (0..m.width * m.width).filter(|i| m.dark[*i]).count()
        );
        assert!(m.svg().starts_with("<svg"));
        let png = m.png(4).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn text_too_long_for_any_code_is_an_error_not_a_panic() {
        let huge = "A".repeat(5000);
        assert!(matches!(
            QrMatrix::encode(&huge),
            Err(LabelError::TooLong(_))
        ));
    }
}
