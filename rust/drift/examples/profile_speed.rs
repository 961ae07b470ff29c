//! Times profiling one float column of 4M roughly normal values, and its histogram alone:
//! `cargo run --release -p pilothouse-drift --example profile_speed`.
use arrow_array::Float64Array;
use std::time::Instant;

fn main() {
    let n = 4_000_000usize;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    // roughly normal: the sum of four uniforms, centred
    let values: Vec<f64> = (0..n)
        .map(|_| (uniform() + uniform() + uniform() + uniform() - 2.0) * 1.7)
        .collect();
    grid_only(&values);
    grid_only(&values);
    let array = Float64Array::from(values);
    for _ in 0..3 {
        let t = Instant::now();
        let p = pilothouse_drift::profile::profile_array("x", &array).unwrap();
        let dt = t.elapsed().as_secs_f64();
        println!(
            "{:.2} ns/value ({} buckets)",
            dt / n as f64 * 1e9,
            p.numeric.unwrap().grid.buckets().len()
        );
    }
}

/// The histogram alone, and the key computation alone, for comparison.
fn grid_only(values: &[f64]) {
    let t = Instant::now();
    let mut g = pilothouse_drift::grid::Grid::default();
    for c in values.chunks(4096) {
        g.add_all(c);
    }
    println!(
        "grid only: {:.2} ns/value",
        t.elapsed().as_secs_f64() / values.len() as f64 * 1e9
    );
    let t = Instant::now();
    let mut keys = 0u64;
    for x in values {
        keys = keys.wrapping_add(u64::from(pilothouse_drift::grid::key_of(*x)));
    }
    println!(
        "keys only: {:.2} ns/value ({keys})",
        t.elapsed().as_secs_f64() / values.len() as f64 * 1e9
    );
}
