//! How much memory the process holds: counted by the allocator wrapper [`Counting`] when the
//! binary installs it (as `anna-server` does), the resident set size otherwise; and the
//! `maxmemory` check built on it.
//!
//! ```
//! use anna_kvs::memory;
//! // Without the counting allocator installed, the figure is the resident set size.
//! assert!(memory::used() > 0);
//! assert!(!memory::counted() || memory::used() > 0);
//! ```

// The counting allocator is the one place that needs `unsafe`: `GlobalAlloc` is an unsafe
// trait. It forwards every call unchanged and only adds to a counter.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Bytes allocated and not freed, as flushed by every thread (each keeps up to
/// [`FLUSH_BYTES`] to itself, so the figure is exact within threads × that).
static ALLOCATED: AtomicI64 = AtomicI64::new(0);
/// Set once [`Counting`] served its first allocation.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// The highest figure seen by [`used`].
static PEAK: AtomicU64 = AtomicU64::new(0);

/// A thread flushes its tally to the shared counter once it is this far off.
pub const FLUSH_BYTES: i64 = 256 << 10;

thread_local! {
    static LOCAL: Cell<i64> = const { Cell::new(0) };
}

fn tally(delta: i64) {
    // `try_with`: an allocation while the thread's locals are torn down is counted directly.
    let flushed = LOCAL.try_with(|local| {
        let now = local.get() + delta;
        if now.abs() >= FLUSH_BYTES {
            local.set(0);
            ALLOCATED.fetch_add(now, Ordering::Relaxed);
        } else {
            local.set(now);
        }
    });
    if flushed.is_err() {
        ALLOCATED.fetch_add(delta, Ordering::Relaxed);
    }
}

/// Notes that [`Counting`] is installed (read first: no shared cache line written per call).
fn mark_counting() {
    if !COUNTING.load(Ordering::Relaxed) {
        COUNTING.store(true, Ordering::Relaxed);
    }
}

/// Adds this thread's unflushed tally to the shared count: call it as a thread ends (a
/// thread that exits with bytes in its tally would leave the count off by them for good).
pub fn flush_thread() {
    let _ = LOCAL.try_with(|local| {
        let pending = local.replace(0);
        if pending != 0 {
            ALLOCATED.fetch_add(pending, Ordering::Relaxed);
        }
    });
}

/// Counts a fresh allocation of `size` bytes at `ptr` (none if it failed), and returns `ptr`.
fn allocated(ptr: *mut u8, size: usize) -> *mut u8 {
    if !ptr.is_null() {
        mark_counting();
        tally(size as i64);
    }
    ptr
}

/// A global allocator that counts the bytes it hands out, over another allocator:
///
/// ```ignore
/// #[global_allocator]
/// static ALLOCATOR: anna_kvs::memory::Counting<mimalloc::MiMalloc> =
///     anna_kvs::memory::Counting(mimalloc::MiMalloc);
/// ```
#[derive(Debug)]
pub struct Counting<A>(pub A);

// SAFETY: every call goes to the inner allocator unchanged; only a counter is updated.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on as is.
        allocated(unsafe { self.0.alloc(layout) }, layout.size())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { self.0.dealloc(ptr, layout) };
        tally(-(layout.size() as i64));
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        allocated(unsafe { self.0.alloc_zeroed(layout) }, layout.size())
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let new = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            tally(new_size as i64 - layout.size() as i64);
        }
        new
    }
}

/// Whether the figures come from [`Counting`] (else from the resident set size).
pub fn counted() -> bool {
    COUNTING.load(Ordering::Relaxed)
}

/// Bytes the process holds: allocated and not freed under [`Counting`], else resident.
pub fn used() -> u64 {
    let used =
        if counted() { ALLOCATED.load(Ordering::Relaxed).max(0) as u64 } else { resident_cached() };
    if used > PEAK.load(Ordering::Relaxed) {
        PEAK.fetch_max(used, Ordering::Relaxed);
    }
    used
}

/// The highest [`used`] figure seen.
pub fn peak() -> u64 {
    PEAK.load(Ordering::Relaxed).max(used())
}

/// The resident set size, read at most every 10 ms (the `maxmemory` check asks per write).
fn resident_cached() -> u64 {
    static AT: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    static READ_AT_MS: AtomicU64 = AtomicU64::new(u64::MAX);
    static VALUE: AtomicU64 = AtomicU64::new(0);
    let now_ms = AT.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64;
    let last = READ_AT_MS.load(Ordering::Relaxed);
    if last == u64::MAX || now_ms.saturating_sub(last) >= 10 {
        READ_AT_MS.store(now_ms, Ordering::Relaxed);
        VALUE.store(resident().0, Ordering::Relaxed);
    }
    VALUE.load(Ordering::Relaxed)
}

/// The resident set size and its peak, in bytes (Linux `/proc/self/status`; 0 elsewhere).
pub fn resident() -> (u64, u64) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return (0, 0) };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Whether a write that may grow memory is refused under `maxmemory` (0: no limit) with
/// the `noeviction` policy.
pub fn over_limit(maxmemory: u64) -> bool {
    maxmemory > 0 && used() > maxmemory
}

/// Reads a size as Redis's configuration does: bytes, or with a unit (`k`/`m`/`g` are powers
/// of 1000, `kb`/`mb`/`gb` of 1024, any case). `None` if it is not one.
///
/// ```
/// use anna_kvs::memory::parse_size;
/// assert_eq!(parse_size("100mb"), Some(100 << 20));
/// assert_eq!(parse_size("1K"), Some(1000));
/// assert_eq!(parse_size("12345"), Some(12345));
/// assert_eq!(parse_size("12tb"), None);
/// ```
pub fn parse_size(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: u64 = match &lower[digits.len()..] {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    digits.parse::<u64>().ok().and_then(|n| n.checked_mul(unit))
}
