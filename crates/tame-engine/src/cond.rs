//! The bridge to the condition language: the policy environment for
//! checking (tame-lang) and compiling (tame-interp) conditions, with host
//! functions.

use std::sync::Arc;

use tame_lang::{HostFn, Key, Registry, Type, Value, ValueMap};
use tame_safety::Scanner;

/// `has_secret(x)`, `has_pii(x)` (bools) and `secrets(x)` (a list of
/// `{kind, category, path, preview}` maps) over any value, usually `args`.
fn payload_functions() -> [(&'static str, HostFn); 3] {
    fn one(args: &[Value]) -> Result<serde_json::Value, String> {
        match args {
            [v] => Ok(crate::request::value_to_json(v)),
            _ => Err(format!("expected 1 argument, got {}", args.len())),
        }
    }
    let has_secret: HostFn = Arc::new(|args: &[Value]| Ok(Value::Bool(Scanner::global().has_secret(&one(args)?))));
    let has_pii: HostFn = Arc::new(|args: &[Value]| Ok(Value::Bool(Scanner::global().has_pii(&one(args)?))));
    let secrets: HostFn = Arc::new(|args: &[Value]| {
        let found = Scanner::global().secrets(&one(args)?);
        let items: Vec<Value> = found
            .iter()
            .map(|f| {
                let mut m = ValueMap::default();
                m.insert(Key::from("kind"), Value::string(f.kind.as_str()));
                m.insert(Key::from("category"), Value::string(f.category.as_str()));
                m.insert(Key::from("path"), Value::string(&f.path));
                m.insert(Key::from("preview"), Value::string(&f.preview));
                Value::Map(Arc::new(m))
            })
            .collect();
        Ok(Value::List(items.into()))
    });
    [("has_secret", has_secret), ("has_pii", has_pii), ("secrets", secrets)]
}

/// The environment conditions are checked and compiled in: the built-in
/// functions, the payload checks, and the embedder's host functions.
#[derive(Debug)]
pub(crate) struct CondEnv {
    registry: Registry,
    interp: tame_interp::Env,
}

impl CondEnv {
    /// `user` holds the embedder's host functions; it may or may not
    /// include the built-ins (they are always available).
    pub fn new(user: &Registry) -> Self {
        let mut registry = Registry::builtins();
        for (name, func) in payload_functions() {
            let result = if name == "secrets" {
                Type::List(Box::new(Type::Map(Box::new(Type::String), Box::new(Type::String))))
            } else {
                Type::Bool
            };
            // A registry that already implements them keeps its own.
            let _ = registry.register_host(name, vec![Type::Dyn], result, func);
        }
        for name in user.names() {
            for o in user.overloads(name) {
                let Some(f) = &o.host else { continue };
                // Replace a payload check with the embedder's version.
                let _ = if o.receiver {
                    registry.register_host_method(name, o.params.clone(), o.result.clone(), f.clone())
                } else {
                    registry.register_host(name, o.params.clone(), o.result.clone(), f.clone())
                };
            }
        }
        let interp = tame_interp::Env::policy().with_registry(&registry);
        CondEnv { registry, interp }
    }

    pub fn interp(&self) -> &tame_interp::Env {
        &self.interp
    }

    /// Sets the policy's `lists:` for compiling conditions.
    pub fn set_lists(&mut self, lists: tame_lang::Value) {
        self.interp.set_lists(lists);
    }

    /// Type-checks a condition: it must be `bool` (or `dyn`, checked at
    /// run time).
    pub fn check(&self, expr: &tame_lang::Expr) -> Result<(), Vec<tame_lang::CheckError>> {
        let env = tame_lang::CheckEnv::policy(&self.registry);
        match tame_lang::check(expr, &env)? {
            Type::Bool | Type::Dyn => Ok(()),
            other => Err(vec![
                tame_lang::CheckError::new(
                    format!("a condition must be a bool, this is {}", other.name()),
                    expr.span,
                )
                .with_help("compare it, e.g. `args.count > 0` or `args.name == \"x\"`"),
            ]),
        }
    }
}
