//! Property-based fuzzing of profile decoding: profiles arrive as bytes and JSON from files,
//! databases and other processes. Damaged bytes (with the checksum recomputed, so the body
//! decoder itself is exercised), random bodies and edited JSON must decode or be refused
//! with an error; whatever decodes must compare and merge with a real profile without a
//! panic. `cargo test` runs a bounded number of cases; `make fuzz` sets PROPTEST_CASES.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use pilothouse_drift::compare::{compare_profiles, Options};
use pilothouse_drift::Profile;
use proptest::prelude::*;
use serde_json::Value as Json;

fn reference() -> Profile {
    let n = 500;
    let batch = RecordBatch::try_from_iter([
        (
            "x",
            Arc::new(Float64Array::from_iter(
                (0..n).map(|i| (i % 7 != 0).then_some(i as f64 * 0.37 - 40.0)),
            )) as ArrayRef,
        ),
        (
            "k",
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 5))) as ArrayRef,
        ),
        (
            "city",
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| ["a", "b", "c"][i as usize % 3]),
            )) as ArrayRef,
        ),
        (
            "flag",
            Arc::new(BooleanArray::from_iter((0..n).map(|i| Some(i % 2 == 0)))) as ArrayRef,
        ),
    ])
    .unwrap();
    Profile::of_batches(&[batch]).unwrap()
}

/// Bytes with a body whose checksum is right, whatever the body holds.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = b"PHPROF".to_vec();
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Whatever decoded must be usable: compared both ways and merged with a real profile.
fn use_it(p: &Profile, real: &Profile) {
    let _ = compare_profiles(real, p, &Options::default());
    let _ = compare_profiles(p, real, &Options::default());
    let _ = Profile::merge(&[p.clone(), real.clone()]);
    let _ = Profile::from_bytes(&p.to_bytes()).expect("a decoded profile re-encodes");
}

/// Every number in a JSON tree, by path, so edits can reach any of them.
fn edit_json(v: &mut Json, target: &mut u64, with: &Json) {
    match v {
        Json::Array(items) => items.iter_mut().for_each(|i| edit_json(i, target, with)),
        Json::Object(map) => map.values_mut().for_each(|i| edit_json(i, target, with)),
        leaf => {
            if *target == 0 {
                *leaf = with.clone();
            }
            *target = target.wrapping_sub(1);
        }
    }
}

/// 1000 cases per property in `cargo test`; `PROPTEST_CASES` (as `make fuzz` sets it) for more.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn damaged_bodies_are_refused_or_usable(
        edits in prop::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..8)
    ) {
        let real = reference();
        let bytes = real.to_bytes();
        let mut body = bytes[12..].to_vec();
        for (at, byte, op) in edits {
            if body.is_empty() {
                break;
            }
            let at = at as usize % body.len();
            match op {
                0 => body[at] = byte,
                1 => body.insert(at, byte),
                _ => {
                    body.remove(at);
                }
            }
        }
        if let Ok(p) = Profile::from_bytes(&framed(&body)) {
            use_it(&p, &real);
        }
    }

    #[test]
    fn random_bodies_are_refused_or_usable(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let real = reference();
        if let Ok(p) = Profile::from_bytes(&framed(&body)) {
            use_it(&p, &real);
        }
        let _ = Profile::from_bytes(&body);
    }

    #[test]
    fn edited_json_is_refused_or_usable(
        target in 0u64..400,
        with in prop_oneof![
            Just(Json::from(u64::MAX)),
            Just(Json::from(0)),
            Just(Json::from(-1)),
            Just(Json::from(1e308)),
            Just(Json::from("categorical")),
            Just(Json::from("float")),
            Just(Json::from("null")),
            Just(Json::Null),
            Just(Json::Array(vec![])),
            (0u64..1_000_000).prop_map(Json::from),
        ]
    ) {
        let real = reference();
        let mut tree: Json = serde_json::from_str(&real.to_json()).unwrap();
        let mut t = target;
        edit_json(&mut tree, &mut t, &with);
        if let Ok(p) = Profile::from_json(&tree.to_string()) {
            use_it(&p, &real);
        }
    }
}

#[test]
fn a_column_whose_kind_does_not_match_its_contents_is_an_error() {
    let real = reference();
    let mut tree: Json = serde_json::from_str(&real.to_json()).unwrap();
    let columns = tree["columns"].as_array_mut().unwrap();
    let x = columns.iter_mut().find(|c| c["name"] == "x").unwrap();
    x["kind"] = Json::from("categorical");
    let e = Profile::from_json(&tree.to_string())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("column 'x'") && e.contains("kind categorical"),
        "{e}"
    );
    // The same damage in the byte format.
    let mut p = real.clone();
    p.columns[0].kind = pilothouse_drift::Kind::Categorical;
    let e = Profile::from_bytes(&p.to_bytes()).unwrap_err().to_string();
    assert!(e.contains("kind categorical"), "{e}");
    // A histogram count that would overflow when added up.
    let mut tree: Json = serde_json::from_str(&real.to_json()).unwrap();
    let x = tree["columns"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == "x")
        .unwrap();
    x["numeric"]["grid"]["counts"][0] = Json::from(u64::MAX);
    assert!(Profile::from_json(&tree.to_string()).is_err());
}
