//! Data quality at serving time: served rows checked against what the reference profile
//! says a column holds. [`Expectations`] is compiled once from a reference; `check` counts,
//! per column, the rows that fail each [`Check`]; counts of many requests, windows and
//! replicas add up ([`Quality::merge`]).

use std::collections::{BTreeMap, HashSet};

use foldhash::fast::FixedState;

use arrow_array::cast::AsArray;
use arrow_array::{Array, GenericStringArray, OffsetSizeTrait, RecordBatch};
use arrow_schema::DataType;
use pilothouse_drift::profile::{kind_of, visit_numbers};
use pilothouse_drift::{Kind, Profile};
use serde::{Deserialize, Serialize};

/// One kind of problem with served data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// A column of the reference that the request lacks.
    MissingColumn,
    /// A column the reference does not have.
    ExtraColumn,
    /// Text where the reference has numbers, or the reverse.
    WrongType,
    /// A missing value (null or NaN) in a column that had none in the reference.
    Null,
    /// A number below the reference's minimum or above its maximum.
    OutOfRange,
    /// A category the reference never had.
    UnseenCategory,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::MissingColumn => "missing_column",
            Check::ExtraColumn => "extra_column",
            Check::WrongType => "wrong_type",
            Check::Null => "null",
            Check::OutOfRange => "out_of_range",
            Check::UnseenCategory => "unseen_category",
        }
    }
}

/// Rows checked, and per column the rows failing each check.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub rows: u64,
    pub issues: BTreeMap<String, BTreeMap<Check, u64>>,
}

impl Quality {
    fn count(&mut self, column: &str, check: Check, n: u64) {
        if n > 0 {
            *self
                .issues
                .entry(column.to_string())
                .or_default()
                .entry(check)
                .or_default() += n;
        }
    }

    pub fn merge(&mut self, other: &Quality) {
        self.rows += other.rows;
        for (column, checks) in &other.issues {
            for (check, n) in checks {
                self.count(column, *check, *n);
            }
        }
    }

    pub fn is_clean(&self) -> bool {
        self.issues.is_empty()
    }

    /// "column: check" for each failure, in a stable order (for a response or an error).
    pub fn failures(&self) -> Vec<String> {
        self.issues
            .iter()
            .flat_map(|(column, checks)| {
                checks
                    .keys()
                    .map(move |check| format!("{column}: {}", check.name()))
            })
            .collect()
    }
}

/// What one reference column allows.
#[derive(Clone, Debug)]
struct Expected {
    name: String,
    numeric: bool,
    nulls_allowed: bool,
    min: Option<f64>,
    max: Option<f64>,
    /// The reference's categories (as bytes), when it kept them all.
    categories: Option<Categories>,
}

/// The checks a reference implies, compiled once.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    columns: Vec<Expected>,
}

