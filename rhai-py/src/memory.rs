//! `max_memory`: the bytes one evaluation may hold at once.
//!
//! Rhai's own data-size checks see strings, arrays and maps, but not what a
//! function pointer carries (curried arguments), what closures capture, how
//! many variables hold a big string each, or Rhai's working data. So the
//! binding counts memory where it is cheapest to be exact: at the allocator.
//!
//! Every allocation this extension makes (Rhai and the binding are one Rust
//! crate graph, linked into `_rhai.so`) goes through `Meter`, which keeps a
//! per-thread count of net bytes: allocated minus freed on that thread. An
//! evaluation notes the count when it starts; what the count rises above that
//! is what the script holds. Rhai's progress hook (called on every operation)
//! stops the script once it is above the evaluation's ceiling.
//!
//! - A free on another thread than the allocation's lowers that other
//!   thread's count: counts are relative, only their rise during a run matters,
//!   and a script's values never leave its thread.
//! - Nested evaluations (a Python callback calling `eval`) each have their own
//!   ceiling, never above the outer one's.
//! - Python's own allocations (objects made by callbacks) do not go through
//!   Rust's allocator and are not counted: callbacks are the host's code.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Meter;

struct Counts {
    /// Net bytes allocated by this thread, since it started (may be negative), as `cost` counts them.
    live: Cell<isize>,
    /// The absolute `live` a running script must not exceed; isize::MAX when none runs.
    ceiling: Cell<isize>,
    /// Whether this thread is counted in `OVER`.
    flagged: Cell<bool>,
}

thread_local! {
    // `const` and free of `Drop`: reading it never allocates nor registers a
    // destructor, so the allocator may use it, even while a thread exits.
    static COUNTS: Counts = const {
        Counts { live: Cell::new(0), ceiling: Cell::new(isize::MAX), flagged: Cell::new(false) }
    };
}

/// How many threads have gone past their ceiling (and not yet ended that run).
/// The progress hook reads this global on every operation, which costs less
/// than reaching the thread-local counts; it looks at those only when some
/// thread is over.
static OVER: AtomicUsize = AtomicUsize::new(0);

impl Counts {
    /// Bring `flagged` (and `OVER`) in line with `live` and `ceiling`.
    #[inline]
    fn reflag(&self) {
        let over = self.live.get() > self.ceiling.get();
        if over != self.flagged.get() {
            self.flagged.set(over);
            if over {
                OVER.fetch_add(1, Ordering::Relaxed);
            } else {
                OVER.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// What an allocation of `size` bytes costs the process: its size rounded up to
/// 16 bytes, plus 16 of the allocator's bookkeeping (glibc's malloc, for one,
/// keeps a header per chunk and rounds chunks to 16 bytes). Counting only the
/// bytes asked for would let a script of small values (closures, short
/// strings) hold half as much again as its budget.
#[inline(always)]
const fn cost(size: usize) -> isize {
    ((size + 31) & !15) as isize
}

#[inline(always)]
fn charge(bytes: isize) {
    let _ = COUNTS.try_with(|counts| {
        let live = counts.live.get().wrapping_add(bytes);
        counts.live.set(live);
        // Only a rise can cross the ceiling; a fall below it is noticed when the run ends.
        if live > counts.ceiling.get() && !counts.flagged.get() {
            counts.flagged.set(true);
            OVER.fetch_add(1, Ordering::Relaxed);
        }
    });
}

unsafe impl GlobalAlloc for Meter {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            charge(cost(layout.size()));
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            charge(cost(layout.size()));
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        charge(-cost(layout.size()));
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            charge(cost(new_size) - cost(layout.size()));
        }
        new
    }
}

#[global_allocator]
static METER: Meter = Meter;

/// Whether the script running on this thread holds more than its ceiling allows.
#[inline(always)]
pub fn over_budget() -> bool {
    OVER.load(Ordering::Relaxed) != 0 && COUNTS.with(|counts| counts.live.get() > counts.ceiling.get())
}

/// One evaluation's budget, in force on this thread until it is dropped.
pub struct Budget {
    outer_ceiling: isize,
}

impl Budget {
    /// From now on, this thread may hold at most `max_bytes` more than it does
    /// now (and never more than an enclosing evaluation allows).
    pub fn start(max_bytes: usize) -> Budget {
        COUNTS.with(|counts| {
            let base = counts.live.get();
            let outer_ceiling = counts.ceiling.get();
            let ceiling = base.saturating_add(isize::try_from(max_bytes).unwrap_or(isize::MAX));
            counts.ceiling.set(ceiling.min(outer_ceiling));
            counts.reflag();
            Budget { outer_ceiling }
        })
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        COUNTS.with(|counts| {
            counts.ceiling.set(self.outer_ceiling);
            counts.reflag();
        });
    }
}
