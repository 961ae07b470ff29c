//! Property-based fuzzing of the decoders that read what clients and registry users send: the
//! inference request (JSON and the binary tensor extension) and deployment specs. Generated
//! requests mix valid and hostile fields (huge and negative dims, any field order, wrong
//! types, binary tails of any length), and byte-level mutations of valid bodies. Every input
//! must decode or be refused with a message; none may panic, and none may make the decoder
//! reserve memory out of proportion to the bytes it was given.
//!
//! `cargo test` runs a bounded number of cases; `make fuzz` sets PROPTEST_CASES for a long run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use pilothouse_server::{parse_request, DeploymentSpec};
use proptest::prelude::*;
use serde_json::{json, Value as Json};

/// The largest single allocation made on this thread since the last reset: the decoder must
/// never allocate by a count the client claims.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the pointer came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        // SAFETY: as for `alloc`; the pointer and layout are the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Decodes `body` and checks what must hold whatever it is.
fn decode_checked(body: &[u8], header_length: Option<usize>) {
    LARGEST.with(|l| l.set(0));
    let result = parse_request(body, header_length);
    let largest = LARGEST.with(Cell::get);
    // Decoded numbers take at most 8 bytes for each 2 bytes of JSON ("1,"), strings their own
    // bytes plus a 24-byte header per element; growth by doubling at most doubles that.
    let budget = 64 * body.len() + 64 * 1024;
    assert!(
        largest <= budget,
        "a {}-byte body made the decoder allocate {largest} bytes at once",
        body.len()
    );
    match result {
        Ok(request) => {
            for (name, tensor) in &request.inputs {
                let count: usize = tensor.shape.iter().product();
                assert_eq!(count, tensor.data.len(), "input {name}");
            }
        }
        Err(e) => assert!(!e.message().is_empty(), "an empty error message"),
    }
}

const DATATYPES: &[&str] = &[
    "FP32", "FP64", "INT32", "INT64", "BOOL", "BYTES", "FP16", "BF16", "INT8", "UINT8", "INT16",
    "UINT16", "UINT32", "UINT64", "fp32", "", "STRING",
];

fn dim() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 0i64..5,
        1 => Just(17_592_186_044_416i64),
        1 => Just(i64::MAX),
        1 => Just(u32::MAX as i64),
        1 => Just(1i64 << 31),
        1 => -3i64..0,
        1 => any::<i64>(),
    ]
}

fn element() -> impl Strategy<Value = Json> {
    prop_oneof![
        4 => (-1000i64..1000).prop_map(Json::from),
        2 => any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Json::from),
        1 => any::<i64>().prop_map(Json::from),
        1 => any::<u64>().prop_map(Json::from),
        1 => any::<bool>().prop_map(Json::from),
        1 => "[a-z\u{0}\u{e9}]{0,6}".prop_map(Json::from),
        1 => Just(Json::Null),
        1 => Just(json!({"a": 1})),
    ]
}

fn data() -> impl Strategy<Value = Json> {
    let leaf = element();
    leaf.prop_recursive(3, 64, 8, |inner| {
        prop::collection::vec(inner, 0..8).prop_map(Json::Array)
    })
}

/// One input object's fields, in an order the strategy picks.
fn input() -> impl Strategy<Value = (Vec<(String, Json)>, Option<Vec<u8>>)> {
    (
        "[a-z]{1,3}",
        prop::collection::vec(dim(), 0..4),
        prop::sample::select(DATATYPES),
        prop::option::of(data()),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        prop::option::of(any::<u64>()),
        any::<u64>(),
    )
        .prop_map(|(name, shape, datatype, data, binary, claimed, order)| {
            let mut fields = vec![
                ("name".to_string(), Json::from(name)),
                ("shape".to_string(), Json::from(shape)),
                ("datatype".to_string(), Json::from(datatype)),
            ];
            if let Some(d) = data {
                fields.push(("data".into(), d));
            }
            if let Some(b) = &binary {
                // The size claimed is usually the truth, sometimes anything at all.
                let size = match claimed {
                    Some(c) if c % 4 == 0 => c,
                    _ => b.len() as u64,
                };
                fields.push(("parameters".into(), json!({"binary_data_size": size})));
            }
            // A rotation picked at random: data before datatype, shape last, ...
            let k = (order as usize) % fields.len();
            fields.rotate_left(k);
            (fields, binary)
        })
}

