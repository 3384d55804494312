//! CEL operators on values: equality, ordering, arithmetic, map keys.
//!
//! Helpers return `Result<_, String>`; the calling node attaches its span.

use std::cmp::Ordering;
use std::sync::Arc;

use tame_lang::{BinaryOp, Key, Value, ValueMap};

use crate::time;

/// `2^63` and `2^64` as doubles (exact).
const TWO_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_64: f64 = 18_446_744_073_709_551_616.0;

pub(crate) fn no_overload(op: &str, args: &[&Value]) -> String {
    let types: Vec<String> = args.iter().map(|v| v.type_of().name()).collect();
    format!("no such overload: `{op}` applied to ({})", types.join(", "))
}

/// Compares an int or uint with a double the way CEL's reference
/// implementation does: the integer converts to the nearest double first
/// (so `9223372036854775807 < 9223372036854775808.0` is false).
#[expect(clippy::cast_precision_loss, reason = "CEL compares through doubles")]
fn cmp_int_double(i: i64, d: f64) -> Option<Ordering> {
    (i as f64).partial_cmp(&d)
}

#[expect(clippy::cast_precision_loss, reason = "CEL compares through doubles")]
fn cmp_uint_double(u: u64, d: f64) -> Option<Ordering> {
    (u as f64).partial_cmp(&d)
}

fn cmp_int_uint(i: i64, u: u64) -> Ordering {
    match u64::try_from(i) {
        Ok(iu) => iu.cmp(&u),
        Err(_) => Ordering::Less,
    }
}

/// Numeric comparison across int, uint and double. `None` when a value is
/// not a number; `Some(None)` when unordered (NaN).
pub(crate) fn num_cmp(a: &Value, b: &Value) -> Option<Option<Ordering>> {
    Some(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Uint(x), Value::Uint(y)) => Some(x.cmp(y)),
        (Value::Double(x), Value::Double(y)) => x.partial_cmp(y),
        (Value::Int(x), Value::Uint(y)) => Some(cmp_int_uint(*x, *y)),
        (Value::Uint(x), Value::Int(y)) => Some(cmp_int_uint(*y, *x).reverse()),
        (Value::Int(x), Value::Double(y)) => cmp_int_double(*x, *y),
        (Value::Double(x), Value::Int(y)) => cmp_int_double(*y, *x).map(Ordering::reverse),
        (Value::Uint(x), Value::Double(y)) => cmp_uint_double(*x, *y),
        (Value::Double(x), Value::Uint(y)) => cmp_uint_double(*y, *x).map(Ordering::reverse),
        _ => return None,
    })
}

/// CEL equality: heterogeneous values are unequal (never an error),
/// numbers compare across types, NaN equals nothing, maps are unordered.
pub fn equals(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::Timestamp(x), Value::Timestamp(y)) => x == y,
        (Value::Duration(x), Value::Duration(y)) => x == y,
        (Value::Type(x), Value::Type(y)) => x == y,
        (Value::Optional(x), Value::Optional(y)) => match (x, y) {
            (None, None) => true,
            (Some(a), Some(b)) => equals(a, b),
            _ => false,
        },
        (Value::List(x), Value::List(y)) => {
            Arc::ptr_eq(x, y) || (x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| equals(p, q)))
        }
        (Value::Map(x), Value::Map(y)) => {
            Arc::ptr_eq(x, y)
                || (x.len() == y.len()
                    && x.iter().all(|(k, v)| match map_get_key(y, k) {
                        Some(w) => equals(v, w),
                        None => false,
                    }))
        }
        _ => matches!(num_cmp(a, b), Some(Some(Ordering::Equal))),
    }
}

/// Ordering for `<`, `<=`, `>`, `>=`. `Ok(None)` means unordered (NaN):
/// every relation is false.
pub(crate) fn compare(a: &Value, b: &Value, op: BinaryOp) -> Result<Option<Ordering>, String> {
    if let Some(o) = num_cmp(a, b) {
        return Ok(o);
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(Some(x.cmp(y))),
        (Value::Bytes(x), Value::Bytes(y)) => Ok(Some(x.cmp(y))),
        (Value::Bool(x), Value::Bool(y)) => Ok(Some(x.cmp(y))),
        (Value::Timestamp(x), Value::Timestamp(y)) => Ok(Some(x.cmp(y))),
        (Value::Duration(x), Value::Duration(y)) => Ok(Some(x.cmp(y))),
        _ => Err(no_overload(op.symbol(), &[a, b])),
    }
}

