//! Data size checks during evaluation.
#![cfg(not(feature = "unchecked"))]

use super::GlobalRuntimeState;
use crate::types::dynamic::Union;
use crate::{Dynamic, Engine, Position, RhaiResultOf, ERR};
use std::borrow::Borrow;
#[cfg(feature = "no_std")]
use std::prelude::v1::*;

/// _(rhai-py)_ How deeply a value nests, found while its sizes are calculated.
///
/// Every [array][crate::Array], [object map][crate::Map] and [function pointer][crate::FnPtr]
/// with curried arguments is one level. A shared value is a leaf: it is a value of its own,
/// checked when it is assigned, and dropped without recursion (see `SharedCell`).
///
/// The walk stops going down once `max` is passed, so it never recurses deeper than
/// `max + 1` levels whatever the value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Depth {
    /// The deepest level seen.
    pub deepest: usize,
    /// Stop descending below this level.
    pub max: usize,
}

impl Depth {
    #[inline(always)]
    pub(crate) const fn new(max: usize) -> Self {
        Self { deepest: 0, max }
    }
    /// Enter a container at `level`; `false` if its contents must not be walked.
    #[inline(always)]
    fn enter(&mut self, level: usize) -> bool {
        if level > self.deepest {
            self.deepest = level;
        }
        level <= self.max
    }
}

/// Recursively calculate the sizes of an array.
///
/// Sizes returned are `(` [`Array`][crate::Array], [`Map`][crate::Map] and [`String`] `)`.
#[cfg(not(feature = "no_index"))]
#[inline]
pub fn calc_array_sizes(array: &crate::Array) -> (usize, usize, usize) {
    let mut depth = Depth::new(usize::MAX);
    walk_array(array, 1, &mut depth)
}

/// The sizes of an array at nesting `level`, noting the depth reached.
#[cfg(not(feature = "no_index"))]
fn walk_array(array: &crate::Array, level: usize, depth: &mut Depth) -> (usize, usize, usize) {
    if !depth.enter(level) {
        return (array.len(), 0, 0);
    }
    let (mut ax, mut mx, mut sx) = (0, 0, 0);

    for value in array {
        ax += 1;

        match value.0 {
            Union::Array(ref a, ..) => {
                let (a, m, s) = walk_array(a, level + 1, depth);
                ax += a;
                mx += m;
                sx += s;
            }
            Union::Blob(ref a, ..) => ax += 1 + a.len(),
            #[cfg(not(feature = "no_object"))]
            Union::Map(ref m, ..) => {
                let (a, m, s) = walk_map(m, level + 1, depth);
                ax += a;
                mx += m;
                sx += s;
            }
            Union::Str(ref s, ..) => sx += s.len(),
            Union::FnPtr(ref f, ..) => walk_fn_ptr(f, level + 1, depth),
            // Shared values within data (captured by closures): a leaf.
            _ => (),
        }
    }

    (ax, mx, sx)
}

/// Recursively calculate the sizes of a map.
///
/// Sizes returned are `(` [`Array`][crate::Array], [`Map`][crate::Map] and [`String`] `)`.
#[cfg(not(feature = "no_object"))]
#[inline]
#[allow(dead_code)]
pub fn calc_map_sizes(map: &crate::Map) -> (usize, usize, usize) {
    let mut depth = Depth::new(usize::MAX);
    walk_map(map, 1, &mut depth)
}

