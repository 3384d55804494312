//! Property tests: compiling and evaluating random ASTs over random values
//! never panics, and folding constants never changes a result.

use std::sync::Arc;

use proptest::prelude::*;
use tame_lang::{BinaryOp, Comprehension, Expr, ExprKind, Key, Literal, MacroKind, Span, UnaryOp, Value, ValueMap};

use crate::{Activation, Env, NoFacts, compile, roots};

fn leaf_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        prop_oneof![Just(0i64), Just(1), Just(-1), Just(i64::MAX), Just(i64::MIN)].prop_map(Value::Int),
        any::<u64>().prop_map(Value::Uint),
        prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(0.5)].prop_map(Value::Double),
        "[a-z/.]{0,8}".prop_map(|s| Value::string(&s)),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(|b| Value::Bytes(Arc::from(b))),
        (-100_000_000_000i64..100_000_000_000)
            .prop_map(|s| { Value::Timestamp(jiff::Timestamp::from_second(s).unwrap_or(jiff::Timestamp::UNIX_EPOCH)) }),
        any::<i64>().prop_map(|n| Value::Duration(jiff::SignedDuration::from_nanos(n))),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf_value().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| Value::List(Arc::from(v))),
            prop::collection::vec(("[a-c]", inner), 0..4).prop_map(|kv| {
                let mut m = ValueMap::default();
                for (k, v) in kv {
                    m.insert(Key::from(k.as_str()), v);
                }
                Value::Map(Arc::new(m))
            }),
        ]
    })
}

fn e(kind: ExprKind) -> Expr {
    Expr::new(kind, Span::new(0, 1))
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        prop_oneof![any::<i64>(), -3i64..3].prop_map(Literal::Int),
        prop_oneof![any::<u64>(), 0u64..3].prop_map(Literal::Uint),
        prop_oneof![any::<f64>(), Just(f64::NAN), Just(1.0)].prop_map(Literal::Double),
        prop_oneof![
            "[a-z]{0,4}",
            Just("(".to_string()),
            Just("/home/*/**".to_string()),
            Just("10.0.0.0/8".to_string()),
            Just("1h".to_string()),
            Just("2009-02-13T23:31:30Z".to_string()),
            Just("UTC".to_string()),
            Just("https://a.io:8/x".to_string()),
        ]
        .prop_map(Literal::String),
        prop::collection::vec(any::<u8>(), 0..3).prop_map(Literal::Bytes),
    ]
}

const IDENTS: &[&str] = &[
    "args",
    "tool",
    "tool_args",
    "agent",
    "user",
    "metadata",
    "context",
    "now",
    "session",
    "x",
    "y",
    "nope",
    "int",
    "string",
    "a.b",
];

const FUNCS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "dyn",
    "type",
    "timestamp",
    "duration",
    "getHours",
    "getDayOfWeek",
    "getMilliseconds",
    "lower",
    "upper",
    "trim",
    "glob",
    "ip",
    "cidr",
    "is_ip",
    "in_cidr",
    "containsIP",
    "url",
    "count",
    "called",
    "nope",
];

fn binop() -> impl Strategy<Value = BinaryOp> {
    prop::sample::select(vec![
        BinaryOp::Or,
        BinaryOp::And,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::In,
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Rem,
    ])
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        literal().prop_map(|l| e(ExprKind::Literal(l))),
        prop::sample::select(IDENTS).prop_map(|i| e(ExprKind::Ident(i.to_string()))),
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        let field = prop::sample::select(vec!["a", "b", "path", "id", "calls", "labels", "c"]);
        prop_oneof![
            (inner.clone(), field, any::<bool>()).prop_map(|(o, f, test)| {
                e(ExprKind::Select {
                    operand: Box::new(o),
                    field: f.to_string(),
                    test,
                })
            }),
            (inner.clone(), inner.clone()).prop_map(|(o, i)| e(ExprKind::Index {
                operand: Box::new(o),
                index: Box::new(i)
            })),
            (
                prop::option::of(inner.clone()),
                prop::sample::select(FUNCS),
                prop::collection::vec(inner.clone(), 0..3)
            )
                .prop_map(|(t, f, args)| e(ExprKind::Call {
                    target: t.map(Box::new),
                    function: f.to_string(),
                    args
                })),
            (prop::sample::select(vec![UnaryOp::Not, UnaryOp::Neg]), inner.clone()).prop_map(|(op, o)| e(
                ExprKind::Unary {
                    op,
                    operand: Box::new(o)
                }
            )),
            (binop(), inner.clone(), inner.clone()).prop_map(|(op, l, r)| e(ExprKind::Binary {
                op,
                lhs: Box::new(l),
                rhs: Box::new(r)
            })),
            (inner.clone(), inner.clone(), inner.clone()).prop_map(|(c, t, o)| e(ExprKind::Ternary {
                cond: Box::new(c),
                then: Box::new(t),
                otherwise: Box::new(o)
            })),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| e(ExprKind::List(v))),
            prop::collection::vec((inner.clone(), inner.clone()), 0..3).prop_map(|v| e(ExprKind::Map(v))),
            (
                prop::sample::select(vec![
                    MacroKind::All,
                    MacroKind::Exists,
                    MacroKind::ExistsOne,
                    MacroKind::Map,
                    MacroKind::Filter
                ]),
                inner.clone(),
                prop::sample::select(vec!["x", "y", "v"]),
                prop::option::of(inner.clone()),
                prop::option::of(inner),
            )
                .prop_map(|(kind, range, var, predicate, transform)| {
                    e(ExprKind::Comprehension(Box::new(Comprehension {
                        kind,
                        range,
                        var: var.to_string(),
                        var2: None,
                        predicate,
                        transform,
                    })))
                }),
        ]
    })
}

