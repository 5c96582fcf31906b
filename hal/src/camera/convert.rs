//! Camera pixel formats to 8-bit gray. Pure: bytes in, pixels out.

use super::CameraError;

/// Packed YUYV 4:2:2 (V4L2 `YUYV`): the Y bytes are the gray image.
pub fn yuyv_to_gray(width: u32, height: u32, yuyv: &[u8]) -> Result<Vec<u8>, CameraError> {
    let pixels = width as usize * height as usize;
    if width % 2 != 0 || yuyv.len() < pixels * 2 {
        return Err(CameraError::BadFrame(format!(
            "YUYV {width}x{height} needs {} bytes, got {}",
            pixels * 2,
            yuyv.len()
        )));
    }
    Ok(yuyv[..pixels * 2].iter().step_by(2).copied().collect())
}

/// Packed 24-bit RGB to gray with the BT.601 luma weights, in integers.
pub fn rgb_to_gray(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, CameraError> {
    let pixels = width as usize * height as usize;
    if rgb.len() < pixels * 3 {
        return Err(CameraError::BadFrame(format!(
            "RGB {width}x{height} needs {} bytes, got {}",
            pixels * 3,
            rgb.len()
        )));
    }
    Ok(rgb[..pixels * 3]
        .chunks_exact(3)
        .map(|p| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32 + 128) >> 8) as u8)
        .collect())
}

/// A JPEG or PNG image (by its content, not a file name) to gray: (width,
/// height, pixels).
pub fn decode_image(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), CameraError> {
    let format = image::guess_format(bytes)
        .map_err(|e| CameraError::BadFrame(format!("not an image: {e}")))?;
    if !matches!(format, image::ImageFormat::Jpeg | image::ImageFormat::Png) {
        return Err(CameraError::BadFrame(format!(
            "{format:?} images are not read; use JPEG or PNG"
        )));
    }
    let img = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| CameraError::BadFrame(e.to_string()))?;
    let gray = img.into_luma8();
    let (w, h) = gray.dimensions();
    if w == 0 || h == 0 {
        return Err(CameraError::BadFrame("empty image".into()));
    }
    Ok((w, h, gray.into_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_keeps_the_luma_bytes() {
        let yuyv = [10, 128, 20, 128, 30, 99, 40, 99];
        assert_eq!(yuyv_to_gray(4, 1, &yuyv).unwrap(), vec![10, 20, 30, 40]);
        assert_eq!(yuyv_to_gray(2, 2, &yuyv).unwrap(), vec![10, 20, 30, 40]);
    }

    #[test]
    fn a_short_or_odd_width_yuyv_buffer_is_a_bad_frame() {
        assert!(matches!(
            yuyv_to_gray(4, 2, &[0; 8]),
            Err(CameraError::BadFrame(_))
        ));
        assert!(yuyv_to_gray(3, 1, &[0; 8]).is_err());
    }

    #[test]
    fn rgb_uses_luma_weights() {
        let rgb = [255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 255, 0];
        assert_eq!(rgb_to_gray(4, 1, &rgb).unwrap(), vec![255, 0, 77, 149]);
    }

    #[test]
    fn a_png_decodes_to_its_gray_pixels() {
        let mut png = Vec::new();
        let img = image::GrayImage::from_raw(3, 2, vec![0, 50, 100, 150, 200, 250]).unwrap();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(
            decode_image(&png).unwrap(),
            (3, 2, vec![0, 50, 100, 150, 200, 250])
        );
    }

    #[test]
    fn text_and_truncated_jpegs_are_bad_frames_not_panics() {
        assert!(decode_image(b"hello, not an image").is_err());
        assert!(decode_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J']).is_err());
    }
}
