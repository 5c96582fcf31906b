//! Printable labels: a signed label's QR code as an SVG or PNG image, and PDF
//! sheets of labels (QR, short code and name) on A4 or US Letter.
//!
//! Pure: text in, bytes out. The HTTP layer finds and signs the labels.

pub mod qr;
pub mod sheet;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("the label text does not fit a QR code: {0}")]
    TooLong(String),
    #[error("PNG encoding failed: {0}")]
    Png(String),
    #[error("a sheet holds 1 to {max} labels, not {got}")]
    SheetSize { max: usize, got: usize },
}
