//! The TOTP key as a QR code, a `data:image/png;base64,…` URL a client can
//! show as it is (Kratos's `totp_qr` image node). The PNG is written here:
//! a QR code is a 1-bit image, and stored (uncompressed) deflate blocks need
//! a CRC-32 and an Adler-32, a few dozen lines where an image crate would
//! bring half a dozen crates for an image of about 10 KB.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use qrcodegen::{QrCode, QrCodeEcc};

/// The side Kratos gives the image; ours is the smallest whole-pixel scale
/// at least this big, so modules stay sharp.
pub const SIDE: u32 = 256;
/// The quiet zone the QR standard asks for, in modules.
const BORDER: u32 = 4;

/// `None` when `text` is too long for any QR code (an otpauth URL never is).
pub fn data_url(text: &str) -> Option<String> {
    // Medium error correction, as Kratos's generator uses.
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let modules = qr.size() as u32 + 2 * BORDER;
    let scale = SIDE.div_ceil(modules);
    let side = modules * scale;
    let dark = |x: u32, y: u32| {
        let (mx, my) = ((x / scale) as i32 - BORDER as i32, (y / scale) as i32 - BORDER as i32);
        qr.get_module(mx, my)
    };
    let png = png_1bit(side, side, dark);
    Some(format!("data:image/png;base64,{}", STANDARD.encode(png)))
}

/// A grayscale PNG of 1 bit per pixel: `dark` pixels black, the rest white.
fn png_1bit(width: u32, height: u32, dark: impl Fn(u32, u32) -> bool) -> Vec<u8> {
    let row_bytes = width.div_ceil(8) as usize;
    let mut raw = Vec::with_capacity((row_bytes + 1) * height as usize);
    for y in 0..height {
        raw.push(0); // filter: none
        let start = raw.len();
        raw.resize(start + row_bytes, 0);
        for x in 0..width {
            if !dark(x, y) {
                raw[start + (x / 8) as usize] |= 0x80 >> (x % 8);
            }
        }
    }
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]); // depth 1, grayscale, deflate, no filter set, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of stored deflate blocks (RFC 1950, RFC 1951 §3.2.4).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(u16::MAX as usize).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_their_reference_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn the_png_holds_the_code_at_a_sharp_scale() {
        let url = data_url("otpauth://totp/Example:ada@example.com?algorithm=SHA1&digits=6&issuer=Example&period=30&secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap();
        let png = STANDARD.decode(url.strip_prefix("data:image/png;base64,").unwrap()).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert_eq!(width, height);
        assert!((SIDE..SIDE + 64).contains(&width), "{width}");
        assert_eq!(&png[24..26], &[1, 0], "1-bit grayscale");
        assert_eq!(&png[png.len() - 12..], b"\0\0\0\0IEND\xaeB`\x82");
        // Every chunk's CRC checks out.
        let mut at = 8;
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
            assert_eq!(crc32(&png[at + 4..at + 8 + len]), crc);
            at += 12 + len;
        }
    }

    #[test]
    fn stored_blocks_split_at_64_kib_and_keep_the_data() {
        let data: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let z = zlib_stored(&data);
        assert_eq!(&z[..2], &[0x78, 0x01]);
        assert_eq!(z[2], 0, "not the last block");
        assert_eq!(&z[3..5], &u16::MAX.to_le_bytes());
        assert_eq!(&z[7..7 + 65535], &data[..65535]);
        let second = 7 + 65535;
        assert_eq!(z[second], 1, "the last block");
        assert_eq!(u16::from_le_bytes([z[second + 1], z[second + 2]]) as usize, 70_000 - 65535);
        assert_eq!(&z[z.len() - 4..], &adler32(&data).to_be_bytes());
    }
}
