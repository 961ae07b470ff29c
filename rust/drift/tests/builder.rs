//! Building a profile batch by batch: small batches of known columns are profiled into the
//! profile in place (the monitor's path), others are profiled apart and merged. Both must
//! give the profile that merging each batch's own profile gives, and a batch that does not
//! fit must leave the profile as it was.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use pilothouse_drift::{Profile, ProfileBuilder};

fn batch(seed: u64, rows: usize) -> RecordBatch {
    let x = (0..rows).map(|i| {
        let v = ((seed * 7919 + i as u64 * 104_729) % 10_007) as f64 / 37.0 - 120.0;
        match i % 53 {
            0 => None,
            1 => Some(f64::NAN),
            2 if seed % 2 == 0 => Some(f64::INFINITY),
            _ => Some(v),
        }
    });
    RecordBatch::try_from_iter([
        ("x", Arc::new(Float64Array::from_iter(x)) as ArrayRef),
        (
            "small",
            Arc::new(Float32Array::from_iter_values(
                (0..rows).map(|i| (i as f32 + seed as f32) * 1e-4),
            )) as ArrayRef,
        ),
        (
            "k",
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|i| (i as i64 * 31 + seed as i64) % 9),
            )) as ArrayRef,
        ),
        (
            "city",
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| ["lyon", "oslo", "kyiv"][(i + seed as usize) % 3]),
            )) as ArrayRef,
        ),
    ])
    .unwrap()
}

#[test]
fn batches_profiled_in_place_equal_their_merged_profiles() {
    let batches: Vec<RecordBatch> = (0..12).map(|s| batch(s, 40 + 97 * s as usize)).collect();
    let mut builder = ProfileBuilder::default();
    for b in &batches {
        builder.update(b).unwrap();
    }
    let built = builder.finish().unwrap();
    let parts: Vec<Profile> = batches
        .iter()
        .map(|b| Profile::of_batches(std::slice::from_ref(b)).unwrap())
        .collect();
    let merged = Profile::merge(&parts).unwrap();
    assert_eq!(built, merged);
    let x = built.column("x").unwrap().numeric.as_ref().unwrap();
    assert!(x.nan > 0 && x.pos_inf > 0, "non-finite values are counted");
    assert_eq!(
        built.rows,
        batches.iter().map(|b| b.num_rows() as u64).sum::<u64>()
    );
}

#[test]
fn a_batch_that_does_not_fit_leaves_the_profile_as_it_was() {
    let mut builder = ProfileBuilder::default();
    builder.update(&batch(1, 300)).unwrap();
    builder.update(&batch(2, 300)).unwrap();
    let before = Profile::merge(&[
        Profile::of_batches(&[batch(1, 300)]).unwrap(),
        Profile::of_batches(&[batch(2, 300)]).unwrap(),
    ])
    .unwrap();
    // the same names, but "k" now holds text: refused, nothing changed
    let wrong = RecordBatch::try_from_iter([
        ("x", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef),
        ("small", Arc::new(Float32Array::from(vec![1.0])) as ArrayRef),
        ("k", Arc::new(StringArray::from(vec!["nine"])) as ArrayRef),
        (
            "city",
            Arc::new(StringArray::from(vec!["oslo"])) as ArrayRef,
        ),
    ])
    .unwrap();
    let err = builder.update(&wrong).unwrap_err().to_string();
    assert!(err.contains("'k'"), "{err}");
    assert_eq!(builder.finish().unwrap(), before);

    // integers after floats in one column merge as floats (the general path)
    let widened = RecordBatch::try_from_iter([
        ("x", Arc::new(Int64Array::from(vec![5])) as ArrayRef),
        ("small", Arc::new(Float32Array::from(vec![1.0])) as ArrayRef),
        ("k", Arc::new(Int64Array::from(vec![3])) as ArrayRef),
        (
            "city",
            Arc::new(StringArray::from(vec!["oslo"])) as ArrayRef,
        ),
    ])
    .unwrap();
    let mut builder = ProfileBuilder::default();
    builder.update(&batch(1, 300)).unwrap();
    builder.update(&widened).unwrap();
    let p = builder.finish().unwrap();
    assert_eq!(p.rows, 301);
    assert_eq!(
        p.column("x").unwrap().numeric.as_ref().unwrap().max,
        Some(
            5.0_f64.max(
                Profile::of_batches(&[batch(1, 300)])
                    .unwrap()
                    .column("x")
                    .unwrap()
                    .numeric
                    .as_ref()
                    .unwrap()
                    .max
                    .unwrap()
            )
        )
    );
}
