//! Rhai's errors as precise Python exceptions.
//!
//! RhaiError                 base; .message .line .column .source_name
//! ├── ParseError            the script does not compile
//! ├── EvalError             the script failed while running
//! │   └── Cancelled         a CancelToken stopped it
//! └── LimitError            a safety limit was hit; .limit names it
//!     └── Timeout           the wall-clock limit (.limit == "timeout")

use pyo3::create_exception;
use pyo3::exceptions::{PyBaseException, PyException};
use pyo3::prelude::*;
use pyo3::types::PyType;
use rhai::{EvalAltResult, ParseErrorType, Position};

use crate::callback::PythonException;
use crate::run_context::Stop;

create_exception!(rhai, RhaiError, PyException, "Any error raised by the Rhai engine.");
create_exception!(rhai, ParseError, RhaiError, "The script does not compile.");
create_exception!(rhai, EvalError, RhaiError, "The script failed while running.");
create_exception!(rhai, Cancelled, EvalError, "The script was stopped through a CancelToken.");
create_exception!(rhai, LimitError, RhaiError, "The script exceeded a safety limit; `.limit` names it.");
create_exception!(rhai, Timeout, LimitError, "The script ran longer than its timeout.");

/// Where an error happened, and its message without the position.
struct Located<'a> {
    message: String,
    position: Position,
    source_name: Option<&'a str>,
}

impl Located<'_> {
    fn raise(&self, kind: &Bound<'_, PyType>, limit: Option<&str>) -> PyErr {
        let line = self.position.line();
        let column = self.position.position();
        let text = match (line, column) {
            (Some(line), column) => format!(
                "{}:{}:{}: {}",
                self.source_name.unwrap_or("<script>"),
                line,
                column.unwrap_or(0),
                self.message
            ),
            (None, _) => self.message.clone(),
        };
        let build = || -> PyResult<PyErr> {
            let exc = kind.call1((text,))?;
            exc.setattr("message", &self.message)?;
            exc.setattr("line", line)?;
            exc.setattr("column", column)?;
            exc.setattr("source_name", self.source_name)?;
            if let Some(limit) = limit {
                exc.setattr("limit", limit)?;
            }
            Ok(PyErr::from_value(exc))
        };
        build().unwrap_or_else(|err| err)
    }
}

/// The limit a parse error reports, if it is a limit at all.
fn parse_limit(error: &ParseErrorType) -> Option<&'static str> {
    match error {
        ParseErrorType::ExprTooDeep => Some("max_expr_depth"),
        ParseErrorType::TooManyFunctions => Some("max_functions"),
        ParseErrorType::LiteralTooLarge(what, _) => Some(data_limit(what)),
        _ => None,
    }
}

/// Rhai names the oversized thing in words ("Length of string", "Size of array/BLOB", ...).
fn data_limit(what: &str) -> &'static str {
    let what = what.to_ascii_lowercase();
    if what.contains("depth") {
        "max_value_depth"
    } else if what.contains("string") {
        "max_string_size"
    } else if what.contains("map") {
        "max_map_size"
    } else {
        "max_array_size"
    }
}

pub fn from_parse_error(py: Python<'_>, error: &rhai::ParseError, source_name: Option<&str>) -> PyErr {
    let located = Located { message: error.err_type().to_string(), position: error.position(), source_name };
    match parse_limit(error.err_type()) {
        Some(limit) => located.raise(&py.get_type::<LimitError>(), Some(limit)),
        None => located.raise(&py.get_type::<ParseError>(), None),
    }
}

/// Turn a failed run into the Python exception the caller sees.
///
/// `pending` is an exception a callback or a signal left behind while the
/// script ran; it wins over Rhai's own report of the termination.
pub fn from_eval_error(
    py: Python<'_>,
    error: EvalAltResult,
    source_name: Option<&str>,
    pending: Option<PyErr>,
) -> PyErr {
    // Errors inside script-defined functions are wrapped once per call level;
    // the innermost error is what went wrong, at the line where it happened.
    let mut error = error;
    let mut outer_position = Position::NONE;
    loop {
        error = match error {
            EvalAltResult::ErrorInFunctionCall(_, _, inner, pos) | EvalAltResult::ErrorInModule(_, inner, pos) => {
                if outer_position.is_none() {
                    outer_position = pos;
                }
                *inner
            }
            leaf => break error_from_leaf(py, leaf, outer_position, source_name, pending),
        }
    }
}