/// The sizes of a map at nesting `level`, noting the depth reached.
#[cfg(not(feature = "no_object"))]
fn walk_map(map: &crate::Map, level: usize, depth: &mut Depth) -> (usize, usize, usize) {
    if !depth.enter(level) {
        return (0, map.len(), 0);
    }
    let (mut ax, mut mx, mut sx) = (0, 0, 0);

    for value in map.values() {
        mx += 1;

        match value.0 {
            #[cfg(not(feature = "no_index"))]
            Union::Array(ref a, ..) => {
                let (a, m, s) = walk_array(a, level + 1, depth);
                ax += a;
                mx += m;
                sx += s;
            }
            #[cfg(not(feature = "no_index"))]
            Union::Blob(ref a, ..) => ax += 1 + a.len(),
            Union::Map(ref m, ..) => {
                let (a, m, s) = walk_map(m, level + 1, depth);
                ax += a;
                mx += m;
                sx += s;
            }
            Union::Str(ref s, ..) => sx += s.len(),
            Union::FnPtr(ref f, ..) => walk_fn_ptr(f, level + 1, depth),
            // Shared values within data (captured by closures): a leaf.
            _ => (),
        }
    }

    (ax, mx, sx)
}

/// The sizes of a function pointer's curried arguments at nesting `level`.
///
/// They count for depth only: what they hold is counted by the memory limit of the host.
fn walk_fn_ptr(f: &crate::FnPtr, level: usize, depth: &mut Depth) {
    if !f.is_curried() || !depth.enter(level) {
        return;
    }
    for value in f.iter_curry() {
        match value.0 {
            #[cfg(not(feature = "no_index"))]
            Union::Array(ref a, ..) => {
                let _ = walk_array(a, level + 1, depth);
            }
            #[cfg(not(feature = "no_object"))]
            Union::Map(ref m, ..) => {
                let _ = walk_map(m, level + 1, depth);
            }
            Union::FnPtr(ref f, ..) => walk_fn_ptr(f, level + 1, depth),
            // Shared values (what closures capture) and scalars: a leaf.
            _ => (),
        }
    }
}

/// Recursively calculate the sizes of a value.
///
/// Sizes returned are `(` [`Array`][crate::Array], [`Map`][crate::Map] and [`String`] `)`.
#[inline]
pub fn calc_data_sizes(value: &Dynamic, _top: bool) -> (usize, usize, usize) {
    calc_data_sizes_and_depth(value, _top, &mut Depth::new(usize::MAX))
}

/// _(rhai-py)_ Calculate the sizes of a value, and how deeply it nests, into `depth`.
pub(crate) fn calc_data_sizes_and_depth(
    value: &Dynamic,
    _top: bool,
    depth: &mut Depth,
) -> (usize, usize, usize) {
    match value.0 {
        #[cfg(not(feature = "no_index"))]
        Union::Array(ref arr, ..) => walk_array(arr, 1, depth),
        #[cfg(not(feature = "no_index"))]
        Union::Blob(ref blob, ..) => (blob.len(), 0, 0),
        #[cfg(not(feature = "no_object"))]
        Union::Map(ref map, ..) => walk_map(map, 1, depth),
        Union::Str(ref s, ..) => (0, 0, s.len()),
        Union::FnPtr(ref f, ..) => {
            walk_fn_ptr(f, 1, depth);
            (0, 0, 0)
        }
        // A shared variable being checked: what it holds now.
        #[cfg(not(feature = "no_closure"))]
        Union::Shared(ref cell, ..) if _top => match crate::func::locked_read(cell) {
            Some(inner) => calc_data_sizes_and_depth(&inner, false, depth),
            None => (0, 0, 0),
        },
        _ => (0, 0, 0),
    }
}

impl Engine {
    /// Raise an error if any data size exceeds limit.
    ///
    /// [`Position`] in [`EvalAltResult`][crate::EvalAltResult] is always [`NONE`][Position::NONE]
    /// and should be set afterwards.
    #[cfg(not(feature = "unchecked"))]
    pub(crate) fn throw_on_size(&self, (_arr, _map, s): (usize, usize, usize)) -> RhaiResultOf<()> {
        if self.limits.string_len.map_or(false, |max| s > max.get()) {
            return Err(
                ERR::ErrorDataTooLarge("Length of string".to_string(), Position::NONE).into(),
            );
        }

        #[cfg(not(feature = "no_index"))]
        if self.limits.array_size.map_or(false, |max| _arr > max.get()) {
            return Err(
                ERR::ErrorDataTooLarge("Size of array/BLOB".to_string(), Position::NONE).into(),
            );
        }

        #[cfg(not(feature = "no_object"))]
        if self.limits.map_size.map_or(false, |max| _map > max.get()) {
            return Err(
                ERR::ErrorDataTooLarge("Size of object map".to_string(), Position::NONE).into(),
            );
        }

        Ok(())
    }