impl Expectations {
    pub fn from_profile(reference: &Profile) -> Expectations {
        let columns = reference
            .columns
            .iter()
            .map(|c| {
                let numeric = c.numeric.as_ref();
                Expected {
                    name: c.name.clone(),
                    numeric: c.kind.is_numeric(),
                    nulls_allowed: c.nulls > 0 || numeric.is_some_and(|n| n.nan > 0),
                    min: numeric.and_then(|n| n.min),
                    max: numeric.and_then(|n| n.max),
                    categories: c
                        .categories
                        .as_ref()
                        .filter(|cat| c.kind == Kind::Categorical && cat.exact())
                        .map(|cat| {
                            Categories::new(
                                cat.sorted().into_iter().map(|(v, _)| v.as_bytes().to_vec()),
                            )
                        }),
                }
            })
            .collect();
        Expectations { columns }
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Counts the problems of `batch`'s rows.
    pub fn check(&self, batch: &RecordBatch) -> Quality {
        self.check_without(batch, &[])
    }

    /// The same, leaving out the expected columns in `private` (inputs the deployment keeps
    /// private are not monitored, so their absence is not a failure).
    pub fn check_without(&self, batch: &RecordBatch, private: &[String]) -> Quality {
        let mut q = self.extra_columns(batch);
        for e in self.columns.iter().filter(|e| !private.contains(&e.name)) {
            for (check, n) in e.check(batch) {
                q.count(&e.name, check, n);
            }
        }
        q
    }

    /// The same as `check`, with the columns shared among rayon's threads (the current
    /// pool's): for checking a whole table at once, off the serving path.
    pub fn check_parallel(&self, batch: &RecordBatch) -> Quality {
        use rayon::prelude::*;
        let mut q = self.extra_columns(batch);
        let found: Vec<Vec<(Check, u64)>> =
            self.columns.par_iter().map(|e| e.check(batch)).collect();
        for (e, checks) in self.columns.iter().zip(found) {
            for (check, n) in checks {
                q.count(&e.name, check, n);
            }
        }
        q
    }

    /// The batch's rows, and the columns of it the reference does not have.
    fn extra_columns(&self, batch: &RecordBatch) -> Quality {
        let rows = batch.num_rows() as u64;
        let mut q = Quality {
            rows,
            ..Quality::default()
        };
        for field in batch.schema().fields() {
            if !self.columns.iter().any(|e| e.name == *field.name()) {
                q.count(field.name(), Check::ExtraColumn, rows);
            }
        }
        q
    }
}

impl Expected {
    /// The rows of the batch failing each check of this column (zero counts included).
    fn check(&self, batch: &RecordBatch) -> Vec<(Check, u64)> {
        let rows = batch.num_rows() as u64;
        let Some(array) = batch.column_by_name(&self.name) else {
            return vec![(Check::MissingColumn, rows)];
        };
        let served_numeric = match kind_of(&self.name, array.data_type()) {
            Ok(k) => k.is_numeric(),
            Err(_) => return vec![(Check::WrongType, rows)],
        };
        if served_numeric != self.numeric {
            return vec![(Check::WrongType, rows)];
        }
        let mut found = Vec::with_capacity(2);
        let mut nulls = array.null_count() as u64;
        if self.numeric {
            let mut out_of_range = 0u64;
            let (lo, hi) = (
                self.min.unwrap_or(f64::NEG_INFINITY),
                self.max.unwrap_or(f64::INFINITY),
            );
            visit_numbers(array.as_ref(), |xs| {
                // one count without branches of the values not within [lo, hi] (NaN
                // included), which the compiler vectorises: this runs on every served
                // value. Only a piece with such values is read again to tell NaN from out
                // of range.
                let outside = count_outside(xs, lo, hi);
                if outside > 0 {
                    let nan = xs.iter().map(|x| u64::from(x.is_nan())).sum::<u64>();
                    nulls += nan;
                    out_of_range += outside - nan;
                }
            });
            found.push((Check::OutOfRange, out_of_range));
        } else if let Some(known) = &self.categories {
            found.push((Check::UnseenCategory, unseen(array.as_ref(), known)));
        }
        if !self.nulls_allowed {
            found.push((Check::Null, nulls));
        }
        found
    }
}

/// How many of `xs` are not within `[lo, hi]` (NaN among them: it compares false).
fn count_outside(xs: &[f64], lo: f64, hi: f64) -> u64 {
    xs.iter()
        .map(|x| u64::from(!((*x >= lo) & (*x <= hi))))
        .sum()
}

/// The reference's categories, looked up by their bytes. Categories are mostly short
/// words: those of at most 7 bytes are also kept as integers (the bytes and the length). A
/// served value of at most 7 bytes is found by one multiply, shift and compare in a small
/// table where a multiplier that gives every short category a slot of its own was found
/// (a perfect hash: up to `PERFECT_MAX` categories), or in an open-addressing table beyond.
/// Longer values go through a hash set.
#[derive(Clone, Debug)]
struct Categories {
    set: HashSet<Vec<u8>, FixedState>,
    /// The short categories' keys by their perfect slot (`EMPTY` elsewhere), if found.
    perfect: Option<Perfect>,
    /// Keys of the short categories by slot (`EMPTY` where none), a power of two long.
    short: Vec<u64>,
    bits: u32,
}

/// A collision-free table of keys: `table[(key * multiplier) >> 54]`. Its fixed size
/// (8 KiB) lets the lookup go without a bounds check.
#[derive(Clone, Debug)]
struct Perfect {
    multiplier: u64,
    table: Box<[u64; PERFECT_SLOTS]>,
}

const PERFECT_SLOTS: usize = 1024;
const PERFECT_SHIFT: u32 = 64 - PERFECT_SLOTS.trailing_zeros();

/// No key: a key's top byte is a length of at most 7.
const EMPTY: u64 = u64::MAX;

/// The most short categories a perfect table is searched for: 64 keys fall in distinct
/// slots of 1024 for about one multiplier in seven, and more quickly get rarer.
const PERFECT_MAX: usize = 64;

impl Perfect {
    /// A multiplier under which `keys` fall in distinct slots, searched among a fixed
    /// sequence of odd multipliers (so the same categories give the same table).
    fn find(keys: &[u64]) -> Option<Perfect> {
        if keys.is_empty() || keys.len() > PERFECT_MAX {
            return None;
        }
        let mut rng = fastrand::Rng::with_seed(0x5EED);
        let mut table = Box::new([EMPTY; PERFECT_SLOTS]);
        for _ in 0..1000 {
            let multiplier = rng.u64(..) | 1;
            table.fill(EMPTY);
            let distinct = keys.iter().all(|&key| {
                let slot = &mut table[Self::slot(key, multiplier)];
                let free = *slot == EMPTY;
                *slot = key;
                free
            });
            if distinct {
                return Some(Perfect { multiplier, table });
            }
        }
        None
    }

