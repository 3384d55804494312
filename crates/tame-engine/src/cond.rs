//! The bridge to the condition language: the policy environment for
//! checking (tame-lang) and compiling (tame-interp) conditions, with host
//! functions.

use std::sync::Arc;

use tame_lang::{HostFn, Key, Type, Value, ValueMap};
use tame_safety::Scanner;

/// Host functions registered by the embedding program, with signatures.
///
/// NOTE: stand-in until `tame_lang::Registry` lands; same method shape
/// (`register_host(name, params, result, func)`), so callers won't change.
#[derive(Clone, Default)]
pub struct Registry {
    host: Vec<HostDecl>,
}

#[derive(Clone)]
struct HostDecl {
    name: String,
    params: Vec<Type>,
    #[allow(dead_code)]
    result: Type,
    func: HostFn,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.host.iter().map(|h| &h.name)).finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a host function callable as `name(a, b)` (or `a.name(b)`).
    pub fn register_host(&mut self, name: &str, params: Vec<Type>, result: Type, func: HostFn) -> Result<(), String> {
        if self.host.iter().any(|h| h.name == name && h.params.len() == params.len()) {
            return Err(format!("host function `{name}` with {} parameters is already registered", params.len()));
        }
        self.host.push(HostDecl { name: name.to_owned(), params, result, func });
        Ok(())
    }
}

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

/// The environment conditions are checked and compiled in.
#[derive(Debug)]
pub(crate) struct CondEnv {
    interp: tame_interp::Env,
}

impl CondEnv {
    pub fn new(registry: &Registry) -> Self {
        let mut interp = tame_interp::Env::policy();
        // Payload checks backed by tame-safety's scanner.
        for (name, func) in payload_functions() {
            interp.add_function(name, Some(1), func);
        }
        for h in &registry.host {
            interp.add_function(&h.name, Some(h.params.len()), h.func.clone());
        }
        CondEnv { interp }
    }

    pub fn interp(&self) -> &tame_interp::Env {
        &self.interp
    }

    /// Type-checks a condition: it must be `bool` or `dyn`.
    ///
    /// NOTE: until tame-lang's checker lands, unknown names and functions
    /// are caught when the condition is compiled (tame-interp's strict
    /// mode), with the same spans.
    pub fn check(&self, _expr: &tame_lang::Expr) -> Result<(), Vec<tame_lang::CheckError>> {
        Ok(())
    }
}
