//! What one evaluation needs while it runs without the GIL: its deadline,
//! its cancel token, where its output goes, and an exception to re-raise.
//!
//! Rhai's progress and output hooks are set once per engine, but timeouts,
//! tokens and output sinks belong to a single `eval` call. A Rhai script runs
//! synchronously on the thread that called `eval`, so the per-call state lives
//! in a thread-local stack (a stack because a Python callback may itself call
//! `eval`). The engine-wide hooks read the top of that stack.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use rhai::{Dynamic, EvalAltResult, Position, FLOAT, INT};

/// Why the progress hook stopped a script; carried by `ErrorTerminated`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Timeout,
    Cancelled,
    /// The script held more memory than `max_memory` allows.
    Memory,
    /// A Python exception is waiting in `RunContext::pending` (a failing
    /// output callback, or Ctrl-C seen by the signal check).
    PythonError,
}

/// Lets any thread cancel the scripts that were given this token.
#[pyclass(module = "rhai", frozen)]
#[derive(Default)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
}

#[pymethods]
impl CancelToken {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Ask every script running with this token to stop (raises `rhai.Cancelled` in it).
    fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    fn __repr__(&self) -> String {
        format!("CancelToken(cancelled={})", self.cancelled())
    }
}

impl CancelToken {
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }
}

pub struct RunContext {
    pub deadline: Option<Instant>,
    pub cancel: Option<Arc<AtomicBool>>,
    pub on_print: Option<Py<PyAny>>,
    pub on_debug: Option<Py<PyAny>>,
    pub pending: Option<PyErr>,
}

thread_local! {
    static STACK: RefCell<Vec<RunContext>> = const { RefCell::new(Vec::new()) };
}

/// The thread that imported the module: the only one where CPython runs
/// signal handlers, so the only one worth checking for Ctrl-C.
static MAIN_THREAD: OnceLock<ThreadId> = OnceLock::new();

pub fn remember_main_thread() {
    let _ = MAIN_THREAD.set(std::thread::current().id());
}

/// Keeps a `RunContext` on this thread's stack for the length of one eval.
pub struct Entered(());

pub fn enter(context: RunContext) -> Entered {
    STACK.with(|stack| stack.borrow_mut().push(context));
    Entered(())
}

impl Entered {
    /// The exception a callback or a signal left behind, if any.
    pub fn take_pending(&self) -> Option<PyErr> {
        STACK.with(|stack| stack.borrow_mut().last_mut().and_then(|c| c.pending.take()))
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        STACK.with(|stack| stack.borrow_mut().pop());
    }
}

// Checking the clock on every operation would cost more than the operation;
// 256 operations are a few microseconds of Rhai.
const CHECK_EVERY: u64 = 256;
const SIGNAL_CHECK_EVERY: u64 = 1 << 16;

/// Whether the running script must stop now, and why.
fn should_stop() -> Option<Stop> {
    STACK.with(|stack| {
        let stack = stack.borrow();
        let context = stack.last()?;
        if context.pending.is_some() {
            return Some(Stop::PythonError);
        }
        if context.cancel.as_ref().is_some_and(|flag| flag.load(Ordering::Acquire)) {
            return Some(Stop::Cancelled);
        }
        if context.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Some(Stop::Timeout);
        }
        None
    })
}

/// Ctrl-C on the main thread: the KeyboardInterrupt waits as the pending error.
fn interrupted() -> bool {
    if !on_main_thread() {
        return false;
    }
    match Python::attach(|py| py.check_signals()) {
        Ok(()) => false,
        Err(err) => {
            set_pending(err);
            true
        }
    }
}