    #[inline(always)]
    fn slot(key: u64, multiplier: u64) -> usize {
        (key.wrapping_mul(multiplier) >> PERFECT_SHIFT) as usize & (PERFECT_SLOTS - 1)
    }

    #[inline(always)]
    fn contains(&self, key: u64) -> bool {
        self.table[Self::slot(key, self.multiplier)] == key
    }
}

impl Categories {
    fn new(values: impl Iterator<Item = Vec<u8>>) -> Categories {
        let set: HashSet<Vec<u8>, FixedState> = values.collect();
        let shorts: Vec<u64> = set
            .iter()
            .filter(|v| v.len() <= 7)
            .map(|v| Self::key(v))
            .collect();
        let perfect = Perfect::find(&shorts);
        // at most a quarter full
        let bits = (shorts.len().max(4) * 4)
            .next_power_of_two()
            .trailing_zeros();
        let mut short = vec![EMPTY; 1 << bits];
        for key in shorts {
            let mut slot = Self::slot(key, bits);
            while short[slot] != EMPTY {
                slot = (slot + 1) & (short.len() - 1);
            }
            short[slot] = key;
        }
        Categories {
            set,
            perfect,
            short,
            bits,
        }
    }

    /// A value of at most 7 bytes as an integer: its bytes, and its length in the top byte.
    fn key(value: &[u8]) -> u64 {
        let mut bytes = [0u8; 8];
        bytes[..value.len()].copy_from_slice(value);
        u64::from_le_bytes(bytes) | (value.len() as u64) << 56
    }

    fn slot(key: u64, bits: u32) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
    }

    fn contains(&self, value: &[u8]) -> bool {
        if value.len() <= 7 {
            self.contains_short(Self::key(value))
        } else {
            self.set.contains(value)
        }
    }

