//! Property tests: printing any AST and re-parsing it gives the same AST,
//! and the parser never panics, whatever the input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use proptest::prelude::*;
use tame_lang::{BinaryOp, Comprehension, Expr, ExprKind, Literal, MacroKind, Span, UnaryOp, parse};

fn e(kind: ExprKind) -> Expr {
    Expr::new(kind, Span::default())
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("x".to_owned()),
        Just("args".to_owned()),
        Just("android".to_owned()),
        Just("order".to_owned()),
        Just("nothing".to_owned()),
        Just("in_range".to_owned()),
        Just("_tmp1".to_owned()),
        "[a-z][a-z0-9_]{0,6}".prop_filter("not reserved", |s| !tame_lang::is_reserved(s)),
    ]
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => name(),
        1 => Just("content-type".to_owned()),
        1 => Just("foo.txt".to_owned()),
        1 => Just("in".to_owned()),
        1 => Just("/api/v1".to_owned()),
    ]
}

fn function() -> impl Strategy<Value = String> {
    name().prop_filter("not a macro", |n| {
        !matches!(n.as_str(), "all" | "exists" | "exists_one" | "map" | "filter" | "has")
    })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        any::<i64>().prop_map(Literal::Int),
        any::<u64>().prop_map(Literal::Uint),
        any::<f64>()
            .prop_filter("finite", |d| d.is_finite())
            .prop_map(Literal::Double),
        prop_oneof![Just(0.0), Just(-0.0), Just(1e300), Just(5e-324), Just(0.1)].prop_map(Literal::Double),
        any::<String>().prop_map(Literal::String),
        "[\\\\\"'`\\n\\r\\t a-z]{0,8}".prop_map(Literal::String),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Literal::Bytes),
    ]
}

