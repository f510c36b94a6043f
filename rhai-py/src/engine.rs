//! `rhai.Engine` and `rhai.AST`.
//!
//! An Engine is shared between threads: evaluations take a read lock on the
//! Rhai engine and run with the GIL released; `register` takes the write lock
//! (also without the GIL, so a running script can still call back into Python).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use rhai::module_resolvers::DummyModuleResolver;
use rhai::Dynamic;

use crate::callback;
use crate::convert::{scope_from_dict, to_python_within_depth};
use crate::errors;
use crate::limits::Limits;
use crate::memory;
use crate::run_context::{self, CancelToken, RunContext};

/// A compiled script: immutable, reusable, safe to share between threads.
#[pyclass(module = "rhai", frozen)]
pub struct AST {
    ast: Arc<rhai::AST>,
    name: Option<String>,
}

#[pymethods]
impl AST {
    /// The source name given to `compile`, used in error messages.
    #[getter]
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn __repr__(&self) -> String {
        match &self.name {
            Some(name) => format!("<rhai.AST {name:?}>"),
            None => "<rhai.AST>".to_owned(),
        }
    }
}

#[pyclass(module = "rhai", frozen, subclass)]
pub struct Engine {
    engine: RwLock<rhai::Engine>,
    limits: Limits,
    timeout: Option<Duration>,
    on_print: Option<Py<PyAny>>,
    on_debug: Option<Py<PyAny>>,
}

fn timeout_from_seconds(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(PyValueError::new_err(format!("timeout must be a positive number of seconds, got {s}"))),
    }
}

impl Engine {
    fn compile_source(&self, py: Python<'_>, source: &str, name: Option<String>) -> PyResult<AST> {
        let engine = self.engine.read().unwrap_or_else(PoisonError::into_inner);
        let mut ast = engine.compile(source).map_err(|err| errors::from_parse_error(py, &err, name.as_deref()))?;
        if let Some(name) = &name {
            ast.set_source(name.as_str());
        }
        Ok(AST { ast: Arc::new(ast), name })
    }
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (
        *,
        max_operations = None,
        max_call_levels = None,
        max_expr_depth = None,
        max_function_expr_depth = None,
        max_string_size = None,
        max_array_size = None,
        max_map_size = None,
        max_variables = None,
        max_functions = None,
        max_modules = None,
        max_memory = None,
        max_value_depth = None,
        timeout = None,
        on_print = None,
        on_debug = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        max_operations: Option<u64>,
        max_call_levels: Option<usize>,
        max_expr_depth: Option<usize>,
        max_function_expr_depth: Option<usize>,
        max_string_size: Option<usize>,
        max_array_size: Option<usize>,
        max_map_size: Option<usize>,
        max_variables: Option<usize>,
        max_functions: Option<usize>,
        max_modules: Option<usize>,
        max_memory: Option<usize>,
        max_value_depth: Option<usize>,
        timeout: Option<f64>,
        on_print: Option<Py<PyAny>>,
        on_debug: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let d = Limits::default();
        let limits = Limits {
            max_operations: max_operations.unwrap_or(d.max_operations),
            max_call_levels: max_call_levels.unwrap_or(d.max_call_levels),
            max_expr_depth: max_expr_depth.unwrap_or(d.max_expr_depth),
            max_function_expr_depth: max_function_expr_depth.unwrap_or(d.max_function_expr_depth),
            max_string_size: max_string_size.unwrap_or(d.max_string_size),
            max_array_size: max_array_size.unwrap_or(d.max_array_size),
            max_map_size: max_map_size.unwrap_or(d.max_map_size),
            max_variables: max_variables.unwrap_or(d.max_variables),
            max_functions: max_functions.unwrap_or(d.max_functions),
            max_modules: max_modules.unwrap_or(d.max_modules),
            max_memory: max_memory.unwrap_or(d.max_memory),
            max_value_depth: max_value_depth.unwrap_or(d.max_value_depth),
        };
        limits.validate()?;

        let mut engine = rhai::Engine::new();
        limits.apply(&mut engine);
        // Scripts arrive over the network: no `import` may read the node's files.
        engine.set_module_resolver(DummyModuleResolver::new());
        engine.on_progress(run_context::on_progress);
        engine.on_print(run_context::on_print);
        engine.on_debug(run_context::on_debug);
        run_context::register_sleep(&mut engine);
        callback::register_exception_type(&mut engine);

        Ok(Engine { engine: RwLock::new(engine), limits, timeout: timeout_from_seconds(timeout)?, on_print, on_debug })
    }

