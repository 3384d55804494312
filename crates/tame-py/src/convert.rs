//! Conversions between Python objects and JSON values, with depth limits
//! and errors that name the offending field (`tool_args.items[2]`).

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use tame_engine::Value;

/// Deepest nesting accepted from Python (deeper input is rejected, never a
/// stack overflow).
pub const MAX_DEPTH: usize = 64;

/// Why a Python value could not become JSON.
#[derive(Debug)]
pub enum ConvertError {
    /// Wrong kind of object (raised as `TypeError`).
    Type(String),
    /// Right kind, bad value: too deep, non-finite float, huge int (`ValueError`).
    Value(String),
    /// The interpreter failed while reading the object.
    Python(PyErr),
}

enum Fail {
    Type(&'static str, String),
    Value(String),
    Python(PyErr),
}

/// Reads an optional argument that must be a dict (None is `{}`) as a
/// condition value, converting directly (no JSON in between).
pub fn object_arg(obj: Option<&Bound<'_, PyAny>>, name: &str) -> Result<Value, ConvertError> {
    match obj {
        None => Ok(Value::Map(Arc::default())),
        Some(o) if o.is_none() => object_arg(None, name),
        Some(o) if o.is_instance_of::<PyDict>() => py_to_value(o, name),
        Some(o) => Err(ConvertError::Type(format!(
            "{name} must be a dict, got {}",
            o.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "object".into())
        ))),
    }
}

/// Converts a Python value to a condition value with the same rules as
/// [`py_to_json`] followed by `json_to_value` (ints stay `int`, or `uint`
/// above the `int` range; floats `double`; dicts keep their order).
pub fn py_to_value(obj: &Bound<'_, PyAny>, root: &str) -> Result<Value, ConvertError> {
    let mut path: Vec<String> = Vec::new();
    to_value(obj, 0, &mut path).map_err(|fail| failure(fail, root, &path))
}

fn failure(fail: Fail, root: &str, path: &[String]) -> ConvertError {
    let mut at = root.to_owned();
    for seg in path {
        at.push_str(seg);
    }
    match fail {
        Fail::Type(kind, got) => ConvertError::Type(format!("{at}: {kind}, got {got}")),
        Fail::Value(m) => ConvertError::Value(format!("{at}: {m}")),
        Fail::Python(e) => ConvertError::Python(e),
    }
}

fn to_value(obj: &Bound<'_, PyAny>, depth: usize, path: &mut Vec<String>) -> Result<Value, Fail> {
    if depth > MAX_DEPTH {
        return Err(Fail::Value(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s
            .to_cow()
            .map(|s| Value::String(Arc::from(&*s)))
            .map_err(|_| Fail::Value("string is not valid unicode (lone surrogate)".into()));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::Int(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::Uint(u));
        }
        return Err(Fail::Value("integer out of range (beyond 64 bits)".into()));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        if !v.is_finite() {
            return Err(Fail::Value(format!("{v} is not a JSON number")));
        }
        return Ok(Value::Double(v));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut pairs = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            let key = match k.cast::<PyString>() {
                Ok(k) => k.to_cow().map_err(Fail::Python)?,
                Err(_) => {
                    let shown = k.repr().map(|r| r.to_string()).unwrap_or_default();
                    return Err(Fail::Type("keys must be strings", format!("{} {shown}", type_of(&k))));
                }
            };
            let value = to_value(&v, depth + 1, path).inspect_err(|_| {
                path.insert(0, format!(".{key}"));
            })?;
            pairs.push((Arc::<str>::from(&*key), value));
        }
        return Ok(Value::Map(Arc::new(
            pairs.into_iter().map(|(k, v)| (k.as_ref().into(), v)).collect(),
        )));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for (i, item) in obj.try_iter().map_err(Fail::Python)?.enumerate() {
            let item = item.map_err(Fail::Python)?;
            let value = to_value(&item, depth + 1, path).inspect_err(|_| {
                path.insert(0, format!("[{i}]"));
            })?;
            items.push(value);
        }
        return Ok(Value::List(items.into()));
    }
    Err(Fail::Type(
        "expected JSON data (dict, list, str, int, float, bool or None)",
        type_of(obj),
    ))
}

/// Converts a Python value (dict with str keys, list, tuple, str, int,
/// float, bool, None) to JSON. `root` names the value in errors.
pub fn py_to_json(obj: &Bound<'_, PyAny>, root: &str) -> Result<serde_json::Value, ConvertError> {
    let mut path: Vec<String> = Vec::new();
    convert(obj, 0, &mut path).map_err(|fail| failure(fail, root, &path))
}

fn type_of(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// On error, `path` holds the segments down to the failing value.
fn convert(obj: &Bound<'_, PyAny>, depth: usize, path: &mut Vec<String>) -> Result<serde_json::Value, Fail> {
    use serde_json::Value as J;
    if depth > MAX_DEPTH {
        return Err(Fail::Value(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    if obj.is_none() {
        return Ok(J::Null);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s
            .to_cow()
            .map(|s| J::String(s.into_owned()))
            .map_err(|_| Fail::Value("string is not valid unicode (lone surrogate)".into()));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(J::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(J::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(J::from(u));
        }
        return Err(Fail::Value("integer out of range (beyond 64 bits)".into()));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return serde_json::Number::from_f64(v)
            .map(J::Number)
            .ok_or_else(|| Fail::Value(format!("{v} is not a JSON number")));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = serde_json::Map::with_capacity(d.len());
        for (k, v) in d.iter() {
            let key = match k.cast::<PyString>() {
                Ok(k) => k.to_cow().map_err(Fail::Python)?.into_owned(),
                Err(_) => {
                    let shown = k.repr().map(|r| r.to_string()).unwrap_or_default();
                    return Err(Fail::Type("keys must be strings", format!("{} {shown}", type_of(&k))));
                }
            };
            let value = convert(&v, depth + 1, path).inspect_err(|_| {
                path.insert(0, format!(".{key}"));
            })?;
            map.insert(key, value);
        }
        return Ok(J::Object(map));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for (i, item) in obj.try_iter().map_err(Fail::Python)?.enumerate() {
            let item = item.map_err(Fail::Python)?;
            let value = convert(&item, depth + 1, path).inspect_err(|_| {
                path.insert(0, format!("[{i}]"));
            })?;
            items.push(value);
        }
        return Ok(J::Array(items));
    }
    Err(Fail::Type(
        "expected JSON data (dict, list, str, int, float, bool or None)",
        type_of(obj),
    ))
}

/// Converts JSON to Python objects (dicts, lists, str, int, float, bool, None).
pub fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => py.None().into_bound(py),
        J::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        J::String(s) => PyString::new(py, s).into_any(),
        J::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        J::Object(obj) => {
            let d = PyDict::new(py);
            for (k, item) in obj {
                d.set_item(k, json_to_py(py, item)?)?;
            }
            d.into_any()
        }
    })
}