pub(crate) fn relation(a: &Value, b: &Value, op: BinaryOp) -> Result<bool, String> {
    let ord = compare(a, b, op)?;
    Ok(match ord {
        None => false,
        Some(o) => match op {
            BinaryOp::Lt => o == Ordering::Less,
            BinaryOp::Le => o != Ordering::Greater,
            BinaryOp::Gt => o == Ordering::Greater,
            BinaryOp::Ge => o != Ordering::Less,
            _ => false,
        },
    })
}

const OVERFLOW: &str = "return error for overflow";

/// `+ - * / %` with CEL's overflow and zero-divisor errors.
pub(crate) fn arith(op: BinaryOp, a: &Value, b: &Value) -> Result<Value, String> {
    use BinaryOp::{Add, Div, Mul, Rem, Sub};
    let r = match (op, a, b) {
        (Add, Value::Int(x), Value::Int(y)) => x.checked_add(*y).map(Value::Int),
        (Sub, Value::Int(x), Value::Int(y)) => x.checked_sub(*y).map(Value::Int),
        (Mul, Value::Int(x), Value::Int(y)) => x.checked_mul(*y).map(Value::Int),
        (Div, Value::Int(x), Value::Int(y)) => {
            if *y == 0 {
                return Err("division by zero".into());
            }
            x.checked_div(*y).map(Value::Int)
        }
        (Rem, Value::Int(x), Value::Int(y)) => {
            if *y == 0 {
                return Err("modulus by zero".into());
            }
            x.checked_rem(*y).map(Value::Int)
        }
        (Add, Value::Uint(x), Value::Uint(y)) => x.checked_add(*y).map(Value::Uint),
        (Sub, Value::Uint(x), Value::Uint(y)) => x.checked_sub(*y).map(Value::Uint),
        (Mul, Value::Uint(x), Value::Uint(y)) => x.checked_mul(*y).map(Value::Uint),
        (Div, Value::Uint(x), Value::Uint(y)) => {
            if *y == 0 {
                return Err("division by zero".into());
            }
            x.checked_div(*y).map(Value::Uint)
        }
        (Rem, Value::Uint(x), Value::Uint(y)) => {
            if *y == 0 {
                return Err("modulus by zero".into());
            }
            x.checked_rem(*y).map(Value::Uint)
        }
        (Add, Value::Double(x), Value::Double(y)) => Some(Value::Double(x + y)),
        (Sub, Value::Double(x), Value::Double(y)) => Some(Value::Double(x - y)),
        (Mul, Value::Double(x), Value::Double(y)) => Some(Value::Double(x * y)),
        (Div, Value::Double(x), Value::Double(y)) => Some(Value::Double(x / y)),
        (Add, Value::String(x), Value::String(y)) => {
            let mut s = String::with_capacity(x.len() + y.len());
            s.push_str(x);
            s.push_str(y);
            Some(Value::String(Arc::from(s)))
        }
        (Add, Value::Bytes(x), Value::Bytes(y)) => {
            let mut v = Vec::with_capacity(x.len() + y.len());
            v.extend_from_slice(x);
            v.extend_from_slice(y);
            Some(Value::Bytes(Arc::from(v)))
        }
        (Add, Value::List(x), Value::List(y)) => {
            if y.is_empty() {
                Some(a.clone())
            } else if x.is_empty() {
                Some(b.clone())
            } else {
                Some(Value::List(x.iter().chain(y.iter()).cloned().collect()))
            }
        }
        (Add, Value::Timestamp(t), Value::Duration(d)) | (Add, Value::Duration(d), Value::Timestamp(t)) => {
            return time::ts_add(*t, d.as_nanos()).map(Value::Timestamp);
        }
        (Sub, Value::Timestamp(t), Value::Duration(d)) => {
            return time::ts_add(*t, -d.as_nanos()).map(Value::Timestamp);
        }
        (Sub, Value::Timestamp(x), Value::Timestamp(y)) => {
            return time::dur_from_nanos(x.as_nanosecond() - y.as_nanosecond()).map(Value::Duration);
        }
        (Add, Value::Duration(x), Value::Duration(y)) => {
            return time::dur_from_nanos(x.as_nanos() + y.as_nanos()).map(Value::Duration);
        }
        (Sub, Value::Duration(x), Value::Duration(y)) => {
            return time::dur_from_nanos(x.as_nanos() - y.as_nanos()).map(Value::Duration);
        }
        _ => return Err(no_overload(op.symbol(), &[a, b])),
    };
    r.ok_or_else(|| OVERFLOW.to_string())
}

