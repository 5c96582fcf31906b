//! The summary report as a PDF: lines of text in the PDF base font Courier
//! (fixed width, so columns line up; nothing embedded), as many A4 pages as
//! the lines need.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};

const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 40.0;
const TITLE_SIZE: f32 = 14.0;
const SIZE: f32 = 8.5;
const LEADING: f32 = 11.0;
/// Courier is 0.6 em a character: what fits between the margins.
pub const COLUMNS: usize = ((PAGE_W - 2.0 * MARGIN) / (0.6 * SIZE)) as usize;

fn win_ansi(s: &str) -> Vec<u8> {
    let mut out: Vec<u8> = s
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| match u32::from(c) {
            0x20..=0x7e | 0xa0..=0xff => c as u8,
            _ => b'?',
        })
        .collect();
    out.truncate(COLUMNS);
    out
}

/// A document with `title` on each page and `lines` beneath it.
pub fn render(title: &str, lines: &[String]) -> Vec<u8> {
    let per_page = ((PAGE_H - 2.0 * MARGIN - 2.0 * TITLE_SIZE) / LEADING).floor() as usize;
    let pages = lines.len().div_ceil(per_page).max(1);
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let font = Ref::new(3);
    let bold = Ref::new(4);
    let page_ref = |i: usize| Ref::new(5 + 2 * i as i32);
    let content_ref = |i: usize| Ref::new(6 + 2 * i as i32);
    let (regular, heading) = (Name(b"F1"), Name(b"F2"));

    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids((0..pages).map(page_ref))
        .count(pages as i32);
    pdf.type1_font(font)
        .base_font(Name(b"Courier"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    for p in 0..pages {
        let mut page = pdf.page(page_ref(p));
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H))
            .parent(tree)
            .contents(content_ref(p));
        page.resources()
            .fonts()
            .pair(regular, font)
            .pair(heading, bold);
        page.finish();

        let mut c = Content::new();
        c.begin_text();
        c.set_font(heading, TITLE_SIZE);
        c.next_line(MARGIN, PAGE_H - MARGIN - TITLE_SIZE);
        let head = format!("{title}   (page {} of {pages})", p + 1);
        c.show(Str(&win_ansi(&head)));
        c.end_text();
        c.begin_text();
        c.set_font(regular, SIZE);
        c.set_leading(LEADING);
        c.next_line(MARGIN, PAGE_H - MARGIN - 3.0 * TITLE_SIZE);
        for line in lines.iter().skip(p * per_page).take(per_page) {
            c.show(Str(&win_ansi(line)));
            c.next_line_using_leading();
        }
        c.end_text();
        pdf.stream(content_ref(p), &c.finish());
    }
    pdf.finish()
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
