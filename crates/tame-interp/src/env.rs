//! The compile-time environment: declared variables (name -> slot) and
//! host functions.

use std::fmt;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use tame_lang::{HostFn, Registry, Type};

/// Slots of the policy roots in an [`Env::policy`] environment. The engine
/// fills an activation's `vars` in this order.
pub mod roots {
    /// `tool`: the tool's name, a string.
    pub const TOOL: usize = 0;
    /// `args` (alias `tool_args`): the call's arguments, a map.
    pub const ARGS: usize = 1;
    /// `agent`: the agent id, a string or `null`.
    pub const AGENT: usize = 2;
    /// `user`: the user id, a string or `null`.
    pub const USER: usize = 3;
    /// `metadata` (alias `context`): a map.
    pub const METADATA: usize = 4;
    /// `session.id`: the session id, a string or `null`.
    pub const SESSION_ID: usize = 5;
    /// How many slots a policy activation has.
    pub const COUNT: usize = 6;
}

/// A declared variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarDecl {
    /// Its name, possibly qualified (`session.id`, `a.b.c`).
    pub name: String,
    pub ty: Type,
}

/// A host function registered by the embedding program.
#[derive(Clone)]
pub struct HostFunction {
    pub name: String,
    /// `Some(true)`: only `x.name(..)`; `Some(false)`: only `name(..)`;
    /// `None`: both.
    pub receiver: Option<bool>,
    /// Accepted argument count (a receiver counts as the first argument);
    /// `None` accepts any.
    pub arity: Option<usize>,
    pub func: HostFn,
}

impl fmt::Debug for HostFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFunction")
            .field("name", &self.name)
            .field("receiver", &self.receiver)
            .field("arity", &self.arity)
            .finish_non_exhaustive()
    }
}

/// What `compile` resolves names against.
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: Vec<VarDecl>,
    names: FxHashMap<String, usize>,
    host: FxHashMap<String, Vec<HostFunction>>,
    /// Functions the registry declares for the embedder to implement
    /// (`has_secret`, ...) that have no implementation yet.
    unimplemented: FxHashMap<String, ()>,
    session_root: bool,
    now_root: bool,
    lenient: bool,
    /// The policy's `lists:` (`lists.NAME`), folded into conditions.
    lists: Option<tame_lang::Value>,
}

impl Env {
    /// An empty environment: no variables, no roots, strict.
    pub fn new() -> Self {
        Self::default()
    }

    /// The policy environment: `tool`, `args` (alias `tool_args`), `agent`,
    /// `user`, `metadata` (alias `context`) and `session.id` in the slots of
    /// [`roots`], plus `now` and the `session` facts.
    pub fn policy() -> Self {
        let mut env = Self::new();
        env.declare("tool", Type::String);
        env.declare("args", Type::Map(Box::new(Type::String), Box::new(Type::Dyn)));
        env.declare("agent", Type::Dyn);
        env.declare("user", Type::Dyn);
        env.declare("metadata", Type::Map(Box::new(Type::String), Box::new(Type::Dyn)));
        env.declare("session.id", Type::Dyn);
        env.alias("tool_args", "args");
        env.alias("context", "metadata");
        env.session_root = true;
        env.now_root = true;
        env
    }

    /// Declares a variable and returns its slot. Declaring a name again
    /// returns the existing slot (and updates its type).
    pub fn declare(&mut self, name: &str, ty: Type) -> usize {
        if let Some(&slot) = self.names.get(name) {
            if let Some(decl) = self.vars.get_mut(slot) {
                decl.ty = ty;
            }
            return slot;
        }
        let slot = self.vars.len();
        self.vars.push(VarDecl {
            name: name.to_string(),
            ty,
        });
        self.names.insert(name.to_string(), slot);
        slot
    }

    /// Makes `alias` name the same slot as `target`. Returns false when
    /// `target` is not declared.
    pub fn alias(&mut self, alias: &str, target: &str) -> bool {
        match self.names.get(target) {
            Some(&slot) => {
                self.names.insert(alias.to_string(), slot);
                true
            }
            None => false,
        }
    }