fn request() -> impl Strategy<Value = (Vec<u8>, Option<usize>)> {
    (
        prop::collection::vec(input(), 0..4),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(inputs, timeout)| {
            let mut head = String::from("{");
            if let Some(t) = timeout {
                head.push_str(&format!("\"parameters\":{{\"timeout\":{t}}},"));
            }
            head.push_str("\"inputs\":[");
            let mut tail = Vec::new();
            for (i, (fields, binary)) in inputs.iter().enumerate() {
                if i > 0 {
                    head.push(',');
                }
                let body: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{}", Json::from(k.as_str()), v))
                    .collect();
                head.push_str(&format!("{{{}}}", body.join(",")));
                if let Some(b) = binary {
                    tail.extend_from_slice(b);
                }
            }
            head.push_str("]}");
            let header_length = (!tail.is_empty()).then_some(head.len());
            let mut body = head.into_bytes();
            body.extend_from_slice(&tail);
            (body, header_length)
        })
}

/// Byte-level damage to a body: overwrite, insert and delete at positions the strategy picks.
fn mutated() -> impl Strategy<Value = (Vec<u8>, Option<usize>)> {
    (
        request(),
        prop::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..6),
    )
        .prop_map(|((mut body, header_length), edits)| {
            for (at, byte, op) in edits {
                if body.is_empty() {
                    body.push(byte);
                    continue;
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
            let len = body.len();
            (body, header_length.map(|n| n.min(len)))
        })
}

/// 2000 cases per property in `cargo test`; `PROPTEST_CASES` (as `make fuzz` sets it) for more.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_requests_never_panic_or_overallocate((body, header_length) in request()) {
        decode_checked(&body, header_length);
    }

    #[test]
    fn mutated_requests_never_panic_or_overallocate((body, header_length) in mutated()) {
        decode_checked(&body, header_length);
    }

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256), split in any::<u16>()) {
        decode_checked(&body, Some(split as usize));
        decode_checked(&body, None);
    }

    #[test]
    fn deployment_specs_are_accepted_or_refused_never_panic(
        max_batch_size in prop_oneof![Just(0u64), 1u64..100, Just(u64::MAX)],
        queue_capacity in prop_oneof![Just(0u64), 1u64..100, Just(1u64 << 40), Just(u64::MAX)],
        delay in prop_oneof![0u64..1000, Just(u64::MAX)],
        timeout in prop_oneof![Just(0u64), 1u64..100_000, Just(u64::MAX)],
        weights in prop::collection::vec(prop_oneof![Just(-1.0f64), 0.0f64..10.0, Just(1e308), Just(f64::MAX)], 0..4),
        sticky in prop::option::of("[A-Za-z\\- \u{e9}]{0,8}"),
    ) {
        let routes: Vec<Json> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| json!({"target": {"version": i as i64 + 1}, "weight": w}))
            .collect();
        let spec = json!({
            "model": "m",
            "routes": routes,
            "sticky_header": sticky,
            "batching": {"max_batch_size": max_batch_size, "queue_capacity": queue_capacity,
                         "max_queue_delay_us": delay},
            "timeout_ms": timeout,
        });
        LARGEST.with(|l| l.set(0));
        if let Ok(s) = DeploymentSpec::from_json(&spec) {
            prop_assert!(s.timeout_ms <= 3_600_000);
            prop_assert!(s.batching.queue_capacity <= 1 << 20);
            prop_assert!(s.routes.iter().map(|r| r.weight).sum::<f64>().is_finite());
        }
        prop_assert!(LARGEST.with(Cell::get) < 1 << 20);
    }
}

#[test]
fn the_reported_crash_is_a_clear_refusal() {
    // 78 bytes that aborted the server: data before datatype, a shape of 2^44 elements.
    let body = br#"{"inputs":[{"data":[],"name":"x","shape":[17592186044416],"datatype":"FP64"}]}"#;
    decode_checked(body, None);
    let e = parse_request(body, None).unwrap_err();
    assert!(
        e.message().contains("input 'x'") && e.message().contains("holds 17592186044416 elements"),
        "{}",
        e.message()
    );
    // The same claim in the usual order, for BYTES in binary, and with an overflowing width.
    for (body, header_length) in [
        (
            br#"{"inputs":[{"name":"x","shape":[17592186044416],"datatype":"FP64","data":[1]}]}"#
                .to_vec(),
            None,
        ),
        (
            br#"{"inputs":[{"name":"x","shape":[17592186044416],"datatype":"BYTES","parameters":{"binary_data_size":0}}]}"#
                .to_vec(),
            Some(107),
        ),
        (
            br#"{"inputs":[{"name":"x","shape":[4611686018427387904],"datatype":"FP64","parameters":{"binary_data_size":0}}]}"#
                .to_vec(),
            Some(108),
        ),
    ] {
        let header_length = header_length.map(|_: usize| body.len());
        decode_checked(&body, header_length);
        let e = parse_request(&body, header_length).unwrap_err();
        assert!(e.message().starts_with("input 'x'"), "{}", e.message());
    }
}