fn binary_op() -> impl Strategy<Value = BinaryOp> {
    proptest::sample::select(vec![
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

/// `?x` (an optional list element or map key) when `optional`.
fn opt_entry(x: Expr, optional: bool) -> Expr {
    if optional {
        e(ExprKind::OptEntry(Box::new(x)))
    } else {
        x
    }
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        literal().prop_map(|l| e(ExprKind::Literal(l))),
        name().prop_map(|n| e(ExprKind::Ident(n)))
    ];
    leaf.prop_recursive(6, 64, 4, |inner| {
        let boxed = inner.clone().prop_map(Box::new);
        prop_oneof![
            (boxed.clone(), field(), 0..3u8).prop_map(|(operand, field, form)| e(match form {
                0 => ExprKind::Select {
                    operand,
                    field,
                    test: false,
                },
                1 => ExprKind::Select {
                    operand,
                    field,
                    test: true,
                },
                _ => ExprKind::OptSelect { operand, field },
            })),
            (boxed.clone(), boxed.clone(), any::<bool>()).prop_map(|(operand, index, optional)| e(if optional {
                ExprKind::OptIndex { operand, index }
            } else {
                ExprKind::Index { operand, index }
            })),
            (
                proptest::option::of(boxed.clone()),
                function(),
                proptest::collection::vec(inner.clone(), 0..3)
            )
                .prop_map(|(target, function, args)| e(ExprKind::Call { target, function, args })),
            (
                proptest::sample::select(vec![UnaryOp::Not, UnaryOp::Neg]),
                boxed.clone()
            )
                .prop_map(|(op, operand)| e(ExprKind::Unary { op, operand })),
            (binary_op(), boxed.clone(), boxed.clone()).prop_map(|(op, lhs, rhs)| e(ExprKind::Binary { op, lhs, rhs })),
            (boxed.clone(), boxed.clone(), boxed.clone()).prop_map(|(cond, then, otherwise)| e(ExprKind::Ternary {
                cond,
                then,
                otherwise
            })),
            proptest::collection::vec((inner.clone(), any::<bool>()), 0..4).prop_map(|items| e(ExprKind::List(
                items.into_iter().map(|(x, o)| opt_entry(x, o)).collect()
            ))),
            proptest::collection::vec((inner.clone(), any::<bool>(), inner.clone()), 0..3).prop_map(|m| e(
                ExprKind::Map(m.into_iter().map(|(k, o, v)| (opt_entry(k, o), v)).collect())
            )),
            (
                proptest::sample::select(vec![
                    MacroKind::All,
                    MacroKind::Exists,
                    MacroKind::ExistsOne,
                    MacroKind::Map,
                    MacroKind::Filter,
                    MacroKind::TransformList,
                    MacroKind::TransformMap,
                    MacroKind::TransformMapEntry,
                    MacroKind::OptMap,
                    MacroKind::OptFlatMap,
                ]),
                inner.clone(),
                name(),
                any::<bool>(),
                inner.clone(),
                proptest::option::of(inner.clone()),
            )
                .prop_map(|(kind, range, var, two, a, b)| {
                    let (predicate, transform) = match (kind, b) {
                        (MacroKind::OptMap | MacroKind::OptFlatMap, _) => (None, Some(a)),
                        (_, Some(t)) if kind.transforms() => (Some(a), Some(t)),
                        (_, None) if kind.transforms() => (None, Some(a)),
                        (_, _) => (Some(a), None),
                    };
                    let var2 = match kind {
                        MacroKind::TransformList | MacroKind::TransformMap | MacroKind::TransformMapEntry => true,
                        MacroKind::All | MacroKind::Exists | MacroKind::ExistsOne => two,
                        _ => false,
                    }
                    .then(|| format!("{var}2"));
                    e(ExprKind::Comprehension(Box::new(Comprehension {
                        kind,
                        range,
                        var,
                        var2,
                        predicate,
                        transform,
                    })))
                }),
        ]
    })
}

/// Characters and tokens of the language, to reach deep into the grammar.
fn cel_like() -> impl Strategy<Value = String> {
    let token = proptest::sample::select(vec![
        "a",
        "b.c",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        "?",
        ".",
        "!",
        "-",
        "+",
        "*",
        "/",
        "%",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "&&",
        "||",
        " and ",
        " or ",
        " not ",
        " in ",
        "1",
        "0x1f",
        "1u",
        "1.5",
        "1e3",
        "'s'",
        "\"\\n\"",
        "b'\\xff'",
        "r'\\d'",
        "'''t'''",
        "size(",
        ".all(x,",
        ".map(x,",
        "has(",
        ".?",
        "[?",
        ".all(i, v,",
        ".transformMap(k, v,",
        "true",
        "null",
        " ",
        "\\",
        "'",
        "\"",
        "`",
    ]);
    proptest::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn print_then_parse_is_identity(ast in expr()) {
        let printed = ast.to_string();
        let reparsed = parse(&printed);
        prop_assert!(reparsed.is_ok(), "`{}` does not parse: {:?}", printed, reparsed.err());
        let reparsed = reparsed.unwrap_or_else(|_| e(ExprKind::Literal(Literal::Null)));
        prop_assert_eq!(&reparsed, &ast, "printed as `{}`", printed);
        // Printing is stable.
        prop_assert_eq!(reparsed.to_string(), printed);
    }

    /// The formatter's printer (word operators, minimal parentheses,
    /// chains broken across lines) re-parses to the same tree too.
    #[test]
    fn pretty_then_parse_is_identity(ast in expr(), width in 10usize..120) {
        let printed = tame_lang::pretty(&ast);
        prop_assert_eq!(parse(&printed).ok(), Some(ast.clone()), "pretty printed as `{}`", printed);
        let lines = tame_lang::pretty_lines(&ast, 4, width).join("\n");
        prop_assert_eq!(parse(&lines).ok(), Some(ast.clone()), "broken as `{}`", lines);
        prop_assert_eq!(tame_lang::pretty(&parse(&printed).unwrap_or_else(|_| e(ExprKind::Literal(Literal::Null)))), printed);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text(s in any::<String>()) {
        let _ = parse(&s);
    }

    #[test]
    fn parse_never_panics_on_language_like_text(s in cel_like()) {
        if let Ok(ast) = parse(&s) {
            // What parses prints back to an equal tree.
            let printed = ast.to_string();
            prop_assert_eq!(parse(&printed).ok(), Some(ast), "printed as `{}`", printed);
        }
    }

    #[test]
    fn spans_stay_inside_the_source(s in cel_like()) {
        if let Err(err) = parse(&s) {
            prop_assert!(err.span.start <= err.span.end);
            prop_assert!(err.span.end as usize <= s.len());
            let (line, col) = tame_lang::line_col(&s, err.span.start as usize);
            prop_assert!(line >= 1 && col >= 1);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The checker never panics, and a tree that checks still checks
    /// (with the same type) after printing and re-parsing.
    #[test]
    fn check_never_panics_and_survives_printing(ast in expr()) {
        let registry = tame_lang::Registry::builtins();
        let mut env = tame_lang::CheckEnv::policy(&registry);
        for n in ["x", "android", "order", "nothing", "in_range", "_tmp1"] {
            env.declare(n, tame_lang::Type::Dyn);
        }
        let first = tame_lang::check(&ast, &env);
        let printed = ast.to_string();
        if let Ok(reparsed) = parse(&printed) {
            let again = tame_lang::check(&reparsed, &env);
            prop_assert_eq!(first.is_ok(), again.is_ok());
            if let (Ok(a), Ok(b)) = (first, again) {
                prop_assert_eq!(a, b);
            }
        }
    }
}
