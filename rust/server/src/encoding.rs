//! Content codings of HTTP bodies: request bodies sent with `Content-Encoding: gzip` or
//! `deflate` (tritonclient's `request_compression_algorithm`) are decoded with the body limit
//! applied to the decoded bytes, and answers are compressed when `Accept-Encoding` asks for it
//! (`response_compression_algorithm`). Requests without these headers never come here.

use std::io::{Read, Write};

use flate2::read::{GzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;

/// A coding this server reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// HTTP's "deflate" is the zlib format (RFC 9110), which is what clients send.
    Deflate,
}

impl Coding {
    pub fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The coding is not one this server reads (the message names it).
    Unsupported(String),
    /// Decoded, the body is larger than `limit`.
    TooLarge,
    /// The bytes are not valid in the coding.
    Corrupt(String),
}

/// The `Content-Encoding` header's coding: None for identity.
pub fn content_coding(header: &str) -> Result<Option<Coding>, DecodeError> {
    match header.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(None),
        "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
        "deflate" => Ok(Some(Coding::Deflate)),
        other => Err(DecodeError::Unsupported(other.to_string())),
    }
}

/// Decodes `body`, reading at most `limit` decoded bytes (a small body that inflates to
/// gigabytes stops at the limit).
pub fn decode(coding: Coding, body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let cap = limit.saturating_add(1) as u64;
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let read = match coding {
        Coding::Gzip => GzDecoder::new(body).take(cap).read_to_end(&mut out),
        Coding::Deflate => ZlibDecoder::new(body).take(cap).read_to_end(&mut out),
    };
    read.map_err(|e| DecodeError::Corrupt(format!("the {} body is corrupt: {e}", coding.name())))?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}

/// The coding to answer with, from `Accept-Encoding` (gzip before deflate at equal weight;
/// `q=0` refuses a coding).
pub fn accepted(header: &str) -> Option<Coding> {
    let mut best: Option<(Coding, f32)> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let coding = match name.as_str() {
            "gzip" | "x-gzip" => Coding::Gzip,
            "deflate" => Coding::Deflate,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    best.map(|(c, _)| c)
}

/// Compresses an answer.
pub fn encode(coding: Coding, body: &[u8]) -> Vec<u8> {
    let out = Vec::with_capacity(body.len() / 2 + 64);
    let level = Compression::fast();
    match coding {
        Coding::Gzip => {
            let mut e = GzEncoder::new(out, level);
            e.write_all(body).expect("writing to a Vec cannot fail");
            e.finish().expect("writing to a Vec cannot fail")
        }
        Coding::Deflate => {
            let mut e = ZlibEncoder::new(out, level);
            e.write_all(body).expect("writing to a Vec cannot fail");
            e.finish().expect("writing to a Vec cannot fail")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_limits_and_negotiation() {
        let body = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
        for coding in [Coding::Gzip, Coding::Deflate] {
            let packed = encode(coding, body);
            assert_eq!(decode(coding, &packed, 1 << 20).unwrap(), body);
            assert_eq!(
                decode(coding, &packed, body.len() - 1),
                Err(DecodeError::TooLarge)
            );
            assert!(matches!(
                decode(coding, &packed[..packed.len() / 2], 1 << 20),
                Err(DecodeError::Corrupt(_))
            ));
        }
        // A bomb: 100 MB of zeros in ~100 kB stops at the limit.
        let bomb = encode(Coding::Gzip, &vec![0u8; 100_000_000]);
        assert_eq!(
            decode(Coding::Gzip, &bomb, 1000),
            Err(DecodeError::TooLarge)
        );
        assert_eq!(content_coding("GZIP"), Ok(Some(Coding::Gzip)));
        assert_eq!(content_coding("identity"), Ok(None));
        assert_eq!(
            content_coding("br"),
            Err(DecodeError::Unsupported("br".into()))
        );
        assert_eq!(accepted("gzip, deflate"), Some(Coding::Gzip));
        assert_eq!(accepted("deflate"), Some(Coding::Deflate));
        assert_eq!(accepted("gzip;q=0, deflate;q=0.5"), Some(Coding::Deflate));
        assert_eq!(accepted("br, identity"), None);
        assert_eq!(accepted("gzip;q=0.2, deflate;q=0.9"), Some(Coding::Deflate));
    }
}
