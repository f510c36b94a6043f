//! Rhai's safety limits, with the defaults zeronode considers safe.
//!
//! Every limit Rhai offers is here, and none is unlimited by default: a script
//! from the network must never be able to run or allocate without bound.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_function_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub max_variables: usize,
    pub max_functions: usize,
    pub max_modules: usize,
    /// Bytes one evaluation may hold at once (enforced by `memory`, not by Rhai).
    pub max_memory: usize,
    /// How deeply a value may nest (enforced by rhai-py's patch of Rhai).
    pub max_value_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // About a few seconds of pure Rhai on one core; runners raise it per job.
            max_operations: 50_000_000,
            max_call_levels: 64,
            max_expr_depth: 64,
            max_function_expr_depth: 32,
            max_string_size: 4 * 1024 * 1024,
            max_array_size: 100_000,
            max_map_size: 10_000,
            max_variables: 10_000,
            max_functions: 1_000,
            max_modules: 16,
            max_memory: 256 * 1024 * 1024,
            max_value_depth: MAX_VALUE_DEPTH,
        }
    }
}

impl Limits {
    /// Rhai reads 0 as "unlimited" for most limits, so 0 is refused here:
    /// the caller asks for a bound and must get one.
    pub fn validate(&self) -> PyResult<()> {
        for (name, value) in self.named() {
            if value == 0 {
                return Err(PyValueError::new_err(format!(
                    "{name} must be at least 1 (a limit of 0 would mean unlimited in Rhai)"
                )));
            }
        }
        if self.max_value_depth > MAX_VALUE_DEPTH_CEILING {
            return Err(PyValueError::new_err(format!(
                "max_value_depth must be at most {MAX_VALUE_DEPTH_CEILING} (deeper values would overflow \
                 the stack of the threads that compare or drop them)"
            )));
        }
        Ok(())
    }

    pub fn apply(&self, engine: &mut rhai::Engine) {
        engine
            .set_max_operations(self.max_operations)
            .set_max_call_levels(self.max_call_levels)
            .set_max_expr_depths(self.max_expr_depth, self.max_function_expr_depth)
            .set_max_string_size(self.max_string_size)
            .set_max_array_size(self.max_array_size)
            .set_max_map_size(self.max_map_size)
            .set_max_variables(self.max_variables)
            .set_max_functions(self.max_functions)
            .set_max_modules(self.max_modules)
            .set_max_value_depth(self.max_value_depth);
    }

    pub fn named(&self) -> [(&'static str, u64); 12] {
        [
            ("max_operations", self.max_operations),
            ("max_call_levels", self.max_call_levels as u64),
            ("max_expr_depth", self.max_expr_depth as u64),
            ("max_function_expr_depth", self.max_function_expr_depth as u64),
            ("max_string_size", self.max_string_size as u64),
            ("max_array_size", self.max_array_size as u64),
            ("max_map_size", self.max_map_size as u64),
            ("max_variables", self.max_variables as u64),
            ("max_functions", self.max_functions as u64),
            ("max_modules", self.max_modules as u64),
            ("max_memory", self.max_memory as u64),
            ("max_value_depth", self.max_value_depth as u64),
        ]
    }

    pub fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, value) in self.named() {
            dict.set_item(name, value)?;
        }
        Ok(dict)
    }
}

/// How deeply a value crossing the binding may nest. Deeper data would overflow the
/// stack of the recursive walks (this one and the conversion to Python);
/// orjson draws its line at 254 for the same reason. Also the default of
/// `max_value_depth`, the nesting a script may build.
pub const MAX_VALUE_DEPTH: usize = 256;

/// The highest `max_value_depth` allowed: comparing two values 1024 levels deep
/// takes about 2 MiB of stack, a quarter of a thread's default. Walks over
/// values (printing, hashing) stop at the same depth (Rhai's `MAX_WALK_DEPTH`).
pub const MAX_VALUE_DEPTH_CEILING: usize = rhai::MAX_WALK_DEPTH;

#[derive(Default)]
struct Sizes {
    arrays: usize,
    maps: usize,
    strings: usize,
}

/// Walk `value` and what it holds, calling `visit` on each, at most
/// `MAX_VALUE_DEPTH` levels down: arrays, maps, a function pointer's curried
/// arguments (they become a list in Python) and shared values (closures'
/// captured variables) each count as a level. A cycle (a closure that captured
/// itself) is infinitely deep, and so refused like any too-deep value.
fn walk(
    value: &rhai::Dynamic,
    depth: usize,
    visit: &mut impl FnMut(&rhai::Dynamic) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    if depth > MAX_VALUE_DEPTH {
        return Err("result_depth");
    }
    if value.is_shared() {
        // A value locked by the running script cannot be read; it has nothing to add then.
        return match value.read_lock::<rhai::Dynamic>() {
            Some(inner) => walk(&inner, depth + 1, visit),
            None => Ok(()),
        };
    }
    visit(value)?;
    if let Ok(array) = value.as_array_ref() {
        array.iter().try_for_each(|item| walk(item, depth + 1, visit))
    } else if let Ok(map) = value.as_map_ref() {
        map.values().try_for_each(|item| walk(item, depth + 1, visit))
    } else if let Some(fn_ptr) = value.read_lock::<rhai::FnPtr>() {
        fn_ptr.iter_curry().try_for_each(|item| walk(item, depth + 1, visit))
    } else {
        Ok(())
    }
}

/// Whether `value` nests at most `MAX_VALUE_DEPTH` levels (see `walk`), so
/// that converting it to Python cannot overflow the stack.
pub fn within_depth(value: &rhai::Dynamic) -> bool {
    // Most values crossing are scalars (callbacks' arguments): no walk for them.
    let nests = value.is_array() || value.is_map() || value.is_fnptr() || value.is_shared();
    !nests || walk(value, 0, &mut |_| Ok(())).is_ok()
}

/// Rhai checks data sizes on most operations but not on every assignment
/// (`m[k] = v` in a loop can outgrow `max_map_size` unnoticed), so the value a
/// script returns is checked once more before it reaches Python.
impl Limits {
    pub fn check_result(&self, value: &rhai::Dynamic) -> Result<(), &'static str> {
        let mut sizes = Sizes::default();
        walk(value, 0, &mut |item| {
            if let Ok(array) = item.as_array_ref() {
                sizes.arrays += array.len();
            } else if let Ok(map) = item.as_map_ref() {
                sizes.maps += map.len();
            } else if let Ok(blob) = item.as_blob_ref() {
                sizes.arrays += blob.len();
            } else if let Some(fn_ptr) = item.read_lock::<rhai::FnPtr>() {
                sizes.arrays += fn_ptr.curry().len();
            } else if let Some(string) = item.read_lock::<rhai::ImmutableString>() {
                sizes.strings += string.len();
            }
            self.over(&sizes)
        })
    }

    fn over(&self, sizes: &Sizes) -> Result<(), &'static str> {
        if sizes.arrays > self.max_array_size {
            Err("max_array_size")
        } else if sizes.maps > self.max_map_size {
            Err("max_map_size")
        } else if sizes.strings > self.max_string_size {
            Err("max_string_size")
        } else {
            Ok(())
        }
    }
}
