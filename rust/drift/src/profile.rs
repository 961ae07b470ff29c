//! Column profiles: everything the drift tests and data-quality checks need to know about
//! a dataset, in a few kilobytes per column, built from Arrow record batches in parallel
//! and merged exactly (counts, frequencies and histogram buckets add; moments merge with
//! Chan's formula).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::ArrowDictionaryKeyType;
use arrow_array::types::{
    ArrowPrimitiveType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, PrimitiveArray, RecordBatch};
use arrow_buffer::{ArrowNativeType, NullBuffer};
use arrow_schema::{DataType, TimeUnit};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::categories::{Categories, FastMap};
use crate::error::{DriftError, Result};
use crate::grid::Grid;

/// Rows handled by one parallel task.
const CHUNK_ROWS: usize = 1 << 17;

/// How a column is profiled and compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Float,
    Integer,
    Boolean,
    Categorical,
    /// Seconds since the Unix epoch, profiled like floats.
    Datetime,
    /// No non-null value seen yet, so no type either.
    Null,
}

impl Kind {
    pub fn is_numeric(self) -> bool {
        matches!(self, Kind::Float | Kind::Integer | Kind::Datetime)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Float => "float",
            Kind::Integer => "integer",
            Kind::Boolean => "boolean",
            Kind::Categorical => "categorical",
            Kind::Datetime => "datetime",
            Kind::Null => "null",
        }
    }
}

/// Count, mean and sum of squared deviations, merged with Chan et al.'s formula.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub n: u64,
    pub mean: f64,
    pub m2: f64,
}

impl Moments {
    pub fn merge(&mut self, o: &Moments) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        let n = (self.n + o.n) as f64;
        let delta = o.mean - self.mean;
        self.mean += delta * o.n as f64 / n;
        self.m2 += o.m2 + delta * delta * self.n as f64 * o.n as f64 / n;
        self.n += o.n;
    }

    /// Population standard deviation (numpy's default, ddof=0).
    pub fn std(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.m2 / self.n as f64).max(0.0).sqrt()
        }
    }
}

/// The numeric part of a profile. NaN and infinities are counted, not binned.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Numeric {
    pub nan: u64,
    pub pos_inf: u64,
    pub neg_inf: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub moments: Moments,
    pub grid: Grid,
}

impl Numeric {
    pub fn finite(&self) -> u64 {
        self.moments.n
    }

    pub fn merge(&mut self, o: &Numeric) {
        self.nan += o.nan;
        self.pos_inf += o.pos_inf;
        self.neg_inf += o.neg_inf;
        self.min = min_opt(self.min, o.min, f64::min);
        self.max = min_opt(self.max, o.max, f64::max);
        self.moments.merge(&o.moments);
        self.grid.merge(&o.grid);
    }

