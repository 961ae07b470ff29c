//! Requests' tensors as typed Arrow columns of the payload log: one column per tensor
//! (`input.<name>`, `output.<name>`), one row per request, so that pandas, DuckDB, polars
//! or Spark read the values as they were served. A row holds a list of the request's rows
//! (a tensor of rank one or less: a list of its values), each a list of that row's values
//! flattened (higher ranks: the signature says how to reshape them). The tensors are held
//! by reference until a chunk of rows is finished, then copied once into the arrays.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array,
    Int64Array, Int8Array, LargeListArray, StringArray, UInt16Array, UInt32Array, UInt64Array,
    UInt8Array,
};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::Field;
use pilothouse_runtime::{OwnedTensor, TensorData};
use sha2::{Digest, Sha256};

use crate::protocol::write_data_json;
use crate::spec::LogPolicy;

/// One request's value in one payload column.
enum Entry {
    /// Tensor `.1` of the request's tensors.
    Tensor(Arc<Vec<OwnedTensor>>, usize),
    /// A digest instead of the values (the deployment's `hash_inputs`).
    Hashed(String),
}

/// One payload column being gathered: (side, tensor name, the rows that have it).
type Gathered = (&'static str, String, Vec<(usize, Entry)>);

/// The payload columns of a chunk of rows, in the order their tensors were first seen.
#[derive(Default)]
pub(super) struct Payloads {
    columns: Vec<Gathered>,
    /// Bytes of the tensors held.
    pub bytes: usize,
}

/// The digest the log keeps of a hashed tensor: SHA-256 of its values as protocol JSON.
pub(super) fn digest(t: &OwnedTensor) -> String {
    let mut text = Vec::new();
    write_data_json(&t.data, &mut text);
    format!("sha256:{}", hex::encode(Sha256::digest(&text)))
}

impl Payloads {
    /// Adds row `row`'s tensors of one side ("input" or "output") under `policy` (inputs:
    /// dropped and hashed names).
    pub fn push(
        &mut self,
        row: usize,
        side: &'static str,
        names: &[String],
        tensors: &Arc<Vec<OwnedTensor>>,
        policy: Option<&LogPolicy>,
    ) {
        for (i, (name, t)) in names.iter().zip(tensors.iter()).enumerate() {
            if policy.is_some_and(|p| p.drop.iter().any(|d| d == name)) {
                continue;
            }
            let entry = if policy.is_some_and(|p| p.hash.iter().any(|h| h == name)) {
                Entry::Hashed(digest(t))
            } else {
                self.bytes += t.data.memory_bytes();
                Entry::Tensor(tensors.clone(), i)
            };
            let at = self
                .columns
                .iter()
                .position(|(s, n, _)| *s == side && n == name);
            match at {
                Some(c) => self.columns[c].2.push((row, entry)),
                None => self.columns.push((side, name.clone(), vec![(row, entry)])),
            }
        }
    }

    /// The columns of `rows` rows (a row without the tensor is null); starts over empty.
    pub fn finish(&mut self, rows: usize) -> Vec<(Field, ArrayRef)> {
        self.bytes = 0;
        std::mem::take(&mut self.columns)
            .into_iter()
            .map(|(side, name, entries)| {
                let array = column(rows, entries);
                (
                    Field::new(format!("{side}.{name}"), array.data_type().clone(), true),
                    array,
                )
            })
            .collect()
    }
}

/// What the values of a column become.
#[derive(Clone, Copy, PartialEq)]
enum Elem {
    /// Every tensor of one element type: kept (half floats as float32).
    Same,
    /// Numbers of several types (a version changed them): float64.
    Float64,
    /// Strings and byte strings mixed: bytes.
    Binary,
    /// Numbers and text mixed: text.
    Text,
}

fn is_text(d: &TensorData<'_>) -> bool {
    matches!(d, TensorData::String(_) | TensorData::Bytes(_))
}

fn column(rows: usize, entries: Vec<(usize, Entry)>) -> ArrayRef {
    let mut valid = vec![false; rows];
    if entries.iter().any(|(_, e)| matches!(e, Entry::Hashed(_))) {
        // a policy that changed within the chunk: every value of the column is hashed
        let mut out: Vec<Option<String>> = vec![None; rows];
        for (row, e) in entries {
            if let Some(slot) = out.get_mut(row) {
                *slot = Some(match e {
                    Entry::Hashed(h) => h,
                    Entry::Tensor(ts, i) => digest(&ts[i]),
                });
            }
        }
        return Arc::new(StringArray::from(out));
    }
    let tensors: Vec<(usize, &OwnedTensor)> = entries
        .iter()
        .filter_map(|(row, e)| match e {
            Entry::Tensor(ts, i) => Some((*row, &ts[*i])),
            Entry::Hashed(_) => None,
        })
        .filter(|(row, _)| *row < rows)
        .collect();
    let first = tensors
        .first()
        .map(|(_, t)| std::mem::discriminant(&t.data));
    let elem = match first {
        Some(d)
            if tensors
                .iter()
                .all(|(_, t)| std::mem::discriminant(&t.data) == d) =>
        {
            Elem::Same
        }
        _ if tensors.iter().all(|(_, t)| is_text(&t.data)) => Elem::Binary,
        _ if tensors.iter().all(|(_, t)| !is_text(&t.data)) => Elem::Float64,
        _ => Elem::Text,
    };
    let nested = tensors.iter().any(|(_, t)| t.shape.len() >= 2);
    let data: Vec<&TensorData<'static>> = tensors.iter().map(|(_, t)| &t.data).collect();
    let values = values(&data, elem);
    let item = Arc::new(Field::new("item", values.data_type().clone(), true));
    // offsets of the request rows' lists (nested) and of each request's list
    let mut outer: Vec<i64> = Vec::with_capacity(rows + 1);
    let mut inner: Vec<i64> = vec![0];
    let mut next = tensors.iter().peekable();
    let (mut lists, mut flat) = (0i64, 0i64);
    outer.push(0);
    for (row, v) in valid.iter_mut().enumerate() {
        if let Some((_, t)) = next.next_if(|(r, _)| *r == row) {
            *v = true;
            let len = t.data.len() as i64;
            if nested {
                let d0 = t.shape.first().copied().unwrap_or(1) as i64;
                let width = if d0 == 0 { 0 } else { len / d0 };
                for _ in 0..d0 {
                    flat += width;
                    inner.push(flat);
                }
                lists += d0;
            } else {
                lists += len;
            }
        }
        outer.push(lists);
    }
    let values: ArrayRef = if nested {
        Arc::new(LargeListArray::new(
            item,
            OffsetBuffer::new(ScalarBuffer::from(inner)),
            values,
            None,
        ))
    } else {
        values
    };
    let field = Arc::new(Field::new("item", values.data_type().clone(), true));
    Arc::new(LargeListArray::new(
        field,
        OffsetBuffer::new(ScalarBuffer::from(outer)),
        values,
        Some(NullBuffer::from(valid)),
    ))
}

/// Every tensor's values, one after another, as one array of the column's element type.
fn values(data: &[&TensorData<'static>], elem: Elem) -> ArrayRef {
    macro_rules! cat {
        ($variant:ident, $array:ident) => {
            Arc::new($array::from(
                data.iter()
                    .flat_map(|d| match d {
                        TensorData::$variant(v) => v.to_vec(),
                        _ => Vec::new(),
                    })
                    .collect::<Vec<_>>(),
            ))
        };
    }
    match elem {
        Elem::Same => match data.first() {
            Some(TensorData::Float16(_)) | Some(TensorData::BFloat16(_)) => {
                Arc::new(Float32Array::from(
                    data.iter()
                        .flat_map(|d| numbers(d))
                        .map(|x| x as f32)
                        .collect::<Vec<_>>(),
                ))
            }
            Some(TensorData::Float32(_)) => cat!(Float32, Float32Array),
            Some(TensorData::Float64(_)) => cat!(Float64, Float64Array),
            Some(TensorData::Int8(_)) => cat!(Int8, Int8Array),
            Some(TensorData::Int16(_)) => cat!(Int16, Int16Array),
            Some(TensorData::Int32(_)) => cat!(Int32, Int32Array),
            Some(TensorData::Int64(_)) => cat!(Int64, Int64Array),
            Some(TensorData::UInt8(_)) => cat!(UInt8, UInt8Array),
            Some(TensorData::UInt16(_)) => cat!(UInt16, UInt16Array),
            Some(TensorData::UInt32(_)) => cat!(UInt32, UInt32Array),
            Some(TensorData::UInt64(_)) => cat!(UInt64, UInt64Array),
            Some(TensorData::Bool(_)) => cat!(Bool, BooleanArray),
            Some(TensorData::String(_)) => {
                let values: Vec<&str> = data
                    .iter()
                    .flat_map(|d| match d {
                        TensorData::String(v) => v.iter().map(String::as_str).collect(),
                        _ => Vec::new(),
                    })
                    .collect();
                Arc::new(StringArray::from_iter_values(values))
            }
            Some(TensorData::Bytes(_)) | None => binary(data),
        },
        Elem::Float64 => Arc::new(Float64Array::from(
            data.iter().flat_map(|d| numbers(d)).collect::<Vec<_>>(),
        )),
        Elem::Binary => binary(data),
        Elem::Text => {
            let values: Vec<String> = data.iter().flat_map(|d| texts(d)).collect();
            Arc::new(StringArray::from_iter_values(values))
        }
    }
}

fn binary(data: &[&TensorData<'static>]) -> ArrayRef {
    let values: Vec<&[u8]> = data
        .iter()
        .flat_map(|d| -> Vec<&[u8]> {
            match d {
                TensorData::String(v) => v.iter().map(String::as_bytes).collect(),
                TensorData::Bytes(v) => v.iter().map(Vec::as_slice).collect(),
                _ => Vec::new(),
            }
        })
        .collect();
    Arc::new(BinaryArray::from_iter_values(values))
}

/// A numeric tensor's values as f64 (booleans as 0 and 1; text gives none).
fn numbers(d: &TensorData<'_>) -> Vec<f64> {
    macro_rules! each {
        ($v:expr, $f:expr) => {
            $v.iter().map($f).collect()
        };
    }
    match d {
        TensorData::Float16(v) => each!(v, |x| x.to_f64()),
        TensorData::BFloat16(v) => each!(v, |x| x.to_f64()),
        TensorData::Float32(v) => each!(v, |x| f64::from(*x)),
        TensorData::Float64(v) => v.to_vec(),
        TensorData::Int8(v) => each!(v, |x| f64::from(*x)),
        TensorData::Int16(v) => each!(v, |x| f64::from(*x)),
        TensorData::Int32(v) => each!(v, |x| f64::from(*x)),
        TensorData::Int64(v) => each!(v, |x| *x as f64),
        TensorData::UInt8(v) => each!(v, |x| f64::from(*x)),
        TensorData::UInt16(v) => each!(v, |x| f64::from(*x)),
        TensorData::UInt32(v) => each!(v, |x| f64::from(*x)),
        TensorData::UInt64(v) => each!(v, |x| *x as f64),
        TensorData::Bool(v) => each!(v, |x| f64::from(u8::from(*x))),
        TensorData::String(_) | TensorData::Bytes(_) => Vec::new(),
    }
}

/// Any tensor's values as text (numbers in decimal, bytes lossily).
fn texts(d: &TensorData<'_>) -> Vec<String> {
    match d {
        TensorData::String(v) => v.to_vec(),
        TensorData::Bytes(v) => v
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect(),
        TensorData::Bool(v) => v.iter().map(ToString::to_string).collect(),
        other => numbers(other).iter().map(ToString::to_string).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    use pilothouse_runtime::Tensor;

    use super::*;

    fn t(shape: Vec<usize>, data: TensorData<'static>) -> OwnedTensor {
        Tensor::new(shape, data).unwrap()
    }

    #[test]
    fn tensors_become_typed_nested_columns() {
        let names = vec!["x".to_string(), "k".to_string(), "s".to_string()];
        let first = Arc::new(vec![
            t(
                vec![2, 2],
                TensorData::Float32(Cow::Owned(vec![1., 2., 3., 4.])),
            ),
            t(vec![2], TensorData::Int64(Cow::Owned(vec![7, 8]))),
            t(vec![1], TensorData::String(Cow::Owned(vec!["oslo".into()]))),
        ]);
        let third = Arc::new(vec![
            t(vec![1, 2], TensorData::Float32(Cow::Owned(vec![5., 6.]))),
            t(vec![1], TensorData::Int64(Cow::Owned(vec![9]))),
            t(vec![1], TensorData::Bytes(Cow::Owned(vec![vec![0xfa]]))),
        ]);
        let mut p = Payloads::default();
        p.push(0, "input", &names, &first, None);
        p.push(2, "input", &names, &third, None);
        let cols = p.finish(3);
        let names: Vec<&str> = cols.iter().map(|(f, _)| f.name().as_str()).collect();
        assert_eq!(names, ["input.x", "input.k", "input.s"]);
        // x: rows of lists of float32; the request without it is null
        let x = cols[0].1.as_list::<i64>();
        assert!(x.is_null(1) && x.is_valid(0));
        let rows = x.value(2);
        let rows = rows.as_list::<i64>();
        let values = rows.value(0);
        assert_eq!(
            values
                .as_primitive::<arrow_array::types::Float32Type>()
                .values(),
            &[5., 6.]
        );
        assert_eq!(x.value(0).as_list::<i64>().len(), 2);
        // k (rank one): a list of int64 per request
        let k = cols[1].1.as_list::<i64>();
        assert_eq!(
            k.value(0)
                .as_primitive::<arrow_array::types::Int64Type>()
                .values(),
            &[7, 8]
        );
        // s: text and bytes in one column are bytes
        let s = cols[2].1.as_list::<i64>();
        assert_eq!(s.value(0).as_binary::<i32>().value(0), b"oslo");
        assert_eq!(s.value(2).as_binary::<i32>().value(0), &[0xfa]);
    }

    #[test]
    fn hashed_and_dropped_names_follow_the_policy() {
        let names = vec!["a".to_string(), "b".to_string()];
        let ts = Arc::new(vec![
            t(vec![1], TensorData::Float32(Cow::Owned(vec![1.]))),
            t(vec![1], TensorData::Float32(Cow::Owned(vec![2.]))),
        ]);
        let policy = LogPolicy {
            drop: vec!["b".into()],
            hash: vec!["a".into()],
            ..LogPolicy::default()
        };
        let mut p = Payloads::default();
        p.push(0, "input", &names, &ts, Some(&policy));
        let cols = p.finish(1);
        assert_eq!(cols.len(), 1);
        assert!(cols[0].1.as_string::<i32>().value(0).starts_with("sha256:"));
    }
}