    /// Check whether the size of a [`Dynamic`] is within limits.
    #[cfg(not(feature = "unchecked"))]
    #[inline]
    pub(crate) fn check_data_size<T: Borrow<Dynamic>>(
        &self,
        value: T,
        pos: Position,
    ) -> RhaiResultOf<T> {
        // If no data size limits, just return
        if !self.has_data_size_limit() {
            return Ok(value);
        }

        // (rhai-py) Most values checked are the results of operators on scalars:
        // nothing to measure there (and measuring now costs a little more).
        match value.borrow().0 {
            Union::Unit(..) | Union::Bool(..) | Union::Char(..) | Union::Int(..) => return Ok(value),
            #[cfg(not(feature = "no_float"))]
            Union::Float(..) => return Ok(value),
            _ => (),
        }

        let mut depth = Depth::new(self.max_value_depth_or_unlimited());
        let sizes = calc_data_sizes_and_depth(value.borrow(), true, &mut depth);

        self.throw_on_size(sizes)
            .and_then(|()| self.throw_on_depth(depth.deepest))
            .map_err(|err| err.fill_position(pos))?;

        Ok(value)
    }

    /// _(rhai-py)_ The nesting limit, `usize::MAX` for none.
    #[inline(always)]
    pub(crate) const fn max_value_depth_or_unlimited(&self) -> usize {
        match self.limits.value_depth {
            Some(n) => n.get(),
            None => usize::MAX,
        }
    }

    /// _(rhai-py)_ Raise an error if a value nests deeper than the limit.
    ///
    /// [`Position`] in [`EvalAltResult`][crate::EvalAltResult] is always [`NONE`][Position::NONE]
    /// and should be set afterwards.
    #[inline(always)]
    pub(crate) fn throw_on_depth(&self, depth: usize) -> RhaiResultOf<()> {
        #[cold]
        #[inline(never)]
        fn too_deep() -> RhaiResultOf<()> {
            Err(ERR::ErrorDataTooLarge("Depth of nested value".to_string(), Position::NONE).into())
        }

        if depth > self.max_value_depth_or_unlimited() {
            return too_deep();
        }
        Ok(())
    }

    /// Raise an error if the size of a [`Dynamic`] is out of limits (if any).
    ///
    /// Not available under `unchecked`.
    #[cfg(not(feature = "unchecked"))]
    #[inline(always)]
    pub fn ensure_data_size_within_limits(&self, value: &Dynamic) -> RhaiResultOf<()> {
        self.check_data_size(value, Position::NONE).map(|_| ())
    }

    /// Check if the number of operations stay within limit.
    #[inline(always)]
    pub(crate) fn track_operation(
        &self,
        global: &mut GlobalRuntimeState,
        pos: Position,
    ) -> RhaiResultOf<()> {
        let mut num_ops = None;

        let mut num_operations = || {
            *num_ops.get_or_insert_with(|| {
                // Increment operations count
                #[cfg(atomic_ops_count)]
                return global
                    .num_operations
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    + 1;

                #[cfg(not(atomic_ops_count))]
                {
                    global.num_operations += 1;
                    return global.num_operations;
                }
            })
        };

        // Guard against too many operations
        #[cfg(not(feature = "unchecked"))]
        if self.max_operations() > 0 && num_operations() > self.max_operations() {
            return Err(ERR::ErrorTooManyOperations(pos).into());
        }

        if let Some(progress) = self.progress.as_ref() {
            return progress(num_operations())
                .map(|token| Err(ERR::ErrorTerminated(token, pos).into()))
                .unwrap_or(Ok(()));
        }

        Ok(())
    }
}