fn envs() -> Vec<Env> {
    let mut strict = Env::policy();
    strict.declare("x", tame_lang::Type::Dyn);
    strict.declare("y", tame_lang::Type::Dyn);
    strict.declare("a.b", tame_lang::Type::Dyn);
    let lenient = strict.clone().with_lenient(true);
    vec![strict, lenient]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn eval_never_panics(ast in expr(), vals in prop::collection::vec(value(), roots::COUNT + 3)) {
        for env in envs() {
            if let Ok(p) = compile(&ast, &env) {
                let act = Activation::new(&vals, &NoFacts, jiff::Timestamp::UNIX_EPOCH);
                let _ = p.eval(&act);
                let _ = p.eval_bool(&act);
                // Too few variables: an error, never a panic.
                let short = Activation::new(&vals[..2], &NoFacts, jiff::Timestamp::UNIX_EPOCH);
                let _ = p.eval(&short);
            }
        }
    }

    /// Folding is invisible: an expression over literals gives the same
    /// result whether its constant parts were folded at compile time or
    /// computed at run time (literals wrapped as variables defeat folding).
    #[test]
    fn folding_preserves_results(ast in expr()) {
        let mut lits = Vec::new();
        let hidden = hide_literals(&ast, &mut lits);
        let mut env = Env::new().with_lenient(true);
        for i in 0..lits.len() {
            env.declare(&format!("lit{i}"), tame_lang::Type::Dyn);
        }
        let (Ok(folded), Ok(plain)) = (compile(&ast, &env), compile(&hidden, &env)) else {
            return Ok(());
        };
        let act = Activation::new(&lits, &NoFacts, jiff::Timestamp::UNIX_EPOCH);
        match (folded.eval(&act), plain.eval(&act)) {
            (Ok(a), Ok(b)) => prop_assert!(same(&a, &b), "{a:?} vs {b:?}"),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "folded {a:?} vs plain {b:?}"),
        }
    }
}

/// Structural equality treating NaN as equal to NaN.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Double(x), Value::Double(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (Value::List(x), Value::List(y)) => x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same(p, q)),
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((k1, v1), (k2, v2))| k1 == k2 && same(v1, v2))
        }
        _ => crate::equals(a, b) && a.type_of() == b.type_of(),
    }
}

/// Replaces every literal outside constant-pattern positions with a
/// variable `litN` bound to the same value.
fn hide_literals(ast: &Expr, lits: &mut Vec<Value>) -> Expr {
    let kind = match &ast.kind {
        ExprKind::Literal(l) => {
            let v = match l {
                Literal::Null => Value::Null,
                Literal::Bool(b) => Value::Bool(*b),
                Literal::Int(i) => Value::Int(*i),
                Literal::Uint(u) => Value::Uint(*u),
                Literal::Double(d) => Value::Double(*d),
                Literal::String(s) => Value::string(s),
                Literal::Bytes(b) => Value::Bytes(Arc::from(b.as_slice())),
            };
            let name = format!("lit{}", lits.len());
            lits.push(v);
            ExprKind::Ident(name)
        }
        ExprKind::Ident(i) => ExprKind::Ident(i.clone()),
        ExprKind::Select { operand, field, test } => ExprKind::Select {
            operand: Box::new(hide_literals(operand, lits)),
            field: field.clone(),
            test: *test,
        },
        ExprKind::Index { operand, index } => ExprKind::Index {
            operand: Box::new(hide_literals(operand, lits)),
            index: Box::new(hide_literals(index, lits)),
        },
        ExprKind::OptIndex { operand, index } => ExprKind::OptIndex {
            operand: Box::new(hide_literals(operand, lits)),
            index: Box::new(hide_literals(index, lits)),
        },
        ExprKind::OptSelect { operand, field } => ExprKind::OptSelect {
            operand: Box::new(hide_literals(operand, lits)),
            field: field.clone(),
        },
        ExprKind::OptEntry(inner) => ExprKind::OptEntry(Box::new(hide_literals(inner, lits))),
        ExprKind::Call { target, function, args } => ExprKind::Call {
            target: target.as_ref().map(|t| Box::new(hide_literals(t, lits))),
            function: function.clone(),
            args: args.iter().map(|a| hide_literals(a, lits)).collect(),
        },
        ExprKind::Unary { op, operand } => ExprKind::Unary {
            op: *op,
            operand: Box::new(hide_literals(operand, lits)),
        },
        ExprKind::Binary { op, lhs, rhs } => ExprKind::Binary {
            op: *op,
            lhs: Box::new(hide_literals(lhs, lits)),
            rhs: Box::new(hide_literals(rhs, lits)),
        },
        ExprKind::Ternary { cond, then, otherwise } => ExprKind::Ternary {
            cond: Box::new(hide_literals(cond, lits)),
            then: Box::new(hide_literals(then, lits)),
            otherwise: Box::new(hide_literals(otherwise, lits)),
        },
        ExprKind::List(items) => ExprKind::List(items.iter().map(|i| hide_literals(i, lits)).collect()),
        ExprKind::Map(entries) => ExprKind::Map(
            entries
                .iter()
                .map(|(k, v)| (hide_literals(k, lits), hide_literals(v, lits)))
                .collect(),
        ),
        ExprKind::Comprehension(c) => ExprKind::Comprehension(Box::new(Comprehension {
            kind: c.kind,
            range: hide_literals(&c.range, lits),
            var: c.var.clone(),
            var2: c.var2.clone(),
            predicate: c.predicate.as_ref().map(|p| hide_literals(p, lits)),
            transform: c.transform.as_ref().map(|t| hide_literals(t, lits)),
        })),
    };
    Expr::new(kind, ast.span)
}