    pub fn buckets(&self) -> crate::grid::Buckets {
        crate::grid::Buckets::new(&self.grid, self.min.unwrap_or(0.0), self.max.unwrap_or(0.0))
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Accumulates one chunk of numbers: the sums are taken around the chunk's first value,
/// which keeps the variance accurate for data far from zero. Values arrive in slices so
/// that the running sums stay in registers.
struct NumericAcc {
    out: Numeric,
    shift: f64,
    s1: f64,
    s2: f64,
    min: f64,
    max: f64,
    finite: Vec<f64>,
}

impl NumericAcc {
    fn new() -> Self {
        NumericAcc {
            out: Numeric::default(),
            shift: f64::NAN,
            s1: 0.0,
            s2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            finite: Vec::new(),
        }
    }

    /// Adds a slice: moments first, assuming every value is finite (one pass); when the
    /// sums say otherwise (NaN or an infinity got in), the slice is filtered and redone.
    fn push_slice(&mut self, xs: &[f64]) {
        if self.out.moments.n == 0 {
            match xs.iter().find(|x| x.is_finite()) {
                Some(first) => self.shift = *first,
                None => return self.count_non_finite(xs),
            }
        }
        let m = Lanes::sum(xs, self.shift, self.min, self.max);
        if m.is_finite() {
            self.apply(m, xs.len());
            self.out.grid.add_all(xs);
            return;
        }
        let mut finite = std::mem::take(&mut self.finite);
        finite.clear();
        finite.extend(xs.iter().copied().filter(|x| x.is_finite()));
        if finite.len() < xs.len() {
            self.count_non_finite(xs);
        }
        let m = Lanes::sum(&finite, self.shift, self.min, self.max);
        self.apply(m, finite.len());
        self.out.grid.add_all(&finite);
        self.finite = finite;
    }

    fn count_non_finite(&mut self, xs: &[f64]) {
        for x in xs.iter().filter(|x| !x.is_finite()) {
            if x.is_nan() {
                self.out.nan += 1;
            } else if *x > 0.0 {
                self.out.pos_inf += 1;
            } else {
                self.out.neg_inf += 1;
            }
        }
    }

    fn apply(&mut self, m: Lanes, n: usize) {
        self.s1 += (m.s1[0] + m.s1[1]) + (m.s1[2] + m.s1[3]);
        self.s2 += (m.s2[0] + m.s2[1]) + (m.s2[2] + m.s2[3]);
        self.min = m.lo.into_iter().fold(self.min, f64::min);
        self.max = m.hi.into_iter().fold(self.max, f64::max);
        self.out.moments.n += n as u64;
    }

    fn finish(mut self) -> Numeric {
        let n = self.out.moments.n;
        if n > 0 {
            let nf = n as f64;
            self.out.moments.mean = self.shift + self.s1 / nf;
            self.out.moments.m2 = (self.s2 - self.s1 * self.s1 / nf).max(0.0);
            self.out.min = Some(self.min);
            self.out.max = Some(self.max);
        }
        self.out
    }
}

/// Sums, minimum and maximum in four independent lanes, so the additions do not wait on
/// each other.
struct Lanes {
    s1: [f64; 4],
    s2: [f64; 4],
    lo: [f64; 4],
    hi: [f64; 4],
}

impl Lanes {
    fn sum(xs: &[f64], shift: f64, min: f64, max: f64) -> Lanes {
        let mut m = Lanes {
            s1: [0.0; 4],
            s2: [0.0; 4],
            lo: [min; 4],
            hi: [max; 4],
        };
        let mut quads = xs.chunks_exact(4);
        for q in &mut quads {
            for (l, x) in q.iter().enumerate() {
                m.add(l, *x, shift);
            }
        }
        for x in quads.remainder() {
            m.add(0, *x, shift);
        }
        m
    }

    #[inline]
    fn add(&mut self, l: usize, x: f64, shift: f64) {
        let d = x - shift;
        self.s1[l] += d;
        self.s2[l] += d * d;
        // plain comparisons: NaN-aware min/max is not needed (a NaN shows in the sums)
        self.lo[l] = if x < self.lo[l] { x } else { self.lo[l] };
        self.hi[l] = if x > self.hi[l] { x } else { self.hi[l] };
    }

    /// False when a NaN or an infinity was among the values.
    fn is_finite(&self) -> bool {
        self.s1
            .iter()
            .chain(&self.s2)
            .chain(&self.lo)
            .chain(&self.hi)
            .all(|v| v.is_finite())
    }
}

/// Everything known about one column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub name: String,
    pub kind: Kind,
    /// The Arrow type the column arrived as.
    pub dtype: String,
    pub rows: u64,
    pub nulls: u64,
    pub numeric: Option<Numeric>,
    pub categories: Option<Categories>,
}

impl ColumnProfile {
    fn empty(name: &str, kind: Kind, dtype: &DataType) -> Self {
        ColumnProfile {
            name: name.to_owned(),
            kind,
            dtype: dtype.to_string(),
            rows: 0,
            nulls: 0,
            numeric: kind.is_numeric().then(Numeric::default),
            categories: matches!(kind, Kind::Boolean | Kind::Categorical).then(Categories::default),
        }
    }

