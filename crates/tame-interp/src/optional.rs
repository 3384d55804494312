//! CEL optionals: `optional.of`, `optional.none`, `optional.ofNonZeroValue`,
//! the optional selections `x.?f` and `x[?k]`, and selection through an
//! optional (`optional.of(m).f` is an optional too).

use std::sync::Arc;

use tame_lang::{Key, Value};

use crate::ops;

fn some(v: Value) -> Value {
    Value::Optional(Some(Arc::new(v)))
}

const NONE: Value = Value::Optional(None);

/// Whether a value is its type's zero value (what `ofNonZeroValue` drops).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Int(i) => *i == 0,
        Value::Uint(u) => *u == 0,
        Value::Double(d) => *d == 0.0,
        Value::String(s) => s.is_empty(),
        Value::Bytes(b) => b.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.is_empty(),
        Value::Duration(d) => d.is_zero(),
        Value::Timestamp(t) => *t == jiff::Timestamp::UNIX_EPOCH,
        Value::Optional(o) => o.is_none(),
        Value::Type(_) => false,
    }
}

/// `optional.ofNonZeroValue(v)`.
pub(crate) fn of_non_zero(v: &Value) -> Value {
    if is_zero(v) { NONE } else { some(v.clone()) }
}

/// `opt.value()`: an error when empty.
pub(crate) fn value(o: Option<&Value>) -> Result<Value, String> {
    o.cloned().ok_or_else(|| "optional.none() dereference".to_owned())
}

/// `base.?field`: an optional of the map's entry.
pub(crate) fn select(base: &Value, key: &Key) -> Result<Value, String> {
    match base {
        Value::Optional(None) => Ok(NONE),
        Value::Optional(Some(inner)) => select(inner, key),
        Value::Map(m) => Ok(ops::map_get_key(m, key).cloned().map_or(NONE, some)),
        other => Err(format!(
            "type '{}' does not support field selection",
            other.type_of().name()
        )),
    }
}

/// `base[?index]`: an optional of the map's entry or the list's item.
pub(crate) fn index(base: &Value, idx: &Value) -> Result<Value, String> {
    match base {
        Value::Optional(None) => Ok(NONE),
        Value::Optional(Some(inner)) => index(inner, idx),
        Value::Map(m) => Ok(ops::map_get(m, idx).cloned().map_or(NONE, some)),
        Value::List(l) => {
            let in_range = match idx {
                Value::Int(i) => usize::try_from(*i).is_ok_and(|i| i < l.len()),
                Value::Uint(u) => usize::try_from(*u).is_ok_and(|i| i < l.len()),
                Value::Double(d) => d.fract() == 0.0 && *d >= 0.0 && ops::list_index(l, idx).is_ok(),
                other => return Err(ops::no_overload("[?]", &[base, other])),
            };
            if in_range {
                ops::list_index(l, idx).map(some)
            } else {
                Ok(NONE)
            }
        }
        other => Err(ops::no_overload("[?]", &[other, idx])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_values() {
        for v in [
            Value::Null,
            Value::Bool(false),
            Value::Int(0),
            Value::Uint(0),
            Value::Double(0.0),
            Value::string(""),
            Value::List(Arc::from(Vec::new())),
            Value::Duration(jiff::SignedDuration::ZERO),
            Value::Timestamp(jiff::Timestamp::UNIX_EPOCH),
        ] {
            assert!(matches!(of_non_zero(&v), Value::Optional(None)), "{v:?}");
        }
        assert!(matches!(of_non_zero(&Value::Int(3)), Value::Optional(Some(_))));
        assert_eq!(value(None).unwrap_err(), "optional.none() dereference");
    }

    #[test]
    fn optional_index_never_fails_on_absence() {
        let list = Value::List(Arc::from(vec![Value::Int(7)]));
        assert!(matches!(index(&list, &Value::Int(0)), Ok(Value::Optional(Some(v))) if matches!(*v, Value::Int(7))));
        assert!(matches!(index(&list, &Value::Int(1)), Ok(Value::Optional(None))));
        assert!(matches!(index(&list, &Value::Int(-1)), Ok(Value::Optional(None))));
        assert!(index(&list, &Value::string("0")).is_err());
        assert!(select(&Value::Int(1), &Key::from("a")).is_err());
        assert!(matches!(select(&NONE, &Key::from("a")), Ok(Value::Optional(None))));
    }
}