    /// The slot of a declared name or alias.
    /// Sets the policy's named constants (`lists:`), a map of name to
    /// value, read by conditions as `lists.NAME` (a compile error names a
    /// list that is not there).
    pub fn set_lists(&mut self, lists: tame_lang::Value) {
        self.lists = Some(lists);
    }

    /// The policy's named constants, when it has any.
    pub fn lists(&self) -> Option<&tame_lang::Value> {
        self.lists.as_ref()
    }

    pub fn slot(&self, name: &str) -> Option<usize> {
        self.names.get(name).copied()
    }

    /// Declared variables, by slot.
    pub fn vars(&self) -> &[VarDecl] {
        &self.vars
    }

    /// Registers a host function, callable as `name(a, b)` or `a.name(b)`
    /// with `arity` arguments in all (receiver included; `None`: any).
    pub fn add_function(&mut self, name: &str, arity: Option<usize>, func: HostFn) {
        self.push_host(HostFunction {
            name: name.to_string(),
            receiver: None,
            arity,
            func,
        });
    }

    fn push_host(&mut self, f: HostFunction) {
        self.unimplemented.remove(&f.name);
        self.host.entry(f.name.clone()).or_default().push(f);
    }

    /// Takes the host functions of a tame-lang [`Registry`] (those with an
    /// implementation), each overload with its own arity and call form.
    /// Declared host slots without an implementation (`has_secret` before
    /// the engine supplies it) make calls to them a compile error.
    #[must_use]
    pub fn with_registry(mut self, registry: &Registry) -> Self {
        for name in registry.names() {
            for o in registry.overloads(name) {
                match &o.host {
                    Some(func) => self.push_host(HostFunction {
                        name: name.to_string(),
                        receiver: Some(o.receiver),
                        arity: Some(o.params.len()),
                        func: func.clone(),
                    }),
                    None if o.host_slot && !self.host.contains_key(name) => {
                        self.unimplemented.insert(name.to_string(), ());
                    }
                    None => {}
                }
            }
        }
        self
    }

    /// The host function for a call of `name` with `argc` arguments in
    /// all (receiver included).
    pub fn function(&self, name: &str, receiver: bool, argc: usize) -> Option<&HostFunction> {
        self.host
            .get(name)?
            .iter()
            .find(|f| f.receiver.is_none_or(|r| r == receiver) && f.arity.is_none_or(|n| n == argc))
    }

    /// Whether any host function is named `name`.
    pub(crate) fn has_function_named(&self, name: &str) -> bool {
        self.host.contains_key(name)
    }

    /// Whether `name` is declared for the embedder but not implemented.
    pub(crate) fn is_unimplemented(&self, name: &str) -> bool {
        self.unimplemented.contains_key(name)
    }

    /// Enables `session.calls`, `session.labels`, `session.count(..)`,
    /// `session.called(..)`.
    pub fn with_session(mut self, on: bool) -> Self {
        self.session_root = on;
        self
    }

    /// Enables the `now` root (the activation's timestamp).
    pub fn with_now(mut self, on: bool) -> Self {
        self.now_root = on;
        self
    }

    /// In lenient mode (CEL's unchecked evaluation) unknown names and
    /// functions, and invalid constant regexes, become run-time errors
    /// instead of compile errors. Off by default: policies want compile
    /// errors.
    pub fn with_lenient(mut self, on: bool) -> Self {
        self.lenient = on;
        self
    }

    pub(crate) fn session_root(&self) -> bool {
        self.session_root
    }

    pub(crate) fn now_root(&self) -> bool {
        self.now_root
    }

    pub(crate) fn lenient(&self) -> bool {
        self.lenient
    }
}

/// Wraps a closure as a [`HostFn`].
pub fn host_fn<F>(f: F) -> HostFn
where
    F: Fn(&[tame_lang::Value]) -> Result<tame_lang::Value, String> + Send + Sync + 'static,
{
    Arc::new(f)
}