    fn contains_short(&self, key: u64) -> bool {
        if let Some(perfect) = &self.perfect {
            return perfect.contains(key);
        }
        let mut slot = Self::slot(key, self.bits);
        loop {
            match self.short[slot] {
                EMPTY => return false,
                k if k == key => return true,
                _ => slot = (slot + 1) & (self.short.len() - 1),
            }
        }
    }
}

/// Values of a string array that are not in `known`, read straight from its offsets. A
/// short value's key is read as one 8-byte load; the values near the buffer's end, where 8
/// bytes from their start would run past it, are looked up by their bytes. The loop is
/// written once per way of finding short keys, so the common case (a perfect table) looks
/// up without a branch or a call.
fn unseen_strings<O: OffsetSizeTrait>(array: &GenericStringArray<O>, known: &Categories) -> u64 {
    match &known.perfect {
        Some(perfect) => unseen_in(array, known, |key| perfect.contains(key)),
        None => unseen_in(array, known, |key| known.contains_short(key)),
    }
}

#[inline(always)]
fn unseen_in<O: OffsetSizeTrait>(
    array: &GenericStringArray<O>,
    known: &Categories,
    short: impl Fn(u64) -> bool,
) -> u64 {
    let (offsets, bytes) = (array.value_offsets(), array.value_data());
    let len = array.len();
    // offsets never decrease, so the values with 8 bytes from their start are a prefix
    let loadable = offsets[..len].partition_point(|o| o.as_usize() + 8 <= bytes.len());
    let seen_at = |start: usize, end: usize| seen(bytes, start, end, known, &short);
    match array.nulls() {
        None => {
            let mut unseen = 0u64;
            for w in offsets[..=loadable].windows(2) {
                let (start, end) = (w[0].as_usize(), w[1].as_usize());
                unseen += u64::from(!seen_at(start, end));
            }
            for w in offsets[loadable..].windows(2) {
                unseen += u64::from(!known.contains(&bytes[w[0].as_usize()..w[1].as_usize()]));
            }
            unseen
        }
        Some(nulls) => offsets
            .windows(2)
            .enumerate()
            .filter(|(i, _)| nulls.is_valid(*i))
            .map(|(_, w)| u64::from(!seen_at(w[0].as_usize(), w[1].as_usize())))
            .sum(),
    }
}

/// Whether the value `bytes[start..end]` is among `known`: a short one by its key, read as
/// one 8-byte load where the buffer has 8 bytes from `start`.
#[inline(always)]
fn seen(
    bytes: &[u8],
    start: usize,
    end: usize,
    known: &Categories,
    short: &impl Fn(u64) -> bool,
) -> bool {
    let n = end - start;
    match bytes.get(start..start + 8) {
        Some(word) if n <= 7 => {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            let mask = (1u64 << (8 * n)) - 1;
            short((word & mask) | (n as u64) << 56)
        }
        _ => known.contains(&bytes[start..end]),
    }
}