    /// Non-null, non-NaN values.
    pub fn values(&self) -> u64 {
        match (&self.numeric, &self.categories) {
            (Some(n), _) => n.finite() + n.pos_inf + n.neg_inf,
            (_, Some(c)) => c.total(),
            _ => 0,
        }
    }

    /// Share of rows that are null (or NaN, for numbers).
    pub fn missing_rate(&self) -> f64 {
        if self.rows == 0 {
            return 0.0;
        }
        let nan = self.numeric.as_ref().map_or(0, |n| n.nan);
        (self.nulls + nan) as f64 / self.rows as f64
    }

    /// The kind of a column that is `a` in one part and `b` in another, if they merge.
    fn merged_kind(a: Kind, b: Kind) -> Option<Kind> {
        match (a, b) {
            (a, b) if a == b => Some(a),
            (Kind::Null, b) => Some(b),
            (a, Kind::Null) => Some(a),
            (Kind::Integer, Kind::Float) | (Kind::Float, Kind::Integer) => Some(Kind::Float),
            _ => None,
        }
    }

    /// Adds a chunk of this column of the same kind, in place: numbers are counted straight
    /// into this profile's grid (a chunk of its own would allocate and zero a grid only to
    /// merge it, which costs more than profiling a small chunk). Callers check the kind.
    fn absorb_array(&mut self, array: &dyn Array) -> Result<()> {
        let Some(target) = self.numeric.as_mut().filter(|_| self.kind.is_numeric()) else {
            let chunk = profile_array(&self.name, array)?;
            return self.merge(&chunk);
        };
        let mut acc = NumericAcc::new();
        acc.out.grid = std::mem::take(&mut target.grid);
        visit_numbers(array, |xs| acc.push_slice(xs));
        let mut chunk = acc.finish();
        target.grid = std::mem::take(&mut chunk.grid);
        target.merge(&chunk);
        self.rows += array.len() as u64;
        self.nulls += array.logical_null_count() as u64;
        Ok(())
    }

    pub fn merge(&mut self, o: &ColumnProfile) -> Result<()> {
        let Some(kind) = Self::merged_kind(self.kind, o.kind) else {
            return Err(DriftError::input(
                format!("column '{}'", self.name),
                format!(
                    "it is {} ({}) in one part and {} ({}) in another; profiles of parts \
                     must share each column's type",
                    self.kind.name(),
                    self.dtype,
                    o.kind.name(),
                    o.dtype
                ),
            ));
        };
        if self.kind == Kind::Null {
            self.dtype.clone_from(&o.dtype);
        }
        self.kind = kind;
        self.rows += o.rows;
        self.nulls += o.nulls;
        match (&mut self.numeric, &o.numeric) {
            (Some(a), Some(b)) => a.merge(b),
            (a @ None, Some(b)) => *a = Some(b.clone()),
            _ => {}
        }
        match (&mut self.categories, &o.categories) {
            (Some(a), Some(b)) => a.merge(b),
            (a @ None, Some(b)) => *a = Some(b.clone()),
            _ => {}
        }
        Ok(())
    }
}

fn visit_primitive<T: ArrowPrimitiveType>(
    array: &dyn Array,
    to_f64: impl Fn(T::Native) -> f64,
    mut f: impl FnMut(&[f64]),
) {
    let array: &PrimitiveArray<T> = array.as_primitive::<T>();
    let values = array.values();
    let nulls = array.nulls().filter(|n| n.null_count() > 0);
    // f64 without nulls goes straight through; the rest is converted in small batches
    if nulls.is_none() && T::DATA_TYPE == DataType::Float64 {
        let raw: &[T::Native] = values;
        // SAFETY: T::Native is f64 when the data type is Float64
        let xs = unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<f64>(), raw.len()) };
        // pieces small enough that the consumer's passes over them stay in L1
        xs.chunks(4096).for_each(f);
        return;
    }
    let mut buf: Vec<f64> = Vec::with_capacity(4096);
    let mut flush = |buf: &mut Vec<f64>| {
        f(buf);
        buf.clear();
    };
    match nulls {
        None => {
            for chunk in values.chunks(4096) {
                buf.extend(chunk.iter().map(|v| to_f64(*v)));
                flush(&mut buf);
            }
        }
        Some(nulls) => {
            for i in nulls.valid_indices() {
                buf.push(to_f64(values[i]));
                if buf.len() == 4096 {
                    flush(&mut buf);
                }
            }
            flush(&mut buf);
        }
    }
}

