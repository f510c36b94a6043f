//! Values between Python and Rhai.
//!
//! int <-> INT (i64), float <-> FLOAT (f64), bool, str, None <-> (),
//! list/tuple -> array -> list, dict (str keys) <-> object map, bytes <-> BLOB.
//!
//! A function pointer becomes its name, or `[name, *curried]` when it carries
//! arguments; a shared value (a closure's captured variable), what it holds.
//!
//! Rhai -> Python goes through serde (pythonize), which is exact. Python ->
//! Rhai is written out here because serde's path would quietly turn an int
//! beyond 64 bits into a float; this one refuses it instead.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use rhai::{Array, Dynamic, Map, Scope};

use crate::limits::{within_depth, MAX_VALUE_DEPTH};

pub fn to_python<'py>(py: Python<'py>, value: &Dynamic) -> PyResult<Bound<'py, PyAny>> {
    // serde's walk (and pythonize's) recurses: bound it first. Script values can
    // be deeper than any limit counts, through closures capturing closures.
    if !within_depth(value) {
        return Err(PyValueError::new_err(format!("value nested deeper than {MAX_VALUE_DEPTH} levels")));
    }
    to_python_within_depth(py, value)
}

/// `to_python` for a value already known to be `within_depth` (a checked result).
pub fn to_python_within_depth<'py>(py: Python<'py>, value: &Dynamic) -> PyResult<Bound<'py, PyAny>> {
    pythonize::pythonize(py, value)
        .map_err(|err| PyValueError::new_err(format!("cannot convert Rhai value to Python: {err}")))
}

pub fn from_python(value: &Bound<'_, PyAny>) -> PyResult<Dynamic> {
    convert(value, 0)
}

fn convert(value: &Bound<'_, PyAny>, depth: usize) -> PyResult<Dynamic> {
    if depth > MAX_VALUE_DEPTH {
        return Err(PyValueError::new_err(format!("value nested deeper than {MAX_VALUE_DEPTH} levels")));
    }
    if value.is_none() {
        Ok(Dynamic::UNIT)
    } else if let Ok(flag) = value.cast::<PyBool>() {
        Ok(Dynamic::from_bool(flag.is_true()))
    } else if let Ok(int) = value.cast::<PyInt>() {
        int.extract::<i64>()
            .map(Dynamic::from_int)
            .map_err(|_| PyOverflowError::new_err(format!("int {int} does not fit in Rhai's 64-bit INT")))
    } else if let Ok(float) = value.cast::<PyFloat>() {
        Ok(Dynamic::from_float(float.value()))
    } else if let Ok(text) = value.cast::<PyString>() {
        Ok(Dynamic::from(text.to_str()?.to_owned()))
    } else if let Ok(bytes) = value.cast::<PyBytes>() {
        Ok(Dynamic::from_blob(bytes.as_bytes().to_vec()))
    } else if let Ok(list) = value.cast::<PyList>() {
        let array = list.iter().map(|item| convert(&item, depth + 1)).collect::<PyResult<Array>>()?;
        Ok(Dynamic::from_array(array))
    } else if let Ok(tuple) = value.cast::<PyTuple>() {
        let array = tuple.iter().map(|item| convert(&item, depth + 1)).collect::<PyResult<Array>>()?;
        Ok(Dynamic::from_array(array))
    } else if let Ok(dict) = value.cast::<PyDict>() {
        let mut map = Map::new();
        for (key, item) in dict.iter() {
            let key = key
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("dict keys must be str to become a Rhai object map"))?;
            map.insert(key.to_str()?.into(), convert(&item, depth + 1)?);
        }
        Ok(Dynamic::from_map(map))
    } else {
        let type_name = value.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        Err(PyTypeError::new_err(format!("cannot convert Python {type_name} to a Rhai value")))
    }
}

/// A dict of variables made visible to a script.
pub fn scope_from_dict(variables: Option<&Bound<'_, PyDict>>) -> PyResult<Scope<'static>> {
    let mut scope = Scope::new();
    if let Some(variables) = variables {
        let py = variables.py();
        for (name, value) in variables.iter() {
            let name = name
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("scope keys must be str (Rhai variable names)"))?
                .to_str()?
                .to_owned();
            let value = from_python(&value).map_err(|err| {
                PyErr::from_type(err.get_type(py), format!("scope variable '{name}': {}", err.value(py)))
            })?;
            scope.push_dynamic(name, value);
        }
    }
    Ok(scope)
}
