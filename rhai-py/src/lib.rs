//! `rhai._rhai`: the native core of the `rhai` Python package.
//!
//! One file per concern: `engine` (Engine, AST), `convert` (values both ways),
//! `callback` (Python functions callable from scripts), `run_context`
//! (timeouts, cancellation, output), `limits`, `memory` (the allocator that
//! counts what a script holds), `errors`.

use pyo3::prelude::*;

mod callback;
mod convert;
mod engine;
mod errors;
mod limits;
mod memory;
mod run_context;

#[pymodule]
fn _rhai(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    run_context::remember_main_thread();
    m.add_class::<engine::Engine>()?;
    m.add_class::<engine::AST>()?;
    m.add_class::<run_context::CancelToken>()?;
    m.add("RhaiError", py.get_type::<errors::RhaiError>())?;
    m.add("ParseError", py.get_type::<errors::ParseError>())?;
    m.add("EvalError", py.get_type::<errors::EvalError>())?;
    m.add("Cancelled", py.get_type::<errors::Cancelled>())?;
    m.add("LimitError", py.get_type::<errors::LimitError>())?;
    m.add("Timeout", py.get_type::<errors::Timeout>())?;
    m.add_function(wrap_pyfunction!(engine::_panic_inside_guard, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
