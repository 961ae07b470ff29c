//! Scheduling hints for the server's own threads, so that on a busy core they take turns the
//! way batching needs instead of preempting each other on every hand-off.

/// Marks the calling thread as batch work (Linux `SCHED_BATCH`, with `nice` added): waking it
/// no longer preempts the thread that woke it. An HTTP thread handing a request to a sleeping
/// inference thread keeps reading the requests already waiting, and the inference thread
/// starts when the HTTP thread has nothing left to read: one batch, one switch, rather than a
/// switch per request. Elsewhere, and if the kernel refuses, this does nothing.
pub fn batch_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: `param` outlives the call; pid 0 and a thread id each name the calling thread
    // only; gettid and setpriority take no pointers.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
        if nice != 0 {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn marks_only_the_calling_thread() {
        let inside = std::thread::spawn(|| {
            super::batch_thread(3);
            // SAFETY: plain queries of the calling thread.
            unsafe {
                (
                    libc::sched_getscheduler(0),
                    libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t),
                )
            }
        })
        .join()
        .unwrap();
        assert_eq!(inside.0, libc::SCHED_BATCH);
        assert_eq!(inside.1, 3);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
    }
}
