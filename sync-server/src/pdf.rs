//! The PDF skeleton the summary report and the label sheet share: same-sized
//! pages in one page tree, two PDF base fonts under the names [`REGULAR`] and
//! [`BOLD`] (nothing embedded, so text stays searchable), one content stream a
//! page, and text as WinAnsi bytes.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref};

/// The body font's resource name on every page.
pub const REGULAR: Name<'static> = Name(b"F1");
/// Helvetica-Bold's resource name on every page.
pub const BOLD: Name<'static> = Name(b"F2");

/// A document whose pages are laid out and waiting for their content.
pub struct Pages {
    pdf: Pdf,
}

fn page_ref(i: usize) -> Ref {
    Ref::new(5 + 2 * i as i32)
}

fn content_ref(i: usize) -> Ref {
    Ref::new(6 + 2 * i as i32)
}

impl Pages {
    /// `count` pages of `width` by `height` points; `regular_font` is the base
    /// font [`REGULAR`] names (Courier, Helvetica…).
    pub fn new(count: usize, (width, height): (f32, f32), regular_font: &[u8]) -> Pages {
        let catalog = Ref::new(1);
        let tree = Ref::new(2);
        let (font, bold) = (Ref::new(3), Ref::new(4));
        let mut pdf = Pdf::new();
        pdf.catalog(catalog).pages(tree);
        pdf.pages(tree)
            .kids((0..count).map(page_ref))
            .count(count as i32);
        pdf.type1_font(font)
            .base_font(Name(regular_font))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
        pdf.type1_font(bold)
            .base_font(Name(b"Helvetica-Bold"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
        for p in 0..count {
            let mut page = pdf.page(page_ref(p));
            page.media_box(Rect::new(0.0, 0.0, width, height))
                .parent(tree)
                .contents(content_ref(p));
            page.resources()
                .fonts()
                .pair(REGULAR, font)
                .pair(BOLD, bold);
            page.finish();
        }
        Pages { pdf }
    }

    /// What page `p` (from 0) shows.
    pub fn set_content(&mut self, p: usize, content: Content) {
        self.pdf.stream(content_ref(p), &content.finish());
    }

    /// The document's bytes.
    pub fn finish(self) -> Vec<u8> {
        self.pdf.finish()
    }
}

/// `s` as WinAnsi bytes for a base font: control characters dropped, and
/// characters outside Latin-1 shown as `?`.
pub fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .filter(|c| !c.is_control())
        .map(|c| match u32::from(c) {
            0x20..=0x7e | 0xa0..=0xff => c as u8,
            _ => b'?',
        })
        .collect()
}
