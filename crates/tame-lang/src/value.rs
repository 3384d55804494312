//! Run-time values of the condition language (CEL's value model).
//!
//! Cheap to clone: every heap variant is reference counted, so reading
//! `args.path` out of a request clones an `Arc`, never the string.

use std::sync::Arc;

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;

/// A CEL value.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    String(Arc<str>),
    Bytes(Arc<[u8]>),
    List(Arc<[Value]>),
    Map(Arc<ValueMap>),
    Timestamp(jiff::Timestamp),
    Duration(jiff::SignedDuration),
    /// A type value, as returned by `type(x)` or named by `int`, `string`...
    Type(Type),
    /// A CEL optional (`optional.of(x)`, `optional.none()`, `m.?k`).
    Optional(Option<Arc<Value>>),
}

/// Map keys: CEL allows `int`, `uint`, `bool` and `string` keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Int(i64),
    Uint(u64),
    Bool(bool),
    String(Arc<str>),
}

/// An insertion-ordered map with a fast hasher; lookups are by [`Key`].
pub type ValueMap = IndexMap<Key, Value, FxBuildHasher>;

/// Static types, as used by the checker and by `type(x)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// Unknown until run time.
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    List(Box<Type>),
    Map(Box<Type>, Box<Type>),
    Timestamp,
    Duration,
    /// The type of types.
    Type,
    /// The `session` root: a handle on the caller's session facts.
    Session,
    /// A CEL optional of the given type (`optional_type(int)`).
    Optional(Box<Type>),
    /// A type parameter in a generic signature (`list(A)`), by name.
    Param(&'static str),
}

impl Type {
    /// The type a CEL type name denotes (`int`, `google.protobuf.Timestamp`,
    /// ...): the inverse of [`Type::name`] for the types a name can stand for.
    pub fn from_name(name: &str) -> Option<Type> {
        Some(match name {
            "int" => Type::Int,
            "uint" => Type::Uint,
            "double" => Type::Double,
            "bool" => Type::Bool,
            "string" => Type::String,
            "bytes" => Type::Bytes,
            "list" => Type::List(Box::new(Type::Dyn)),
            "map" => Type::Map(Box::new(Type::Dyn), Box::new(Type::Dyn)),
            "null_type" => Type::Null,
            "type" => Type::Type,
            "optional_type" => Type::Optional(Box::new(Type::Dyn)),
            "google.protobuf.Timestamp" => Type::Timestamp,
            "google.protobuf.Duration" => Type::Duration,
            _ => return None,
        })
    }

    /// The CEL name of the type, as `type(x)` prints it.
    pub fn name(&self) -> String {
        match self {
            Type::Dyn => "dyn".into(),
            Type::Null => "null_type".into(),
            Type::Bool => "bool".into(),
            Type::Int => "int".into(),
            Type::Uint => "uint".into(),
            Type::Double => "double".into(),
            Type::String => "string".into(),
            Type::Bytes => "bytes".into(),
            Type::List(t) => format!("list({})", t.name()),
            Type::Map(k, v) => format!("map({}, {})", k.name(), v.name()),
            Type::Timestamp => "google.protobuf.Timestamp".into(),
            Type::Duration => "google.protobuf.Duration".into(),
            Type::Type => "type".into(),
            Type::Session => "session".into(),
            Type::Optional(t) => format!("optional_type({})", t.name()),
            Type::Param(p) => (*p).into(),
        }
    }
}

impl Value {
    /// The run-time type of the value (element types are `dyn`).
    pub fn type_of(&self) -> Type {
        match self {
            Value::Null => Type::Null,
            Value::Bool(_) => Type::Bool,
            Value::Int(_) => Type::Int,
            Value::Uint(_) => Type::Uint,
            Value::Double(_) => Type::Double,
            Value::String(_) => Type::String,
            Value::Bytes(_) => Type::Bytes,
            Value::List(_) => Type::List(Box::new(Type::Dyn)),
            Value::Map(_) => Type::Map(Box::new(Type::Dyn), Box::new(Type::Dyn)),
            Value::Timestamp(_) => Type::Timestamp,
            Value::Duration(_) => Type::Duration,
            Value::Type(_) => Type::Type,
            Value::Optional(_) => Type::Optional(Box::new(Type::Dyn)),
        }
    }

    pub fn string(s: &str) -> Value {
        Value::String(Arc::from(s))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::String(Arc::from(s))
    }
}

/// The signature of a host function registered by the embedding program.
/// Errors are messages; the evaluator attaches the call's span.
pub type HostFn = Arc<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;