    /// The safety limits in force, by name.
    #[getter]
    fn limits<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.limits.to_dict(py)
    }

    /// The default wall-clock limit in seconds, or None.
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.timeout.map(|t| t.as_secs_f64())
    }

    /// Compile a script once, to evaluate it many times.
    #[pyo3(signature = (source, name = None))]
    fn compile(&self, py: Python<'_>, source: &str, name: Option<String>) -> PyResult<AST> {
        self.compile_source(py, source, name)
    }

    /// Evaluate a script (source text or compiled AST) and return its value.
    #[pyo3(signature = (script, scope = None, *, timeout = None, cancel = None, on_print = None, on_debug = None))]
    #[allow(clippy::too_many_arguments)]
    fn eval<'py>(
        &self,
        py: Python<'py>,
        script: &Bound<'py, PyAny>,
        scope: Option<&Bound<'py, PyDict>>,
        timeout: Option<f64>,
        cancel: Option<&Bound<'py, CancelToken>>,
        on_print: Option<Py<PyAny>>,
        on_debug: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (ast, source_name) = if let Ok(compiled) = script.cast::<AST>() {
            let compiled = compiled.get();
            (compiled.ast.clone(), compiled.name.clone())
        } else if let Ok(source) = script.cast::<PyString>() {
            (self.compile_source(py, source.to_str()?, None)?.ast, None)
        } else {
            return Err(PyTypeError::new_err("script must be str or rhai.AST"));
        };
        let mut rhai_scope = scope_from_dict(scope)?;
        let deadline = timeout_from_seconds(timeout)?.or(self.timeout).map(|t| Instant::now() + t);

        let entered = run_context::enter(RunContext {
            deadline,
            cancel: cancel.map(|token| token.get().flag()),
            on_print: on_print.or_else(|| self.on_print.as_ref().map(|cb| cb.clone_ref(py))),
            on_debug: on_debug.or_else(|| self.on_debug.as_ref().map(|cb| cb.clone_ref(py))),
            pending: None,
        });
        let (outcome, over_budget) = py.detach(|| {
            let engine = self.engine.read().unwrap_or_else(PoisonError::into_inner);
            let budget = memory::Budget::start(self.limits.max_memory);
            let outcome =
                catch_unwind(AssertUnwindSafe(|| engine.eval_ast_with_scope::<Dynamic>(&mut rhai_scope, &ast)));
            // The last operations may have allocated after the last check.
            let over_budget = memory::over_budget();
            drop(budget);
            (outcome, over_budget)
        });
        let pending = entered.take_pending();
        drop(entered);

        match outcome {
            Ok(Ok(_)) if over_budget => Err(errors::over_budget(py, source_name.as_deref())),
            Ok(Ok(value)) => match pending {
                // An output callback failed on the script's last operations.
                Some(err) => Err(err),
                None => match self.limits.check_result(&value) {
                    // check_result bounds the depth too.
                    Ok(()) => to_python_within_depth(py, &value),
                    Err(limit) => Err(errors::result_too_large(py, limit, source_name.as_deref())),
                },
            },
            Ok(Err(error)) => Err(errors::from_eval_error(py, *error, source_name.as_deref(), pending)),
            Err(panic) => Err(errors::from_panic(py, panic)),
        }
    }

    /// Register `callable` as the Rhai function `name` for each arity in `arities`.
    /// (`rhai.Engine.register` works the arities out from the signature.)
    fn register_callable(&self, py: Python<'_>, name: &str, callable: Py<PyAny>, arities: Vec<usize>) -> PyResult<()> {
        if !callable.bind(py).is_callable() {
            return Err(PyTypeError::new_err(format!("cannot register {name:?}: object is not callable")));
        }
        let callable = Arc::new(callable);
        py.detach(|| {
            let mut engine = self.engine.write().unwrap_or_else(PoisonError::into_inner);
            callback::register(&mut engine, name, callable, &arities);
        });
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "rhai.Engine(max_operations={}, timeout={:?})",
            self.limits.max_operations,
            self.timeout.map(|t| t.as_secs_f64())
        )
    }
}

/// For tests only: runs a panic through the same guard `eval` uses.
#[pyfunction]
pub fn _panic_inside_guard(py: Python<'_>, message: String) -> PyResult<()> {
    match py.detach(|| catch_unwind(|| panic!("{message}"))) {
        Ok(()) => Ok(()),
        Err(payload) => Err(errors::from_panic(py, payload)),
    }
}