/// Rhai's progress hook: returning `Some` terminates the script.
///
/// Memory is checked on every operation (one thread-local read): a single
/// operation can allocate up to `max_string_size` or so, and 256 of them
/// would overshoot the budget by far more than it is worth saving.
pub fn on_progress(operations: u64) -> Option<Dynamic> {
    if crate::memory::over_budget() {
        return Some(Dynamic::from(Stop::Memory));
    }
    if operations % CHECK_EVERY != 1 {
        return None;
    }
    let stop = should_stop();
    if stop.is_none() && operations % SIGNAL_CHECK_EVERY == 1 && interrupted() {
        return Some(Dynamic::from(Stop::PythonError));
    }
    stop.map(Dynamic::from)
}

const SLEEP_SLICE: Duration = Duration::from_millis(10);
// A century: long enough to mean "forever", short enough not to overflow an Instant.
const LONGEST_SLEEP: f64 = 100.0 * 365.0 * 86400.0;

/// Rhai's built-in `sleep(seconds)` blocks its thread with no checks, so a
/// script could outlive its timeout or ignore a cancel. This one sleeps in
/// slices and stops the script when its deadline passes or it is cancelled.
pub fn sleep(seconds: f64) -> Result<(), Box<EvalAltResult>> {
    let seconds = if seconds.is_nan() { 0.0 } else { seconds.clamp(0.0, LONGEST_SLEEP) };
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut slices: u32 = 0;
    loop {
        let stop = should_stop().or_else(|| (slices % 10 == 9 && interrupted()).then_some(Stop::PythonError));
        if let Some(stop) = stop {
            return Err(EvalAltResult::ErrorTerminated(Dynamic::from(stop), Position::NONE).into());
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(SLEEP_SLICE));
        slices = slices.wrapping_add(1);
    }
}

fn on_main_thread() -> bool {
    MAIN_THREAD.get() == Some(&std::thread::current().id())
}

fn set_pending(err: PyErr) {
    STACK.with(|stack| {
        if let Some(context) = stack.borrow_mut().last_mut() {
            context.pending.get_or_insert(err);
        }
    });
}

/// Rhai's `print` hook.
pub fn on_print(text: &str) {
    emit(text, None, Stream::Print);
}

/// Rhai's `debug` hook; the callback also gets the line, when Rhai knows it.
pub fn on_debug(text: &str, _source: Option<&str>, position: Position) {
    emit(text, position.line(), Stream::Debug);
}

#[derive(Clone, Copy)]
enum Stream {
    Print,
    Debug,
}

fn emit(text: &str, line: Option<usize>, stream: Stream) {
    Python::attach(|py| {
        // Clone the callback out first: it may call `eval` again on this thread.
        let callback = STACK.with(|stack| {
            let stack = stack.borrow();
            let context = stack.last()?;
            match stream {
                Stream::Print => context.on_print.as_ref(),
                Stream::Debug => context.on_debug.as_ref(),
            }
            .map(|cb| cb.clone_ref(py))
        });
        let result = match (callback, stream) {
            (Some(cb), Stream::Print) => cb.bind(py).call1((text,)).map(drop),
            (Some(cb), Stream::Debug) => cb.bind(py).call1((text, line)).map(drop),
            (None, _) => log_output(py, text, stream),
        };
        if let Err(err) = result {
            set_pending(err);
        }
    });
}

/// Without a callback, output goes to the `rhai` logger rather than stdout.
fn log_output(py: Python<'_>, text: &str, stream: Stream) -> PyResult<()> {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let logger = LOGGER.get_or_try_init(py, || {
        py.import("logging")?.call_method1("getLogger", ("rhai",)).map(Bound::unbind)
    })?;
    let method = match stream {
        Stream::Print => "info",
        Stream::Debug => "debug",
    };
    logger.bind(py).call_method1(method, (text,)).map(drop)
}

/// Put the interruptible `sleep` in place of Rhai's own (same name, same meaning: seconds).
pub fn register_sleep(engine: &mut rhai::Engine) {
    engine
        .register_fn("sleep", |seconds: INT| sleep(seconds as f64))
        .register_fn("sleep", |seconds: FLOAT| sleep(seconds));
}