pub(crate) fn negate(v: &Value) -> Result<Value, String> {
    match v {
        Value::Int(i) => i.checked_neg().map(Value::Int).ok_or_else(|| OVERFLOW.to_string()),
        Value::Double(d) => Ok(Value::Double(-d)),
        Value::Duration(d) => time::dur_from_nanos(-d.as_nanos()).map(Value::Duration),
        _ => Err(no_overload("-", &[v])),
    }
}

/// A value usable as a map key in a literal.
pub(crate) fn to_key(v: &Value) -> Result<Key, String> {
    match v {
        Value::Int(i) => Ok(Key::Int(*i)),
        Value::Uint(u) => Ok(Key::Uint(*u)),
        Value::Bool(b) => Ok(Key::Bool(*b)),
        Value::String(s) => Ok(Key::String(s.clone())),
        other => Err(format!("unsupported key type: {}", other.type_of().name())),
    }
}

pub(crate) fn key_to_value(k: &Key) -> Value {
    match k {
        Key::Int(i) => Value::Int(*i),
        Key::Uint(u) => Value::Uint(*u),
        Key::Bool(b) => Value::Bool(*b),
        Key::String(s) => Value::String(s.clone()),
    }
}

/// Looks up a key, trying the other numeric key kind (`1` finds `1u`).
pub(crate) fn map_get_key<'m>(m: &'m ValueMap, k: &Key) -> Option<&'m Value> {
    if let Some(v) = m.get(k) {
        return Some(v);
    }
    match k {
        Key::Int(i) => u64::try_from(*i).ok().and_then(|u| m.get(&Key::Uint(u))),
        Key::Uint(u) => i64::try_from(*u).ok().and_then(|i| m.get(&Key::Int(i))),
        _ => None,
    }
}

/// Looks up a value used as a key: numbers match across int, uint and
/// integral doubles. `None` when absent or not a possible key.
pub(crate) fn map_get<'m>(m: &'m ValueMap, k: &Value) -> Option<&'m Value> {
    match k {
        Value::Int(i) => map_get_key(m, &Key::Int(*i)),
        Value::Uint(u) => map_get_key(m, &Key::Uint(*u)),
        Value::Bool(b) => m.get(&Key::Bool(*b)),
        Value::String(s) => m.get(&Key::String(s.clone())),
        Value::Double(d) => {
            if d.fract() != 0.0 || !d.is_finite() {
                return None;
            }
            if *d >= 0.0 && *d < TWO_64 {
                #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "range checked")]
                let u = *d as u64;
                if let Some(v) = map_get_key(m, &Key::Uint(u)) {
                    return Some(v);
                }
            }
            if *d >= -TWO_63 && *d < TWO_63 {
                #[expect(clippy::cast_possible_truncation, reason = "range checked")]
                let i = *d as i64;
                return map_get_key(m, &Key::Int(i));
            }
            None
        }
        _ => None,
    }
}

/// Whether `m` holds `k` under any numeric spelling (for duplicate checks).
pub(crate) fn map_has_key(m: &ValueMap, k: &Key) -> bool {
    map_get_key(m, k).is_some()
}

/// A list index: int, uint, or a double with an integral value.
pub(crate) fn list_index(list: &[Value], idx: &Value) -> Result<Value, String> {
    let i: Option<i128> = match idx {
        Value::Int(i) => Some(i128::from(*i)),
        Value::Uint(u) => Some(i128::from(*u)),
        Value::Double(d) => {
            if d.fract() == 0.0 && d.is_finite() && d.abs() < TWO_64 {
                #[expect(clippy::cast_possible_truncation, reason = "integral and in range")]
                let i = *d as i128;
                Some(i)
            } else {
                return Err(format!("invalid_argument: index `{d}` is not an integer"));
            }
        }
        other => {
            return Err(format!(
                "invalid_argument: no such overload: list index with {}",
                other.type_of().name()
            ));
        }
    };
    let len = list.len();
    i.and_then(|i| usize::try_from(i).ok())
        .and_then(|i| list.get(i))
        .cloned()
        .ok_or_else(|| {
            format!(
                "invalid_argument: index out of range: {} (list size {len})",
                i.unwrap_or_default()
            )
        })
}

/// `x in list`.
pub(crate) fn in_list(x: &Value, list: &[Value]) -> bool {
    list.iter().any(|e| equals(x, e))
}