/// Calls `f` with slices of every non-null value of a numeric or datetime array as f64
/// (datetimes in seconds since the epoch). Does nothing for other types.
pub fn visit_numbers(array: &dyn Array, f: impl FnMut(&[f64])) {
    match array.data_type() {
        DataType::Float16 => visit_primitive::<Float16Type>(array, |v| f64::from(v.to_f32()), f),
        DataType::Float32 => visit_primitive::<Float32Type>(array, f64::from, f),
        DataType::Float64 => visit_primitive::<Float64Type>(array, |v| v, f),
        DataType::Int8 => visit_primitive::<Int8Type>(array, f64::from, f),
        DataType::Int16 => visit_primitive::<Int16Type>(array, f64::from, f),
        DataType::Int32 => visit_primitive::<Int32Type>(array, f64::from, f),
        DataType::Int64 => visit_primitive::<Int64Type>(array, |v| v as f64, f),
        DataType::UInt8 => visit_primitive::<UInt8Type>(array, f64::from, f),
        DataType::UInt16 => visit_primitive::<UInt16Type>(array, f64::from, f),
        DataType::UInt32 => visit_primitive::<UInt32Type>(array, f64::from, f),
        DataType::UInt64 => visit_primitive::<UInt64Type>(array, |v| v as f64, f),
        DataType::Date32 => visit_primitive::<Date32Type>(array, |d| f64::from(d) * 86_400.0, f),
        DataType::Date64 => visit_primitive::<Date64Type>(array, |ms| ms as f64 / 1e3, f),
        DataType::Timestamp(unit, _) => {
            let s = timestamp_scale(unit);
            match unit {
                TimeUnit::Second => visit_primitive::<TimestampSecondType>(array, |v| v as f64, f),
                TimeUnit::Millisecond => {
                    visit_primitive::<TimestampMillisecondType>(array, |v| v as f64 / s, f)
                }
                TimeUnit::Microsecond => {
                    visit_primitive::<TimestampMicrosecondType>(array, |v| v as f64 / s, f)
                }
                TimeUnit::Nanosecond => {
                    visit_primitive::<TimestampNanosecondType>(array, |v| v as f64 / s, f)
                }
            }
        }
        _ => {}
    }
}

fn count_strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Categories {
    let mut chunk: FastMap<&str, u64> = FastMap::default();
    for v in values.flatten() {
        *chunk.entry(v).or_insert(0) += 1;
    }
    let mut c = Categories::default();
    for (k, n) in chunk {
        c.add(k, n);
    }
    c.settle();
    c
}

/// Occurrences of each code of a dictionary array. Without nulls, four interleaved
/// counters: with few categories, neighbouring rows often share a code, and one counter
/// would make each increment wait for the previous one.
fn count_codes<K: ArrowDictionaryKeyType>(
    array: &dyn Array,
    codes: usize,
    nulls: Option<NullBuffer>,
) -> Vec<u64> {
    let keys = array.as_dictionary::<K>().keys().values();
    match nulls {
        None => {
            let mut lanes = vec![[0u64; 4]; codes];
            let mut quads = keys.chunks_exact(4);
            for q in &mut quads {
                for (l, k) in q.iter().enumerate() {
                    lanes[k.as_usize()][l] += 1;
                }
            }
            for k in quads.remainder() {
                lanes[k.as_usize()][0] += 1;
            }
            lanes.iter().map(|l| l.iter().sum()).collect()
        }
        Some(nulls) => {
            let mut per_code = vec![0u64; codes];
            nulls
                .valid_indices()
                .for_each(|i| per_code[keys[i].as_usize()] += 1);
            per_code
        }
    }
}

