//! pilothouse-python: the PyO3 bindings. Converts Python objects to the crates' types,
//! releases the GIL around the work, and maps each crate's errors to Python exceptions.

use pyo3::prelude::*;

// The server allocates per request on several threads; mimalloc keeps that fast and keeps
// resident memory from growing with glibc's per-thread arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e` of mimalloc 3, the
/// version libmimalloc-sys builds; the `tests` below check that it names that option).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Lets freed memory wait 5 s (mimalloc's default: 1 s) before it goes back to the OS. The
/// server's payload-log writer frees a whole second of buffered rows at each flush and fills
/// them again over the next second; with a 1 s delay much of that memory was returned and then
/// faulted in and zeroed again, 2 MB huge page by 2 MB huge page (4% of a busy server core).
/// A `MIMALLOC_PURGE_DELAY` set in the environment wins.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mimalloc's options may be set at any time, from any thread.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 5000) };
    }
}

mod alerts;
mod drift;
mod errors;
mod feedback;
mod model;
mod monitor;
mod performance;
mod records;
mod registry;
mod server;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    tune_allocator();
    errors::register(m)?;
    model::register(m)?;
    records::register(m)?;
    monitor::register(m)?;
    feedback::register(m)?;
    performance::register(m)?;
    registry::register(m)?;
    drift::register(m)?;
    server::register(m)?;
    alerts::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reading and setting mimalloc options is allowed at any time.
        unsafe {
            if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
                // mimalloc 3's default purge delay is 1000 ms; no other option defaults to it.
                assert_eq!(
                    libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY),
                    1000
                );
            }
            std::env::remove_var("MIMALLOC_PURGE_DELAY");
            super::tune_allocator();
            assert_eq!(
                libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY),
                5000
            );
        }
    }
}