/// Values of a text column that are not in `known`. A dictionary column (pandas'
/// categoricals) looks each distinct value up once and counts the rows by their keys.
fn unseen(array: &dyn Array, known: &Categories) -> u64 {
    match array.data_type() {
        DataType::Utf8 => unseen_strings(array.as_string::<i32>(), known),
        DataType::LargeUtf8 => unseen_strings(array.as_string::<i64>(), known),
        DataType::Utf8View => array
            .as_string_view()
            .iter()
            .flatten()
            .filter(|v| !known.contains(v.as_bytes()))
            .count() as u64,
        DataType::Dictionary(_, _) => {
            let Some(dict) = array.as_any_dictionary_opt() else {
                return 0;
            };
            let values = dict.values();
            // which dictionary entries are unseen (an entry no row uses costs nothing)
            let bad: Vec<bool> = (0..values.len())
                .map(|i| unseen(values.slice(i, 1).as_ref(), known) > 0)
                .collect();
            if !bad.contains(&true) {
                return 0;
            }
            let keys = dict.normalized_keys();
            (0..array.len())
                .filter(|i| array.is_valid(*i) && bad.get(keys[*i]).copied().unwrap_or(false))
                .count() as u64
        }
        // other forms of text are profiled, not checked row by row
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, StringArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    fn reference() -> Profile {
        Profile::of_batches(&[batch(vec![
            ("x", Arc::new(Float64Array::from(vec![0.0, 5.0, 10.0]))),
            (
                "city",
                Arc::new(StringArray::from(vec!["paris", "rome", "oslo"])),
            ),
        ])])
        .unwrap()
    }

    #[test]
    fn each_check_counts_its_rows() {
        let expect = Expectations::from_profile(&reference());
        let clean = expect.check(&batch(vec![
            ("x", Arc::new(Float64Array::from(vec![1.0, 9.5]))),
            ("city", Arc::new(StringArray::from(vec!["rome", "oslo"]))),
        ]));
        assert!(clean.is_clean(), "{clean:?}");
        let bad = expect.check(&batch(vec![
            (
                "x",
                Arc::new(Float64Array::from(vec![
                    Some(-1.0),
                    None,
                    Some(f64::NAN),
                    Some(11.0),
                ])),
            ),
            (
                "city",
                Arc::new(StringArray::from(vec!["rome", "lima", "lima", "oslo"])),
            ),
            ("extra", Arc::new(Float64Array::from(vec![1.0; 4]))),
        ]));
        assert_eq!(bad.rows, 4);
        assert_eq!(bad.issues["x"][&Check::OutOfRange], 2);
        assert_eq!(bad.issues["x"][&Check::Null], 2);
        assert_eq!(bad.issues["city"][&Check::UnseenCategory], 2);
        assert_eq!(bad.issues["extra"][&Check::ExtraColumn], 4);
        assert_eq!(
            bad.failures(),
            [
                "city: unseen_category",
                "extra: extra_column",
                "x: null",
                "x: out_of_range"
            ]
        );
    }

    #[test]
    fn categorical_columns_are_checked_through_their_dictionary() {
        use arrow_array::types::Int32Type;
        use arrow_array::DictionaryArray;
        let expect = Expectations::from_profile(&reference());
        // "lima" is in the dictionary twice by key, "tokyo" in it but used by no row
        let city: DictionaryArray<Int32Type> =
            vec![Some("rome"), Some("lima"), None, Some("lima"), Some("oslo")]
                .into_iter()
                .collect();
        let (keys, values) = city.into_parts();
        let values: ArrayRef = Arc::new(StringArray::from(
            (0..values.len())
                .map(|i| values.as_string::<i32>().value(i))
                .chain(["tokyo"])
                .collect::<Vec<_>>(),
        ));
        let city = DictionaryArray::new(keys, values);
        let q = expect.check(&batch(vec![
            ("x", Arc::new(Float64Array::from(vec![1.0; 5])) as ArrayRef),
            ("city", Arc::new(city)),
        ]));
        assert_eq!(q.issues["city"][&Check::UnseenCategory], 2, "{q:?}");
        assert_eq!(q.issues["city"][&Check::Null], 1, "{q:?}");
    }

    #[test]
    fn short_and_long_categories_are_told_apart() {
        let names = [
            "a",
            "ab",
            "paris",
            "seven77",
            "a-much-longer-name",
            "",
            "eight888",
        ];
        let known = Categories::new(names.into_iter().map(|v| v.as_bytes().to_vec()));
        let others = [
            "a\0",
            "b",
            "abc",
            "pari",
            "parisx",
            "seven7",
            "seven777",
            "a-much-longer-nam",
            "\0",
            "eight88",
        ];
        // through the array (8-byte loads inside the buffer, and copies at its end) and alone
        let all: Vec<&str> = names.iter().chain(&others).copied().collect();
        let array = StringArray::from(all.clone());
        assert_eq!(unseen_strings(&array, &known), others.len() as u64);
        for v in names {
            assert!(known.contains(v.as_bytes()), "{v}");
        }
        for v in others {
            assert!(!known.contains(v.as_bytes()), "{v:?}");
        }
    }

    #[test]
    fn many_categories_are_looked_up() {
        // short ones (past eight: the table) and long ones (the hash set)
        let names: Vec<String> = (0..30)
            .map(|i| format!("{}-{i}", if i % 2 == 0 { "c" } else { "long-city" }))
            .collect();
        let reference = Profile::of_batches(&[batch(vec![(
            "city",
            Arc::new(StringArray::from(names.clone())) as ArrayRef,
        )])])
        .unwrap();
        let expect = Expectations::from_profile(&reference);
        let served = StringArray::from(vec![
            Some("c-4"),
            Some("c-5"),
            Some("long-city-3"),
            Some("long-city-30"),
            None,
            Some("c-28"),
        ]);
        let q = expect.check(&batch(vec![("city", Arc::new(served) as ArrayRef)]));
        assert_eq!(q.issues["city"][&Check::UnseenCategory], 2, "{q:?}");
    }

    #[test]
    fn short_categories_are_found_with_and_without_a_perfect_table() {
        // up to PERFECT_MAX short keys get a table without collisions; more fall back to
        // open addressing; either way every category is found and no other value is
        for count in [1usize, 5, 8, 9, 64, 65, 300] {
            let names: Vec<String> = (0..count).map(|i| format!("k{i}")).collect();
            let known = Categories::new(names.iter().map(|n| n.as_bytes().to_vec()));
            assert_eq!(
                known.perfect.is_some(),
                count <= PERFECT_MAX,
                "{count} keys"
            );
            for n in &names {
                assert!(known.contains(n.as_bytes()), "{n} of {count}");
            }
            for other in ["", "k", "x0", "k0 ", "k999999", "K0", "longer-than-seven"] {
                assert!(!known.contains(other.as_bytes()), "{other:?} of {count}");
            }
            // the same through a served column, whose last values sit near the buffer's
            // end (looked up by their bytes rather than an 8-byte load)
            let mut served: Vec<&str> = names.iter().map(String::as_str).collect();
            served.extend(["nope", "k", "k0"]);
            let array = StringArray::from(served);
            assert_eq!(unseen(&array, &known), 2, "{count} keys");
        }
    }

    #[test]
    fn columns_checked_in_parallel_count_the_same() {
        let expect = Expectations::from_profile(&reference());
        let served = batch(vec![
            (
                "x",
                Arc::new(Float64Array::from(vec![1.0, 1e9, f64::NAN])) as ArrayRef,
            ),
            (
                "city",
                Arc::new(StringArray::from(vec!["rome", "tokyo", "oslo"])) as ArrayRef,
            ),
            (
                "extra",
                Arc::new(Float64Array::from(vec![0.0, 0.0, 0.0])) as ArrayRef,
            ),
        ]);
        let q = expect.check(&served);
        assert_eq!(expect.check_parallel(&served), q);
        assert_eq!(q.issues["x"][&Check::OutOfRange], 1, "{q:?}");
        assert_eq!(q.issues["x"][&Check::Null], 1, "{q:?}");
        assert_eq!(q.issues["city"][&Check::UnseenCategory], 1, "{q:?}");
        assert_eq!(q.issues["extra"][&Check::ExtraColumn], 3, "{q:?}");
    }

    #[test]
    fn missing_and_mistyped_columns_are_named() {
        let expect = Expectations::from_profile(&reference());
        let q = expect.check(&batch(vec![(
            "x",
            Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
        )]));
        assert_eq!(q.issues["x"][&Check::WrongType], 1);
        assert_eq!(q.issues["city"][&Check::MissingColumn], 1);
        let mut total = q.clone();
        total.merge(&q);
        assert_eq!((total.rows, total.issues["x"][&Check::WrongType]), (2, 2));
    }
}