/// The strings a dictionary's values stand for.
fn dictionary_labels(name: &str, values: &dyn Array) -> Result<Vec<Option<String>>> {
    let owned = |it: &mut dyn Iterator<Item = Option<&str>>| -> Vec<Option<String>> {
        it.map(|v| v.map(str::to_owned)).collect()
    };
    Ok(match values.data_type() {
        DataType::Utf8 => owned(&mut values.as_string::<i32>().iter()),
        DataType::LargeUtf8 => owned(&mut values.as_string::<i64>().iter()),
        DataType::Utf8View => owned(&mut values.as_string_view().iter()),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let v: Vec<Option<i64>> = match values.data_type() {
                DataType::Int8 => values
                    .as_primitive::<Int8Type>()
                    .iter()
                    .map(|x| x.map(i64::from))
                    .collect(),
                DataType::Int16 => values
                    .as_primitive::<Int16Type>()
                    .iter()
                    .map(|x| x.map(i64::from))
                    .collect(),
                DataType::Int32 => values
                    .as_primitive::<Int32Type>()
                    .iter()
                    .map(|x| x.map(i64::from))
                    .collect(),
                _ => values.as_primitive::<Int64Type>().iter().collect(),
            };
            v.into_iter().map(|x| x.map(|i| i.to_string())).collect()
        }
        other => return Err(unsupported(name, other)),
    })
}

fn unsupported(name: &str, dtype: &DataType) -> DriftError {
    DriftError::input(
        format!("column '{name}'"),
        format!(
            "its type {dtype} cannot be profiled; numbers, booleans, strings, categoricals and \
             datetimes can (cast it, or leave the column out)"
        ),
    )
}

fn timestamp_scale(unit: &TimeUnit) -> f64 {
    match unit {
        TimeUnit::Second => 1.0,
        TimeUnit::Millisecond => 1e3,
        TimeUnit::Microsecond => 1e6,
        TimeUnit::Nanosecond => 1e9,
    }
}

/// The kind a column of this Arrow type gets, or an error naming the column.
pub fn kind_of(name: &str, dtype: &DataType) -> Result<Kind> {
    Ok(match dtype {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => Kind::Float,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => Kind::Integer,
        DataType::Boolean => Kind::Boolean,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::Categorical,
        DataType::Dictionary(_, v)
            if matches!(
                v.as_ref(),
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
            ) =>
        {
            Kind::Categorical
        }
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => Kind::Datetime,
        DataType::Null => Kind::Null,
        other => return Err(unsupported(name, other)),
    })
}

/// Profiles one Arrow array (a chunk of a column).
pub fn profile_array(name: &str, array: &dyn Array) -> Result<ColumnProfile> {
    let dtype = array.data_type();
    let kind = kind_of(name, dtype)?;
    let mut p = ColumnProfile::empty(name, kind, dtype);
    p.rows = array.len() as u64;
    p.nulls = array.logical_null_count() as u64;
    if kind.is_numeric() {
        let mut acc = NumericAcc::new();
        visit_numbers(array, |xs| acc.push_slice(xs));
        p.numeric = Some(acc.finish());
    }
    p.categories = match dtype {
        DataType::Boolean => {
            let b = array.as_boolean();
            let trues = b.true_count() as u64;
            let mut c = Categories::default();
            c.add("true", trues);
            c.add("false", p.rows - p.nulls - trues);
            Some(c)
        }
        DataType::Utf8 => Some(count_strings(array.as_string::<i32>().iter())),
        DataType::LargeUtf8 => Some(count_strings(array.as_string::<i64>().iter())),
        DataType::Utf8View => Some(count_strings(array.as_string_view().iter())),
        DataType::Dictionary(_, _) => {
            let dict = array.as_any_dictionary();
            let labels = dictionary_labels(name, dict.values().as_ref())?;
            let nulls = array.logical_nulls();
            let per_code = match dtype {
                DataType::Dictionary(k, _) => match k.as_ref() {
                    DataType::Int8 => count_codes::<Int8Type>(array, labels.len(), nulls),
                    DataType::Int16 => count_codes::<Int16Type>(array, labels.len(), nulls),
                    DataType::Int32 => count_codes::<Int32Type>(array, labels.len(), nulls),
                    DataType::Int64 => count_codes::<Int64Type>(array, labels.len(), nulls),
                    DataType::UInt8 => count_codes::<UInt8Type>(array, labels.len(), nulls),
                    DataType::UInt16 => count_codes::<UInt16Type>(array, labels.len(), nulls),
                    DataType::UInt32 => count_codes::<UInt32Type>(array, labels.len(), nulls),
                    _ => count_codes::<UInt64Type>(array, labels.len(), nulls),
                },
                _ => unreachable!("matched a dictionary"),
            };
            let mut c = Categories::default();
            for (label, n) in labels.iter().zip(per_code) {
                if let Some(label) = label {
                    c.add(label, n);
                }
            }
            c.settle();
            Some(c)
        }
        _ => p.categories,
    };
    Ok(p)
}

