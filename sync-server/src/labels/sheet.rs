//! A PDF sheet of labels: a grid, each cell a QR code drawn as vector squares
//! with the short code and the name beneath, in the PDF base font Helvetica
//! (nothing embedded, text stays searchable).

use super::qr::{QrMatrix, QUIET_ZONE};
use super::LabelError;
use crate::pdf::{win_ansi, Pages, BOLD, REGULAR};
use pdf_writer::{Content, Str};
use serde::Deserialize;

/// The most labels one request may print.
pub const MAX_LABELS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Paper {
    #[default]
    A4,
    Letter,
}

impl Paper {
    /// Width and height in points.
    pub fn size(self) -> (f32, f32) {
        match self {
            Paper::A4 => (595.28, 841.89),
            Paper::Letter => (612.0, 792.0),
        }
    }
}

/// One label to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetLabel {
    /// The QR text (a signed label).
    pub text: String,
    pub short_code: String,
    pub name: String,
}

const MARGIN: f32 = 36.0;
const COLUMNS: usize = 3;
/// The QR's side with its quiet zone: about 46 mm, so each module of a
/// version-7 code is about 1 mm.
const QR_SIDE: f32 = 130.0;
const CODE_SIZE: f32 = 12.0;
const NAME_SIZE: f32 = 9.0;
const CELL_HEIGHT: f32 = QR_SIDE + 2.0 * CODE_SIZE + NAME_SIZE + 14.0;

/// Labels per page on `paper`.
pub fn per_page(paper: Paper) -> usize {
    let (_, h) = paper.size();
    COLUMNS * (((h - 2.0 * MARGIN) / CELL_HEIGHT).floor() as usize)
}

/// Cuts `bytes` to what fits `width` points at `size` (Helvetica averages about
/// half an em a character), with an ellipsis mark when cut.
fn fit(mut bytes: Vec<u8>, width: f32, size: f32) -> Vec<u8> {
    let max = (width / (0.55 * size)).floor() as usize;
    if bytes.len() > max {
        bytes.truncate(max.saturating_sub(3));
        bytes.extend_from_slice(b"...");
    }
    bytes
}

/// Rough Helvetica width of `bytes` at `size`, to centre a line.
fn approx_width(bytes: &[u8], size: f32) -> f32 {
    bytes.len() as f32 * 0.55 * size
}

/// The sheet: as many pages as the labels need.
pub fn render(labels: &[SheetLabel], paper: Paper) -> Result<Vec<u8>, LabelError> {
    if labels.is_empty() || labels.len() > MAX_LABELS {
        return Err(LabelError::SheetSize {
            max: MAX_LABELS,
            got: labels.len(),
        });
    }
    let codes = labels
        .iter()
        .map(|l| QrMatrix::encode(&l.text))
        .collect::<Result<Vec<_>, _>>()?;
    let (pw, ph) = paper.size();
    let per_page = per_page(paper);
    let pages = labels.len().div_ceil(per_page);
    let cell_w = (pw - 2.0 * MARGIN) / COLUMNS as f32;

    let mut doc = Pages::new(pages, (pw, ph), b"Helvetica");
    for p in 0..pages {
        let mut content = Content::new();
        let on_page = &labels[p * per_page..labels.len().min((p + 1) * per_page)];
        for (i, label) in on_page.iter().enumerate() {
            let qr = &codes[p * per_page + i];
            let col = i % COLUMNS;
            let row = i / COLUMNS;
            let left = MARGIN + col as f32 * cell_w;
            let top = ph - MARGIN - row as f32 * CELL_HEIGHT;
            let qr_left = left + (cell_w - QR_SIDE) / 2.0;
            let qr_top = top;
            let module = QR_SIDE / qr.size_with_quiet_zone() as f32;
            content.set_fill_gray(0.0);
            for (x, y, len) in qr.dark_runs() {
                let x0 = qr_left + (x + QUIET_ZONE) as f32 * module;
                let y0 = qr_top - (y + QUIET_ZONE + 1) as f32 * module;
                content.rect(x0, y0, len as f32 * module, module);
            }
            content.fill_nonzero();

            let code = fit(win_ansi(&label.short_code), cell_w, CODE_SIZE);
            let name = fit(win_ansi(&label.name), cell_w - 8.0, NAME_SIZE);
            let code_y = qr_top - QR_SIDE - CODE_SIZE;
            let name_y = code_y - NAME_SIZE - 4.0;
            content.begin_text();
            content.set_font(BOLD, CODE_SIZE);
            content.next_line(
                left + (cell_w - approx_width(&code, CODE_SIZE)) / 2.0,
                code_y,
            );
            content.show(Str(&code));
            content.end_text();
            content.begin_text();
            content.set_font(REGULAR, NAME_SIZE);
            content.next_line(
                left + ((cell_w - approx_width(&name, NAME_SIZE)) / 2.0).max(4.0),
                name_y,
            );
            content.show(Str(&name));
            content.end_text();
        }
        doc.set_content(p, content);
    }
    Ok(doc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(i: usize) -> SheetLabel {
        SheetLabel {
            text: format!("LABEL{i:04}"),
            short_code: format!("AAA-BBB-{i:03}"),
            name: format!("Van {i} (Müller)"),
        }
    }

    #[test]
    fn a4_and_letter_each_fit_twelve_labels_a_page() {
        assert_eq!(per_page(Paper::A4), 12);
        assert_eq!(per_page(Paper::Letter), 12);
    }

    #[test]
    fn a_sheet_has_a_page_per_twelve_labels_and_the_codes_as_text() {
        let labels: Vec<_> = (0..13).map(label).collect();
        let pdf = render(&labels, Paper::Letter).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&pdf);
        assert_eq!(
            text.matches("/Type /Page\n").count() + text.matches("/Type /Page ").count(),
            2,
            "{}",
            &text[..400.min(text.len())]
        );
        assert!(text.contains("(AAA-BBB-012)"));
        assert!(text.contains("/MediaBox [0 0 612 792]"));
    }

    #[test]
    fn an_empty_or_huge_sheet_is_refused() {
        assert!(matches!(
            render(&[], Paper::A4),
            Err(LabelError::SheetSize { .. })
        ));
        let many = vec![label(1); MAX_LABELS + 1];
        assert!(matches!(
            render(&many, Paper::A4),
            Err(LabelError::SheetSize { .. })
        ));
    }

    #[test]
    fn names_outside_latin_1_print_as_question_marks_and_long_ones_are_cut() {
        assert_eq!(win_ansi("Ünal 李\u{7}"), b"\xdcnal ?".to_vec());
        let cut = fit(vec![b'x'; 200], 100.0, 10.0);
        assert!(cut.len() <= 18 && cut.ends_with(b"..."));
    }
}
