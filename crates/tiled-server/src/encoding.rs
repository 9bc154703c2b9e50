//! Tiled's own content encodings, which tower-http does not know: `blosc2`
//! for binary arrays and Arrow (the Python client lists it when
//! python-blosc2 is installed) and `lz4` (a raw LZ4 block with its size
//! prepended, as Python's `lz4.block.compress`), used only when the
//! request lists it. gzip, deflate, zstd and br are left to the
//! compression layer, which skips any response that already has a
//! `Content-Encoding`.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

/// Bodies smaller than this are sent as they are (upstream's threshold).
const MIN_BYTES: usize = 1000;
/// Below this compression ratio the encoding is not worth the client's CPU.
const MIN_RATIO: f64 = 1.11;
/// blosc2 chunks hold less than 2 GiB; bigger bodies become several
/// frames, which the client decodes one after another.
const BLOSC2_FRAME: usize = 64 << 20;

/// An encoding this module applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Shuffle by `typesize` bytes, then zstd (level 1).
    Blosc2 {
        typesize: usize,
    },
    Lz4,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Blosc2 { .. } => "blosc2",
            Encoding::Lz4 => "lz4",
        }
    }
}

/// The codings listed in `Accept-Encoding` with a non-zero q-value.
fn accepted(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let name = pieces.next()?.trim().to_ascii_lowercase();
            let q = pieces
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            (q > 0.0 && !name.is_empty()).then_some(name)
        })
        .collect()
}

/// Which of our encodings to use for a body of `media_type`, if any:
/// blosc2 for raw arrays and Arrow when listed, else lz4 when listed (never
/// for media types that are compressed already).
pub fn choose(headers: &HeaderMap, media_type: &str, typesize: usize) -> Option<Encoding> {
    let listed = accepted(headers);
    let binary = media_type == tiled_formats::OCTET_STREAM
        || media_type == tiled_formats::ARROW_FILE
        || media_type == tiled_formats::ARROW_STREAM;
    let precompressed = media_type.starts_with("image/")
        || media_type == tiled_formats::PARQUET
        || media_type == tiled_formats::XLSX;
    if binary && listed.iter().any(|e| e == "blosc2") {
        Some(Encoding::Blosc2 {
            typesize: typesize.clamp(1, 255),
        })
    } else if !precompressed && listed.iter().any(|e| e == "lz4") {
        Some(Encoding::Lz4)
    } else {
        None
    }
}

/// blosc2 frames of `body` (one per [`BLOSC2_FRAME`] bytes).
///
/// # Errors
/// A message if the codec fails (a bug; the caller then sends the body as
/// it is).
pub fn blosc2_frames(body: &[u8], typesize: usize) -> Result<Vec<u8>, String> {
    let mut params = blusc::BLOSC2_CPARAMS_DEFAULTS;
    params.compcode = blusc::BLOSC_ZSTD;
    params.clevel = 1;
    params.typesize = typesize.clamp(1, 255) as i32;
    params.filters[blusc::BLOSC2_MAX_FILTERS as usize - 1] = blusc::BLOSC_SHUFFLE;
    let ctx = blusc::blosc2_create_cctx(params);
    let mut out = Vec::with_capacity(body.len() / 2 + blusc::BLOSC2_MAX_OVERHEAD);
    let mut frame = Vec::new();
    for piece in body.chunks(BLOSC2_FRAME) {
        frame.resize(piece.len() + blusc::BLOSC2_MAX_OVERHEAD, 0);
        let n = blusc::blosc2_compress_ctx(&ctx, piece, &mut frame);
        if n <= 0 {
            return Err(format!("blosc2 compression failed ({n})"));
        }
        out.extend_from_slice(&frame[..n as usize]);
    }
    Ok(out)
}

/// `body` in `encoding`, or `None` when that does not pay (small body, poor
/// ratio, or a codec failure).
pub fn encode(encoding: Encoding, body: &[u8]) -> Option<Vec<u8>> {
    if body.len() < MIN_BYTES {
        return None;
    }
    let out = match encoding {
        Encoding::Blosc2 { typesize } => blosc2_frames(body, typesize).ok()?,
        Encoding::Lz4 => lz4_flex::block::compress_prepend_size(body),
    };
    (body.len() as f64 / out.len().max(1) as f64 > MIN_RATIO).then_some(out)
}

/// Mark `resp` as encoded with `encoding`.
pub fn mark(resp: &mut Response, encoding: Encoding) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.name()),
    );
    h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.remove(header::CONTENT_LENGTH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_follows_accept_encoding() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, zstd, blosc2"),
        );
        assert_eq!(
            choose(&h, tiled_formats::OCTET_STREAM, 8),
            Some(Encoding::Blosc2 { typesize: 8 })
        );
        assert_eq!(choose(&h, "text/csv", 8), None);
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("lz4, blosc2;q=0"),
        );
        assert_eq!(
            choose(&h, tiled_formats::OCTET_STREAM, 8),
            Some(Encoding::Lz4)
        );
        assert_eq!(choose(&h, "image/png", 1), None);
    }

    #[test]
    fn round_trips_and_skips_what_does_not_pay() {
        let body: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 100).to_le_bytes())
            .collect();
        let lz4 = encode(Encoding::Lz4, &body).expect("compresses");
        assert_eq!(
            lz4_flex::block::decompress_size_prepended(&lz4).unwrap(),
            body
        );
        let b2 = encode(Encoding::Blosc2 { typesize: 4 }, &body).expect("compresses");
        let mut back = vec![0u8; body.len()];
        assert_eq!(blusc::blosc2_decompress(&b2, &mut back), body.len() as i32);
        assert_eq!(back, body);
        assert!(encode(Encoding::Lz4, &[1, 2, 3]).is_none());
    }
}