/// A dataset's profile: one entry per column, in the order first seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub rows: u64,
    pub columns: Vec<ColumnProfile>,
}

impl Profile {
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Profiles record batches (in parallel across columns and chunks).
    pub fn of_batches(batches: &[RecordBatch]) -> Result<Profile> {
        let mut b = ProfileBuilder::default();
        for batch in batches {
            b.update(batch)?;
        }
        b.finish()
    }

    /// Merges the profiles of parts into the profile of the whole.
    pub fn merge(parts: &[Profile]) -> Result<Profile> {
        let Some((first, rest)) = parts.split_first() else {
            return Err(DriftError::input("profiles", "there are none to merge"));
        };
        let mut out = first.clone();
        for p in rest {
            out.absorb(p)?;
        }
        Ok(out)
    }

    /// Adds the profile of another part of the same dataset into this one, in place. On an
    /// error (the parts describe different columns, or a column of different types) this
    /// profile is left as it was.
    pub fn absorb(&mut self, o: &Profile) -> Result<()> {
        let mine: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        let theirs: Vec<&str> = o.columns.iter().map(|c| c.name.as_str()).collect();
        let missing: Vec<&str> = mine
            .iter()
            .filter(|n| !theirs.contains(n))
            .copied()
            .collect();
        let extra: Vec<&str> = theirs
            .iter()
            .filter(|n| !mine.contains(n))
            .copied()
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(DriftError::input(
                "profiles",
                format!(
                    "they describe different columns (only in one: {:?}; only in the other: \
                     {:?}); merge profiles of parts of one dataset",
                    missing, extra
                ),
            ));
        }
        for c in &self.columns {
            let other = o.column(&c.name).expect("checked above");
            if ColumnProfile::merged_kind(c.kind, other.kind).is_none() {
                // the message of the column's own merge, before anything changes
                return c.clone().merge(other);
            }
        }
        for c in &mut self.columns {
            let other = o.column(&c.name).expect("checked above");
            c.merge(other)?;
        }
        self.rows += o.rows;
        Ok(())
    }
}

/// Builds a profile batch by batch, so data of any size streams through.
#[derive(Default)]
pub struct ProfileBuilder {
    profile: Option<Profile>,
}

