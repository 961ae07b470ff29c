//! The binary tensor data extension: fixed-width little-endian elements, and BYTES as
//! 4-byte length-prefixed byte strings.

use std::borrow::Cow;

use pilothouse_runtime::half;
use pilothouse_runtime::{DType, TensorData};

pub(super) fn decode_binary(
    dtype: DType,
    bytes: &[u8],
    count: usize,
) -> std::result::Result<TensorData<'static>, String> {
    macro_rules! fixed {
        ($variant:ident, $ty:ty) => {{
            let width = std::mem::size_of::<$ty>();
            if count.checked_mul(width) != Some(bytes.len()) {
                return Err(format!(
                    "binary_data_size is {} bytes but the shape needs {} {} values ({} bytes each)",
                    bytes.len(),
                    count,
                    dtype.protocol_name(),
                    width
                ));
            }
            TensorData::$variant(Cow::Owned(
                bytes
                    .chunks_exact(width)
                    .map(|c| <$ty>::from_le_bytes(c.try_into().expect("exact chunks")))
                    .collect(),
            ))
        }};
    }
    Ok(match dtype {
        DType::Float16 => fixed!(Float16, half::f16),
        DType::BFloat16 => fixed!(BFloat16, half::bf16),
        DType::Float32 => fixed!(Float32, f32),
        DType::Float64 => fixed!(Float64, f64),
        DType::Int8 => fixed!(Int8, i8),
        DType::Int16 => fixed!(Int16, i16),
        DType::Int32 => fixed!(Int32, i32),
        DType::Int64 => fixed!(Int64, i64),
        DType::UInt8 => fixed!(UInt8, u8),
        DType::UInt16 => fixed!(UInt16, u16),
        DType::UInt32 => fixed!(UInt32, u32),
        DType::UInt64 => fixed!(UInt64, u64),
        DType::Bool => {
            if bytes.len() != count {
                return Err(format!(
                    "binary_data_size is {} bytes but the shape needs {count} BOOL values",
                    bytes.len()
                ));
            }
            TensorData::Bool(Cow::Owned(bytes.iter().map(|b| *b != 0).collect()))
        }
        DType::String => {
            // Each element has a 4-byte length prefix: the bytes bound what can be there.
            let mut out = Vec::with_capacity(count.min(bytes.len() / 4));
            let mut rest = bytes;
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err("BYTES binary data ends inside a length prefix".into());
                }
                let n = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                if rest.len() < 4 + n {
                    return Err(format!(
                        "BYTES element {} claims {n} bytes but only {} remain",
                        out.len(),
                        rest.len() - 4
                    ));
                }
                out.push(rest[4..4 + n].to_vec());
                rest = &rest[4 + n..];
            }
            TensorData::from_byte_strings(out)
        }
    })
}

pub(super) fn append_binary(data: &TensorData<'_>, out: &mut Vec<u8>) {
    fn strings<'b>(elements: impl Iterator<Item = &'b [u8]>, out: &mut Vec<u8>) {
        for b in elements {
            // A model's element past 4 GiB cannot be framed; it never fits a response anyway.
            let n = u32::try_from(b.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&b[..n as usize]);
        }
    }
    macro_rules! le {
        ($v:expr) => {
            $v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
    }
    match data {
        TensorData::Float16(v) => le!(v),
        TensorData::BFloat16(v) => le!(v),
        TensorData::Float32(v) => le!(v),
        TensorData::Float64(v) => le!(v),
        TensorData::Int8(v) => le!(v),
        TensorData::Int16(v) => le!(v),
        TensorData::Int32(v) => le!(v),
        TensorData::Int64(v) => le!(v),
        TensorData::UInt8(v) => out.extend_from_slice(v),
        TensorData::UInt16(v) => le!(v),
        TensorData::UInt32(v) => le!(v),
        TensorData::UInt64(v) => le!(v),
        TensorData::Bool(v) => out.extend(v.iter().map(|b| u8::from(*b))),
        TensorData::String(v) => strings(v.iter().map(|s| s.as_bytes()), out),
        TensorData::Bytes(v) => strings(v.iter().map(|b| b.as_slice()), out),
    }
}
