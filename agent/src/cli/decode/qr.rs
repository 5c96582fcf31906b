//! `fleet-agent decode qr IMAGE…`: the QR codes in each JPEG or PNG, one JSON
//! line per image: `{"file", "width", "height", "codes": [{"text", "corners"}]}`,
//! or `{"file", "error"}` for a file that cannot be read as an image.

use crate::decode::qr;
use fleet_hal::camera::convert;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QrSummary {
    pub images: usize,
    pub codes: usize,
    /// Images without a single code.
    pub empty: usize,
    /// Files that could not be read or decoded as an image.
    pub errors: usize,
}

#[derive(Serialize)]
struct Line<'a> {
    file: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    codes: Option<Vec<qr::QrCode>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The codes of one image file, or why there are none to look for.
pub fn decode_file(path: &Path) -> Result<(u32, u32, Vec<qr::QrCode>), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (w, h, gray) = convert::decode_image(&bytes).map_err(|e| e.to_string())?;
    Ok((w, h, qr::decode_gray(w as usize, h as usize, &gray)))
}

/// Decodes every file in order, writing one line each; a bad file is a line
/// with an `error`, and the rest still run.
pub fn decode_qr_files(files: &[PathBuf], out: &mut impl Write) -> std::io::Result<QrSummary> {
    let mut s = QrSummary::default();
    for path in files {
        let name = path.display().to_string();
        let line = match decode_file(path) {
            Ok((w, h, codes)) => {
                s.images += 1;
                s.codes += codes.len();
                if codes.is_empty() {
                    s.empty += 1;
                }
                Line {
                    file: &name,
                    width: Some(w),
                    height: Some(h),
                    codes: Some(codes),
                    error: None,
                }
            }
            Err(e) => {
                s.errors += 1;
                Line {
                    file: &name,
                    width: None,
                    height: None,
                    codes: None,
                    error: Some(e),
                }
            }
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_with_code(path: &Path, text: &str) {
        let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
        let n = code.width();
        let colors = code.to_colors();
        let (m, q) = (4u32, 4u32);
        let side = (n as u32 + 2 * q) * m;
        let img = image::GrayImage::from_fn(side, side, |x, y| {
            let (mx, my) = ((x / m) as i64 - q as i64, (y / m) as i64 - q as i64);
            let dark = mx >= 0
                && my >= 0
                && (mx as usize) < n
                && (my as usize) < n
                && colors[my as usize * n + mx as usize] == qrcode::Color::Dark;
            image::Luma([if dark { 0 } else { 255 }])
        });
        img.save(path).unwrap();
    }

    #[test]
    fn each_image_gets_a_line_and_a_bad_file_an_error_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("badge.png");
        png_with_code(&good, "K7Q-2F9-XM4");
        let blank = dir.path().join("blank.png");
        image::GrayImage::from_pixel(40, 30, image::Luma([200]))
            .save(&blank)
            .unwrap();
        let bad = dir.path().join("notes.jpg");
        std::fs::write(&bad, "not a picture").unwrap();
        let missing = dir.path().join("missing.png");
        let mut out = Vec::new();
        let s = decode_qr_files(&[good, blank, bad, missing], &mut out).unwrap();
        assert_eq!(
            s,
            QrSummary {
                images: 2,
                codes: 1,
                empty: 1,
                errors: 2
            }
        );
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["codes"][0]["text"], "K7Q-2F9-XM4");
        assert_eq!(lines[0]["codes"][0]["corners"].as_array().unwrap().len(), 4);
        assert!(lines[0]["file"].as_str().unwrap().ends_with("badge.png"));
        assert_eq!(lines[1]["codes"], serde_json::json!([]));
        assert!(lines[2]["error"].as_str().unwrap().contains("not an image"));
        assert!(lines[2].get("codes").is_none());
        assert!(lines[3]["error"].is_string());
    }
}