fn error_from_leaf(
    py: Python<'_>,
    mut leaf: EvalAltResult,
    outer_position: Position,
    source_name: Option<&str>,
    pending: Option<PyErr>,
) -> PyErr {
    let mut position = leaf.take_position();
    if position.is_none() {
        position = outer_position;
    }
    let located = |message: String| Located { message, position, source_name };
    let limit = |name: &str, message: String| located(message).raise(&py.get_type::<LimitError>(), Some(name));

    match leaf {
        EvalAltResult::ErrorTerminated(ref token, _) => match token.clone().try_cast::<Stop>() {
            Some(Stop::Timeout) => {
                located("script timed out".into()).raise(&py.get_type::<Timeout>(), Some("timeout"))
            }
            Some(Stop::Cancelled) => located("script cancelled".into()).raise(&py.get_type::<Cancelled>(), None),
            Some(Stop::Memory) => limit("max_memory", MEMORY_MESSAGE.into()),
            Some(Stop::PythonError) | None => match pending {
                Some(err) => err,
                None => located(leaf.to_string()).raise(&py.get_type::<EvalError>(), None),
            },
        },
        EvalAltResult::ErrorTooManyOperations(_) => limit("max_operations", leaf.to_string()),
        EvalAltResult::ErrorTooManyVariables(_) => limit("max_variables", leaf.to_string()),
        EvalAltResult::ErrorTooManyModules(_) => limit("max_modules", leaf.to_string()),
        EvalAltResult::ErrorStackOverflow(_) => limit("max_call_levels", leaf.to_string()),
        EvalAltResult::ErrorDataTooLarge(ref what, _) => limit(data_limit(what), leaf.to_string()),
        EvalAltResult::ErrorParsing(ref parse_error, _) => match parse_limit(parse_error) {
            Some(name) => limit(name, parse_error.to_string()),
            None => located(parse_error.to_string()).raise(&py.get_type::<ParseError>(), None),
        },
        EvalAltResult::ErrorRuntime(ref value, _) if value.is::<PythonException>() => {
            let carried = value.clone().cast::<PythonException>();
            let original = carried.error.clone_ref(py);
            // KeyboardInterrupt, SystemExit and friends are not script errors:
            // let them through untouched.
            if !original.is_instance_of::<PyException>(py) && original.is_instance_of::<PyBaseException>(py) {
                return original;
            }
            let err = located(carried.summary).raise(&py.get_type::<EvalError>(), None);
            err.set_cause(py, Some(original));
            err
        }
        other => located(other.to_string()).raise(&py.get_type::<EvalError>(), None),
    }
}

/// The script's result breaks a limit Rhai did not check while it ran.
pub fn result_too_large(py: Python<'_>, limit: &str, source_name: Option<&str>) -> PyErr {
    let message = format!("the script's result exceeds {limit}");
    Located { message, position: Position::NONE, source_name }.raise(&py.get_type::<LimitError>(), Some(limit))
}

const MEMORY_MESSAGE: &str = "script exceeded max_memory (it held too many bytes at once)";

/// The script ended holding more than `max_memory` (after the last check).
pub fn over_budget(py: Python<'_>, source_name: Option<&str>) -> PyErr {
    let located = Located { message: MEMORY_MESSAGE.into(), position: Position::NONE, source_name };
    located.raise(&py.get_type::<LimitError>(), Some("max_memory"))
}

/// A Rust panic, caught before it could unwind into Python.
pub fn from_panic(py: Python<'_>, payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    Located { message: format!("internal error in the Rhai engine: {detail}"), position: Position::NONE, source_name: None }
        .raise(&py.get_type::<RhaiError>(), None)
}
