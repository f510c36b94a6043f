//! Python callables as Rhai functions.
//!
//! Arguments and results are converted both ways; a Python exception becomes
//! a Rhai runtime error that carries the exception itself, so the caller of
//! `eval` can chain it as `__cause__` (and a script can `try`/`catch` it).

use std::any::TypeId;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rhai::{Dynamic, EvalAltResult, NativeCallContext, Position};

/// How Rhai hands arguments to a raw function.
type FnCallArgs<'a> = [&'a mut Dynamic];

use crate::convert::{from_python, to_python};

/// A Python exception travelling through Rhai as a runtime error value.
#[derive(Clone)]
pub struct PythonException {
    pub error: Arc<PyErr>,
    /// "ValueError: boom", computed once while the GIL is held.
    pub summary: String,
}

impl PythonException {
    pub fn new(py: Python<'_>, error: PyErr) -> Self {
        let type_name = error
            .get_type(py)
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "Exception".to_owned());
        let summary = format!("{type_name}: {}", error.value(py));
        PythonException { error: Arc::new(error), summary }
    }

    pub fn into_rhai_error(self) -> Box<EvalAltResult> {
        // Position::NONE: Rhai fills in the position of the failing call.
        EvalAltResult::ErrorRuntime(Dynamic::from(self), Position::NONE).into()
    }
}

/// Lets scripts that catch a Python exception print it meaningfully.
pub fn register_exception_type(engine: &mut rhai::Engine) {
    engine
        .register_type_with_name::<PythonException>("PythonException")
        .register_fn("to_string", |e: &mut PythonException| e.summary.clone())
        .register_fn("to_debug", |e: &mut PythonException| e.summary.clone());
}

/// Register `callable` under `name` for each arity (Rhai overloads by arity).
pub fn register(engine: &mut rhai::Engine, name: &str, callable: Arc<Py<PyAny>>, arities: &[usize]) {
    for &arity in arities {
        let callable = callable.clone();
        // `Dynamic` as the argument type means "any type" to Rhai.
        let arg_types = vec![TypeId::of::<Dynamic>(); arity];
        engine.register_raw_fn(name, arg_types, move |_: NativeCallContext, args: &mut FnCallArgs| {
            call(&callable, args)
        });
    }
}

fn call(callable: &Py<PyAny>, args: &mut FnCallArgs) -> Result<Dynamic, Box<EvalAltResult>> {
    Python::attach(|py| {
        let outcome = (|| {
            let py_args = args.iter().map(|arg| to_python(py, arg)).collect::<PyResult<Vec<_>>>()?;
            let result = callable.bind(py).call1(PyTuple::new(py, py_args)?)?;
            from_python(&result)
        })();
        outcome.map_err(|err| PythonException::new(py, err).into_rhai_error())
    })
}