impl ProfileBuilder {
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(DriftError::input(
                    format!("column '{n}'"),
                    "the name appears twice; give each column its own name",
                ));
            }
        }
        if let Some(p) = self
            .profile
            .as_mut()
            .filter(|p| batch.num_rows() <= CHUNK_ROWS && same_columns(p, &names, batch))
        {
            // a batch small enough for one task per column, of the columns already seen:
            // profiled into the profile itself (the kinds match, so nothing can fail half-way)
            p.columns
                .par_iter_mut()
                .zip(batch.columns().par_iter())
                .try_for_each(|(c, a)| c.absorb_array(a.as_ref()))?;
            p.rows += batch.num_rows() as u64;
            return Ok(());
        }
        // Enough tasks to keep every thread busy, none smaller than CHUNK_ROWS: a wide
        // batch gets one task per column, a narrow one splits its columns.
        let cells = batch.num_rows() * batch.num_columns();
        let per_task = CHUNK_ROWS.max(cells / (rayon::current_num_threads() * 8).max(1));
        let mut tasks: Vec<(usize, ArrayRef)> = Vec::new();
        for (c, col) in batch.columns().iter().enumerate() {
            let len = col.len();
            if len == 0 {
                tasks.push((c, Arc::clone(col)));
            }
            let mut start = 0;
            while start < len {
                let n = per_task.min(len - start);
                tasks.push((c, col.slice(start, n)));
                start += n;
            }
        }
        let parts: Vec<Result<(usize, ColumnProfile)>> = tasks
            .into_par_iter()
            .map(|(c, arr)| profile_array(names[c], arr.as_ref()).map(|p| (c, p)))
            .collect();
        let mut columns: Vec<Option<ColumnProfile>> = vec![None; names.len()];
        for part in parts {
            let (c, p) = part?;
            match &mut columns[c] {
                Some(acc) => acc.merge(&p)?,
                slot => *slot = Some(p),
            }
        }
        let batch_profile = Profile {
            rows: batch.num_rows() as u64,
            columns: columns
                .into_iter()
                .map(|c| c.expect("every column has a task"))
                .collect(),
        };
        match &mut self.profile {
            None => self.profile = Some(batch_profile),
            Some(p) => p.absorb(&batch_profile).map_err(|e| match e {
                // the column's name, when one column is the problem, stays in the message
                DriftError::Input { what, reason } if what.starts_with("column") => {
                    DriftError::input(
                        format!("batch, {what}"),
                        format!("it differs from the first batch's: {reason}"),
                    )
                }
                DriftError::Input { reason, .. } => DriftError::input(
                    "batch",
                    format!("its columns differ from the first batch's: {reason}"),
                ),
                other => other,
            })?,
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.profile.as_ref().map_or(0, |p| p.rows)
    }

    pub fn finish(self) -> Result<Profile> {
        self.profile
            .ok_or_else(|| DriftError::input("data", "there are no columns to profile"))
    }
}

/// Whether a batch has the profile's columns, in its order and of the same kinds.
fn same_columns(p: &Profile, names: &[&str], batch: &RecordBatch) -> bool {
    p.columns.len() == names.len()
        && p.columns
            .iter()
            .zip(names)
            .zip(batch.columns())
            .all(|((c, n), a)| c.name == *n && kind_of(n, a.data_type()).is_ok_and(|k| k == c.kind))
}

const MAGIC: &[u8; 6] = b"PHPROF";
/// The largest count a stored profile may hold (2^56 rows): far beyond any real data, and
/// far enough from u64::MAX that adding up many profiles cannot overflow.
pub const MAX_COUNT: u64 = 1 << 56;
/// The version of the byte and JSON formats this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
const JSON_FORMAT: &str = "pilothouse.profile";

#[derive(Serialize, Deserialize)]
struct JsonEnvelope {
    format: String,
    version: u16,
    #[serde(flatten)]
    profile: serde_json::Value,
}

impl Profile {
    /// Bytes: "PHPROF", the format version (u16 LE), a CRC-32 of the body (u32 LE) and
    /// the body in postcard's stable encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = postcard::to_allocvec(self).expect("profiles always serialise");
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Profile> {
        if bytes.len() < 12 || &bytes[..6] != MAGIC {
            return Err(DriftError::Format(
                "these bytes are not a pilothouse profile (they do not start with PHPROF); \
                 pass what Profile.to_bytes() returned"
                    .into(),
            ));
        }
        let version = u16::from_le_bytes([bytes[6], bytes[7]]);
        check_version(version)?;
        let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let body = &bytes[12..];
        if crc32fast::hash(body) != crc {
            return Err(DriftError::Format(format!(
                "the profile is corrupt: its checksum does not match its {} bytes (truncated or \
                 altered in storage or transit)",
                bytes.len()
            )));
        }
        let p: Profile = postcard::from_bytes(body)
            .map_err(|e| DriftError::Format(format!("the profile is corrupt: {e}")))?;
        p.validate()
    }

