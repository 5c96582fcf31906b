//! The summary report as a PDF: lines of text in the PDF base font Courier
//! (fixed width, so columns line up; nothing embedded), as many A4 pages as
//! the lines need.

use crate::pdf::{win_ansi, Pages, BOLD, REGULAR};
use pdf_writer::{Content, Str};

const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 40.0;
const TITLE_SIZE: f32 = 14.0;
const SIZE: f32 = 8.5;
const LEADING: f32 = 11.0;
/// Courier is 0.6 em a character: what fits between the margins.
pub const COLUMNS: usize = ((PAGE_W - 2.0 * MARGIN) / (0.6 * SIZE)) as usize;

/// A line as WinAnsi bytes, cut to what fits between the margins.
fn line_bytes(s: &str) -> Vec<u8> {
    let mut out = win_ansi(s);
    out.truncate(COLUMNS);
    out
}

/// A document with `title` on each page and `lines` beneath it.
pub fn render(title: &str, lines: &[String]) -> Vec<u8> {
    let per_page = ((PAGE_H - 2.0 * MARGIN - 2.0 * TITLE_SIZE) / LEADING).floor() as usize;
    let pages = lines.len().div_ceil(per_page).max(1);
    let mut doc = Pages::new(pages, (PAGE_W, PAGE_H), b"Courier");
    for p in 0..pages {
        let mut c = Content::new();
        c.begin_text();
        c.set_font(BOLD, TITLE_SIZE);
        c.next_line(MARGIN, PAGE_H - MARGIN - TITLE_SIZE);
        let head = format!("{title}   (page {} of {pages})", p + 1);
        c.show(Str(&line_bytes(&head)));
        c.end_text();
        c.begin_text();
        c.set_font(REGULAR, SIZE);
        c.set_leading(LEADING);
        c.next_line(MARGIN, PAGE_H - MARGIN - 3.0 * TITLE_SIZE);
        for line in lines.iter().skip(p * per_page).take(per_page) {
            c.show(Str(&line_bytes(line)));
            c.next_line_using_leading();
        }
        c.end_text();
        doc.set_content(p, c);
    }
    doc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reports_run_onto_more_pages_and_text_stays_readable() {
        let lines: Vec<String> = (0..150)
            .map(|i| format!("vehicle-{i:03}  12.5 h"))
            .collect();
        let pdf = render("Fleet summary", &lines);
        assert!(pdf.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&pdf);
        assert!(!text.contains("of 4)"));
        assert!(text.contains("(vehicle-149  12.5 h)"));
        assert!(text.contains("page 3 of 3"));
    }
}
