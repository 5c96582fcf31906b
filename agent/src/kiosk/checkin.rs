//! The images of a check-in: the photo from the kiosk's camera as a JPEG with a
//! thumbnail, each under a size bound, and the driver's signature as the PNG
//! the touch screen's canvas drew. Pure: bytes and frames in, bytes out.

use base64::Engine as _;

/// A check-in photo is at most this big; quality drops until it fits.
pub const MAX_PHOTO_BYTES: usize = 512 << 10;
pub const MAX_THUMB_BYTES: usize = 24 << 10;
pub const THUMB_WIDTH: u32 = 160;
pub const MAX_SIGNATURE_BYTES: usize = 256 << 10;
/// Qualities tried in turn until the JPEG fits its bound.
const QUALITIES: [u8; 5] = [85, 70, 55, 40, 25];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("the camera frame is empty or its size does not match its pixels")]
    BadFrame,
    #[error("cannot encode the photo: {0}")]
    Encode(String),
    #[error("the photo does not fit {0} bytes even at the lowest quality")]
    TooLarge(usize),
    #[error("the signature is not a PNG data URL")]
    NotPng,
    #[error("the signature is larger than {MAX_SIGNATURE_BYTES} bytes")]
    SignatureTooLarge,
    #[error("the signature is empty")]
    SignatureEmpty,
}

/// A grayscale JPEG of `gray` (`width` × `height`) no larger than `max_bytes`.
pub fn jpeg(gray: &[u8], width: u32, height: u32, max_bytes: usize) -> Result<Vec<u8>, ImageError> {
    if width == 0 || height == 0 || gray.len() != width as usize * height as usize {
        return Err(ImageError::BadFrame);
    }
    for q in QUALITIES {
        let mut out = Vec::with_capacity(max_bytes.min(gray.len()));
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q)
            .encode(gray, width, height, image::ExtendedColorType::L8)
            .map_err(|e| ImageError::Encode(e.to_string()))?;
        if out.len() <= max_bytes {
            return Ok(out);
        }
    }
    Err(ImageError::TooLarge(max_bytes))
}

/// `gray` scaled down (box filter) to `to_width` wide, keeping its aspect;
/// a frame already that narrow is returned as is.
pub fn downscale(gray: &[u8], width: u32, height: u32, to_width: u32) -> (Vec<u8>, u32, u32) {
    if width <= to_width || to_width == 0 {
        return (gray.to_vec(), width, height);
    }
    let to_height = ((u64::from(height) * u64::from(to_width)) / u64::from(width)).max(1) as u32;
    let mut out = Vec::with_capacity((to_width * to_height) as usize);
    for ty in 0..to_height {
        let y0 = ty * height / to_height;
        let y1 = ((ty + 1) * height / to_height).max(y0 + 1);
        for tx in 0..to_width {
            let x0 = tx * width / to_width;
            let x1 = ((tx + 1) * width / to_width).max(x0 + 1);
            let mut sum = 0u32;
            for y in y0..y1 {
                let row = &gray[(y * width) as usize..];
                sum += row[x0 as usize..x1 as usize]
                    .iter()
                    .map(|&p| u32::from(p))
                    .sum::<u32>();
            }
            out.push((sum / ((y1 - y0) * (x1 - x0))) as u8);
        }
    }
    (out, to_width, to_height)
}

/// The photo and its thumbnail, both JPEG, both within their bounds.
pub fn photo(gray: &[u8], width: u32, height: u32) -> Result<(Vec<u8>, Vec<u8>), ImageError> {
    let full = jpeg(gray, width, height, MAX_PHOTO_BYTES)?;
    let (small, w, h) = downscale(gray, width, height, THUMB_WIDTH);
    let thumb = jpeg(&small, w, h, MAX_THUMB_BYTES)?;
    Ok((full, thumb))
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The PNG bytes of a canvas's `toDataURL("image/png")`, checked.
pub fn signature_png(data_url: &str) -> Result<Vec<u8>, ImageError> {
    let b64 = data_url
        .strip_prefix("data:image/png;base64,")
        .ok_or(ImageError::NotPng)?;
    if b64.len() > MAX_SIGNATURE_BYTES / 3 * 4 + 4 {
        return Err(ImageError::SignatureTooLarge);
    }
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| ImageError::NotPng)?;
    if png.len() > MAX_SIGNATURE_BYTES {
        return Err(ImageError::SignatureTooLarge);
    }
    if !png.starts_with(PNG_MAGIC) || png.len() < 33 || &png[12..16] != b"IHDR" {
        return Err(ImageError::NotPng);
    }
    let w = u32::from_be_bytes(png[16..20].try_into().expect("4 bytes"));
    let h = u32::from_be_bytes(png[20..24].try_into().expect("4 bytes"));
    if w == 0 || h == 0 {
        return Err(ImageError::SignatureEmpty);
    }
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32) -> Vec<u8> {
        (0..w * h)
            .map(|i| (((i % w) * 255 / w) ^ ((i / w) * 7)) as u8)
            .collect()
    }

    #[test]
    fn a_vga_frame_becomes_a_bounded_jpeg_and_a_160_pixel_thumbnail() {
        let g = frame(640, 480);
        let (full, thumb) = photo(&g, 640, 480).expect("photo");
        assert!(full.starts_with(&[0xff, 0xd8]) && full.len() <= MAX_PHOTO_BYTES);
        assert!(thumb.starts_with(&[0xff, 0xd8]) && thumb.len() <= MAX_THUMB_BYTES);
        assert!(thumb.len() < full.len());
        let t = image::load_from_memory(&thumb).expect("decodes");
        assert_eq!((t.width(), t.height()), (160, 120));
    }

    #[test]
    fn a_photo_that_cannot_fit_is_an_error_not_a_truncated_file() {
        let noise: Vec<u8> = (0..640u32 * 480)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(
            jpeg(&noise, 640, 480, 2_000),
            Err(ImageError::TooLarge(2_000))
        );
        assert_eq!(jpeg(&noise, 640, 479, 2_000), Err(ImageError::BadFrame));
    }

    #[test]
    fn downscaling_averages_boxes_and_keeps_the_aspect() {
        let g = vec![0u8, 255, 0, 255, 0, 255, 0, 255];
        let (out, w, h) = downscale(&g, 4, 2, 2);
        assert_eq!((w, h), (2, 1));
        assert_eq!(out, vec![127, 127]);
    }

    #[test]
    fn only_a_png_data_url_within_bounds_is_a_signature() {
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&[0u8; 20 * 10], 20, 10, image::ExtendedColorType::L8)
            .expect("png");
        let url = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&png)
        );
        assert_eq!(signature_png(&url), Ok(png));
        assert_eq!(
            signature_png("data:image/jpeg;base64,AAAA"),
            Err(ImageError::NotPng)
        );
        assert_eq!(
            signature_png("data:image/png;base64,not base64!"),
            Err(ImageError::NotPng)
        );
        let huge = format!(
            "data:image/png;base64,{}",
            "A".repeat(MAX_SIGNATURE_BYTES * 2)
        );
        assert_eq!(signature_png(&huge), Err(ImageError::SignatureTooLarge));
    }

    use image::ImageEncoder as _;
}