    pub fn to_json(&self) -> String {
        let envelope = JsonEnvelope {
            format: JSON_FORMAT.into(),
            version: FORMAT_VERSION,
            profile: serde_json::to_value(self).expect("profiles always serialise"),
        };
        serde_json::to_string(&envelope).expect("profiles always serialise")
    }

    pub fn from_json(text: &str) -> Result<Profile> {
        let envelope: JsonEnvelope = serde_json::from_str(text)
            .map_err(|e| DriftError::Format(format!("the profile JSON is malformed: {e}")))?;
        if envelope.format != JSON_FORMAT {
            return Err(DriftError::Format(format!(
                "this JSON is a '{}', not a '{JSON_FORMAT}'",
                envelope.format
            )));
        }
        check_version(envelope.version)?;
        let p: Profile = serde_json::from_value(envelope.profile)
            .map_err(|e| DriftError::Format(format!("the profile JSON is malformed: {e}")))?;
        p.validate()
    }

    /// Checks what decoding alone cannot: counts that add up, and each column's contents
    /// matching its kind (the comparisons rely on both). Profiles arrive from files,
    /// databases and other processes, so nothing here may panic on any input.
    fn validate(self) -> Result<Profile> {
        let corrupt = |column: &str, what: &str| {
            Err(DriftError::Format(format!(
                "the profile is corrupt: column '{column}' {what}"
            )))
        };
        if self.rows > MAX_COUNT {
            return Err(DriftError::Format(format!(
                "the profile is corrupt: it claims {} rows",
                self.rows
            )));
        }
        let mut names = std::collections::HashSet::new();
        for c in &self.columns {
            if !names.insert(c.name.as_str()) {
                return corrupt(&c.name, "is listed twice");
            }
            let numeric_ok = c.numeric.is_some() == c.kind.is_numeric();
            let categories_ok =
                c.categories.is_some() == matches!(c.kind, Kind::Boolean | Kind::Categorical);
            if !numeric_ok || !categories_ok {
                return corrupt(
                    &c.name,
                    &format!("is of kind {} but holds other contents", c.kind.name()),
                );
            }
            let values = match &c.numeric {
                Some(n) => [n.finite(), n.pos_inf, n.neg_inf, n.nan]
                    .iter()
                    .try_fold(0u64, |a, b| a.checked_add(*b)),
                None => Some(c.values()),
            };
            let bad = c.rows > self.rows
                || c.nulls > c.rows
                || values.is_none_or(|v| v.checked_add(c.nulls).is_none_or(|t| t > c.rows))
                || c.numeric.as_ref().is_some_and(|n| {
                    n.grid.total() != n.finite()
                        || !n.moments.mean.is_finite()
                        || !n.moments.m2.is_finite()
                        || n.moments.m2 < 0.0
                        || n.min
                            .zip(n.max)
                            .is_some_and(|(lo, hi)| lo.partial_cmp(&hi).is_none_or(|o| o.is_gt()))
                });
            if bad {
                return corrupt(&c.name, "has inconsistent counts");
            }
        }
        Ok(self)
    }
}

fn check_version(version: u16) -> Result<()> {
    if version > FORMAT_VERSION {
        return Err(DriftError::Format(format!(
            "the profile was written in format version {version}, newer than this pilothouse \
             reads ({FORMAT_VERSION}); upgrade pilothouse to read it"
        )));
    }
    if version == 0 {
        return Err(DriftError::Format(
            "the profile claims format version 0, which never existed; it is corrupt".into(),
        ));
    }
    Ok(())
}
