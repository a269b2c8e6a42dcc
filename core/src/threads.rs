//! Work split over libtorch's own CPU threads.
//!
//! libtorch runs its CPU kernels on an OpenMP team (`tch::set_num_threads` sizes it). After
//! each kernel the team's threads spin for a while before they sleep, so Rust threads started
//! beside them fight them for the cores: on 2 cores a kernel on 2 `std::thread`s ran at about
//! the speed of one. [`parallel`] runs Rust work on that same team instead, through the
//! OpenMP runtime's entry point for a parallel region (`GOMP_parallel`, the call a compiler
//! emits for `#pragma omp parallel`; libtorch's CPU build loads libgomp). Where no OpenMP
//! runtime is loaded it falls back to scoped threads.

use std::ffi::{c_uint, c_void};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The OpenMP runtime's `GOMP_parallel`: runs `fn(data)` on each thread of a team of
/// `num_threads` and returns when all have (`flags` 0).
type Region = unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint);

#[cfg(target_os = "linux")]
fn open_mp() -> Option<Region> {
    static FOUND: OnceLock<Option<Region>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT (null) looks a symbol up in the loaded objects;
        // GOMP_parallel has this C signature in every libgomp since GCC 4.9 (and in LLVM's
        // and Intel's runtimes, which provide the GOMP entry points).
        unsafe {
            let region = libc::dlsym(libc::RTLD_DEFAULT, c"GOMP_parallel".as_ptr());
            (!region.is_null()).then(|| std::mem::transmute::<*mut c_void, Region>(region))
        }
    })
}

#[cfg(not(target_os = "linux"))]
fn open_mp() -> Option<Region> {
    None
}

/// Runs `work(i)` for every `i` in `0..tasks` on up to `threads` threads (libtorch's OpenMP
/// team where there is one), each task exactly once; returns when all are done. A panic in a
/// task is raised again here.
///
/// Call it from the thread that runs libtorch's operators: OpenMP keeps one team per calling
/// thread, so from another thread the team is a second set of threads beside libtorch's.
/// Inside an OpenMP region (or a task of this function) the team is one thread and the tasks
/// run in order; libtorch operators called from `work` likewise run on one thread.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// let sum = AtomicUsize::new(0);
/// evalkit_core::threads::parallel(10, 2, |i| {
///     sum.fetch_add(i, Ordering::Relaxed);
/// });
/// assert_eq!(sum.into_inner(), 45);
/// ```
pub fn parallel(tasks: usize, threads: usize, work: impl Fn(usize) + Sync) {
    let threads = threads.clamp(1, tasks.max(1));
    if threads == 1 {
        (0..tasks).for_each(work);
        return;
    }
    // Tasks are taken in order from a shared counter, so a team of any size does them all.
    let next = AtomicUsize::new(0);
    let panicked: Mutex<Option<Box<dyn std::any::Any + Send>>> = Mutex::new(None);
    let drain = || {
        let result = catch_unwind(AssertUnwindSafe(|| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= tasks {
                break;
            }
            work(i);
        }));
        if let Err(p) = result {
            next.store(tasks, Ordering::Relaxed);
            if let Ok(mut slot) = panicked.lock() {
                slot.get_or_insert(p);
            }
        }
    };
    match open_mp() {
        Some(region) => {
            extern "C" fn trampoline(data: *mut c_void) {
                // SAFETY: `data` is the `&dyn Fn()` passed below, alive for the region.
                let drain = unsafe { &*(data as *const &(dyn Fn() + Sync)) };
                drain();
            }
            let drain: &(dyn Fn() + Sync) = &drain;
            // SAFETY: GOMP_parallel runs `trampoline(data)` on each thread of a new team and
            // returns after all of them; `drain` catches every panic, so none unwinds into C.
            unsafe {
                region(
                    trampoline,
                    &drain as *const &(dyn Fn() + Sync) as *mut c_void,
                    threads as c_uint,
                    0,
                )
            };
        }
        None => std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(drain);
            }
            drain();
        }),
    }
    if let Some(p) = panicked.into_inner().ok().flatten() {
        resume_unwind(p);
    }
}

/// Runs `work(i, &mut parts[i])` for every part on up to `threads` threads, as [`parallel`]
/// does: for disjoint pieces of one output (chunks of a slice, slots), each written by the
/// one task that takes it.
///
/// ```
/// let mut out = vec![0usize; 10];
/// evalkit_core::threads::parallel_parts(out.chunks_mut(3).collect(), 2, |i, chunk| {
///     chunk.iter_mut().for_each(|x| *x = i);
/// });
/// assert_eq!(out, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
/// ```
pub fn parallel_parts<T: Send>(parts: Vec<T>, threads: usize, work: impl Fn(usize, &mut T) + Sync) {
    let parts: Vec<Mutex<T>> = parts.into_iter().map(Mutex::new).collect();
    parallel(parts.len(), threads, |i| {
        // Each part is taken by exactly one task, so its lock is never contended.
        work(i, &mut parts[i].lock().unwrap_or_else(|p| p.into_inner()));
    });
}

#[cfg(test)]
mod tests {
    use super::parallel;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_task_runs_once() {
        let seen: Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
        parallel(100, 3, |i| {
            seen[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn a_panic_in_a_task_is_raised_again() {
        let r = std::panic::catch_unwind(|| parallel(8, 2, |i| assert_ne!(i, 5, "task five")));
        assert!(r.is_err());
    }
}
