//! Python callables as host functions of the condition language.
//!
//! Each registered callable becomes a `HostFn`: arguments are converted to
//! Python (through JSON), the callable runs with the GIL held, and its
//! return value is converted back. A Python exception becomes a run-time
//! error of the condition (which never widens access).

use std::sync::Arc;

use pyo3::prelude::*;
use tame_engine::{Policy, Type, Value};

use crate::convert::{json_to_py, py_to_value};

/// One registered function.
#[derive(Debug)]
struct Entry {
    name: String,
    func: Py<PyAny>,
    params: Vec<Type>,
    returns: Type,
}

impl Clone for Entry {
    fn clone(&self) -> Self {
        Python::attach(|py| Entry {
            name: self.name.clone(),
            func: self.func.clone_ref(py),
            params: self.params.clone(),
            returns: self.returns.clone(),
        })
    }
}

/// The host functions of one engine.
#[derive(Debug, Default, Clone)]
pub struct Functions {
    entries: Vec<Entry>,
}

/// Reads a type name as written in `params=[...]` / `returns=`.
pub fn parse_type(name: &str) -> Result<Type, String> {
    let t = match name.trim() {
        "dyn" | "any" => Type::Dyn,
        "bool" => Type::Bool,
        "int" => Type::Int,
        "uint" => Type::Uint,
        "double" | "float" => Type::Double,
        "string" | "str" => Type::String,
        "bytes" => Type::Bytes,
        "null" => Type::Null,
        "list" => Type::List(Box::new(Type::Dyn)),
        "map" | "dict" => Type::Map(Box::new(Type::Dyn), Box::new(Type::Dyn)),
        "list(string)" => Type::List(Box::new(Type::String)),
        "list(int)" => Type::List(Box::new(Type::Int)),
        "timestamp" => Type::Timestamp,
        "duration" => Type::Duration,
        other => {
            return Err(format!(
                "unknown type `{other}`: use dyn, bool, int, uint, double, string, bytes, list, \
                 list(string), list(int), map, timestamp or duration"
            ));
        }
    };
    Ok(t)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Functions {
    /// Adds (or replaces) a function; errors are `ValueError` messages.
    pub fn add(&mut self, name: &str, func: Py<PyAny>, params: &[String], returns: &str) -> Result<(), String> {
        if !valid_name(name) {
            return Err(format!("invalid function name `{name}`: use letters, digits and `_`"));
        }
        let params = params
            .iter()
            .enumerate()
            .map(|(i, p)| parse_type(p).map_err(|e| format!("params[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let returns = parse_type(returns).map_err(|e| format!("returns: {e}"))?;
        self.entries.retain(|e| e.name != name);
        self.entries.push(Entry {
            name: name.to_owned(),
            func,
            params,
            returns,
        });
        Ok(())
    }

    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.name.clone()).collect()
    }

    /// Compiles a policy with these functions available to its conditions.
    pub fn compile(&self, source: &str, origin: &str) -> crate::Result<Policy> {
        if self.entries.is_empty() {
            return Policy::from_yaml(source, origin).map_err(crate::Error::Policy);
        }
        let mut registry = tame_engine::Registry::new();
        for e in &self.entries {
            registry
                .register_host(&e.name, e.params.clone(), e.returns.clone(), host_fn(e))
                .map_err(|e| crate::Error::Register(e.to_string()))?;
        }
        Policy::from_yaml_with(source, origin, &registry).map_err(crate::Error::Policy)
    }
}

/// Wraps one Python callable.
fn host_fn(e: &Entry) -> tame_engine::HostFn {
    let func = Python::attach(|py| e.func.clone_ref(py));
    let name = e.name.clone();
    Arc::new(move |args: &[Value]| -> Result<Value, String> {
        Python::attach(|py| {
            let mut py_args = Vec::with_capacity(args.len());
            for a in args {
                let json = tame_engine::value_to_json(a);
                py_args.push(json_to_py(py, &json).map_err(|e| format!("`{name}`: {e}"))?);
            }
            let tuple = pyo3::types::PyTuple::new(py, py_args).map_err(|e| format!("`{name}`: {e}"))?;
            let out = func
                .bind(py)
                .call1(tuple)
                .map_err(|e| format!("host function `{name}` raised {e}"))?;
            py_to_value(&out, "return value").map_err(|e| match e {
                crate::convert::ConvertError::Type(m) | crate::convert::ConvertError::Value(m) => {
                    format!("host function `{name}`: {m}")
                }
                crate::convert::ConvertError::Python(e) => format!("host function `{name}`: {e}"),
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        assert_eq!(parse_type("string"), Ok(Type::String));
        assert_eq!(parse_type(" str "), Ok(Type::String));
        assert_eq!(parse_type("list(int)"), Ok(Type::List(Box::new(Type::Int))));
        assert_eq!(
            parse_type("map"),
            Ok(Type::Map(Box::new(Type::Dyn), Box::new(Type::Dyn)))
        );
        let err = parse_type("float64").unwrap_err();
        assert!(err.starts_with("unknown type `float64`"), "{err}");
    }

    #[test]
    fn function_names() {
        assert!(valid_name("is_vip"));
        assert!(valid_name("_x1"));
        assert!(!valid_name("1x"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(""));
        assert!(!valid_name("a.b"));
    }
}
