//! Unit tests of the parser: literals, escapes, precedence, macros, errors, limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;

fn p(src: &str) -> String {
    match parse(src) {
        Ok(e) => e.to_string(),
        Err(e) => panic!("`{src}` failed: {e} at {:?}", e.span),
    }
}

fn lit(src: &str) -> Literal {
    match parse(src).map(|e| e.kind) {
        Ok(ExprKind::Literal(l)) => l,
        other => panic!("`{src}` is not a literal: {other:?}"),
    }
}

fn err(src: &str) -> ParseError {
    match parse(src) {
        Ok(e) => panic!("`{src}` parsed as `{e}`"),
        Err(e) => e,
    }
}

#[test]
fn integer_literals() {
    assert_eq!(lit("0"), Literal::Int(0));
    assert_eq!(lit("42"), Literal::Int(42));
    assert_eq!(lit("0x1F"), Literal::Int(31));
    assert_eq!(lit("0XfF"), Literal::Int(255));
    assert_eq!(lit("-7"), Literal::Int(-7));
    assert_eq!(lit("- 7"), Literal::Int(-7));
    assert_eq!(lit("-0x10"), Literal::Int(-16));
    assert_eq!(lit("9223372036854775807"), Literal::Int(i64::MAX));
    assert_eq!(lit("-9223372036854775808"), Literal::Int(i64::MIN));
    assert!(err("9223372036854775808").message.contains("out of range"));
    assert!(err("-9223372036854775809").message.contains("out of range"));
    assert!(err("99999999999999999999999").message.contains("out of range"));
}

#[test]
fn uint_literals() {
    assert_eq!(lit("1u"), Literal::Uint(1));
    assert_eq!(lit("1U"), Literal::Uint(1));
    assert_eq!(lit("0x1u"), Literal::Uint(1));
    assert_eq!(lit("18446744073709551615u"), Literal::Uint(u64::MAX));
    assert!(err("18446744073709551616u").message.contains("uint literal"));
    // The sign never folds into a uint: `-1u` is a negation the checker rejects.
    assert_eq!(p("-1u"), "-(1u)");
}

#[test]
fn double_literals() {
    assert_eq!(lit("1.5"), Literal::Double(1.5));
    assert_eq!(lit(".5"), Literal::Double(0.5));
    assert_eq!(lit("1e3"), Literal::Double(1000.0));
    assert_eq!(lit("1.5E-3"), Literal::Double(0.0015));
    assert_eq!(lit("2e+2"), Literal::Double(200.0));
    assert_eq!(lit("-2.5"), Literal::Double(-2.5));
    assert_eq!(lit("-0.0"), Literal::Double(-0.0));
    assert!(err("1e999").message.contains("out of range"));
    // `1.` is not a double; `1.e5` selects field `e5` of an int.
    assert_eq!(p("1.e5"), "(1).e5");
}

#[test]
fn other_literals() {
    assert_eq!(lit("null"), Literal::Null);
    assert_eq!(lit("true"), Literal::Bool(true));
    assert_eq!(lit("false"), Literal::Bool(false));
    assert_eq!(p("nullable"), "nullable");
    assert_eq!(p("trueish"), "trueish");
}

#[test]
fn string_forms() {
    let s = |x: &str| Literal::String(x.to_owned());
    assert_eq!(lit(r#""abc""#), s("abc"));
    assert_eq!(lit("'abc'"), s("abc"));
    assert_eq!(lit(r#""it's""#), s("it's"));
    assert_eq!(lit("'say \"hi\"'"), s("say \"hi\""));
    assert_eq!(lit("\"\"\"a\n\"b\" \"\"\""), s("a\n\"b\" "));
    // The first `"""` closes, as in CEL.
    assert!(parse("\"\"\"a\"\"\"\"").is_err());
    assert_eq!(lit("'''x''y'''"), s("x''y"));
    assert_eq!(lit(r#"r"a\nb""#), s("a\\nb"));
    assert_eq!(lit(r"R'\d+'"), s("\\d+"));
    assert_eq!(lit("r'''a\\'''"), s("a\\"));
    assert_eq!(lit(r#""""""""#), s(""));
    assert!(parse("\"a\nb\"").is_err(), "single-quoted strings cannot span lines");
}

#[test]
fn string_escapes() {
    let s = |x: &str| Literal::String(x.to_owned());
    assert_eq!(lit(r#""\n\t\r\"\'\\\?\`""#), s("\n\t\r\"'\\?`"));
    assert_eq!(lit(r#""\a\b\f\v""#), s("\u{7}\u{8}\u{c}\u{b}"));
    assert_eq!(lit(r#""\101\x41\X41\u0041\U00000041""#), s("AAAAA"));
    assert_eq!(lit(r#""\U0001F600""#), s("😀"));
    assert_eq!(lit(r#""\377""#), s("\u{ff}"));
    assert_eq!(lit(r#""\xff""#), s("\u{ff}"));
    assert_eq!(lit(r#""é""#), s("é"));
    let e = err(r#""ab\qc""#);
    assert!(e.message.contains("invalid escape `\\q`"), "{e}");
    assert_eq!(e.span, Span::new(3, 5));
    assert!(err(r#""\uD800""#).message.contains("not a valid unicode"));
    assert!(err(r#""\U00110000""#).message.contains("not a valid unicode"));
    assert!(err(r#""\x4""#).message.contains("needs 2 hex digits"));
    assert!(err(r#""\12""#).message.contains("needs 3 octal digits"));
}

#[test]
fn bytes_literals() {
    let b = |x: &[u8]| Literal::Bytes(x.to_vec());
    assert_eq!(lit(r#"b"abc""#), b(b"abc"));
    assert_eq!(lit(r"B'\xff\000\377'"), b(&[0xff, 0, 0xff]));
    assert_eq!(lit(r#"b"\u00ff""#), b("ÿ".as_bytes()));
    assert_eq!(lit(r#"b"ÿ""#), b(&[0xc3, 0xbf]));
    assert_eq!(lit(r#"br"\x""#), b(b"\\x"));
    assert_eq!(lit(r#"rb"\x""#), b(b"\\x"));
    assert_eq!(lit("b'''a\nb'''"), b(b"a\nb"));
    // `b` and `r` alone are names.
    assert_eq!(p("b + r"), "b + r");
}

#[test]
fn precedence() {
    assert_eq!(p("a || b && c"), "a || (b && c)");
    assert_eq!(p("a && b || c"), "(a && b) || c");
    assert_eq!(p("a == b && c"), "(a == b) && c");
    assert_eq!(p("1 + 2 * 3"), "1 + (2 * 3)");
    assert_eq!(p("1 - 2 - 3"), "(1 - 2) - 3");
    assert_eq!(p("8 / 4 % 3 * 2"), "((8 / 4) % 3) * 2");
    assert_eq!(p("a < b == c"), "(a < b) == c");
    assert_eq!(p("x in y && z"), "(x in y) && z");
    assert_eq!(p("a + 1 in b"), "(a + 1) in b");
    assert_eq!(p("-x.y"), "-x.y");
    assert!(matches!(
        parse("-x.y").map(|e| e.kind),
        Ok(ExprKind::Unary { op: UnaryOp::Neg, .. })
    ));
    assert_eq!(p("!a == b"), "(!a) == b");
    assert_eq!(p("!!a"), "!!a");
    assert_eq!(p("--a"), "--a");
    assert_eq!(p("--1"), "-(-1)");
    assert_eq!(p("1 - -1"), "1 - -1");
    assert_eq!(p("1-1"), "1 - 1");
    assert_eq!(p("a.b[c].d(e)"), "a.b[c].d(e)");
    assert_eq!(p("(1 + 2) * 3"), "(1 + 2) * 3");
}

#[test]
fn ternary_is_right_associative() {
    assert_eq!(p("a ? b : c ? d : e"), "a ? b : (c ? d : e)");
    assert_eq!(p("a || b ? c + 1 : d"), "(a || b) ? (c + 1) : d");
    assert!(
        parse("a ? b ? c : d : e").is_err(),
        "the middle is not a ternary in CEL"
    );
    assert_eq!(p("a ? (b ? c : d) : e"), "a ? (b ? c : d) : e");
}

#[test]
fn word_operators() {
    assert_eq!(p("a and b or not c"), "(a && b) || (!c)");
    assert_eq!(parse("a and b"), parse("a && b"));
    assert_eq!(parse("not a"), parse("!a"));
    assert_eq!(p("android"), "android");
    assert_eq!(p("order or nothing"), "order || nothing");
    assert_eq!(p("notice and andy"), "notice && andy");
    assert_eq!(p("x.and_more"), "x.and_more");
    assert_eq!(p("not not a"), "!!a");
    assert_eq!(p("index in inventory"), "index in inventory");
}

#[test]
fn collections_and_calls() {
    assert_eq!(p("[]"), "[]");
    assert_eq!(p("[1, 2,]"), "[1, 2]");
    assert_eq!(p("{}"), "{}");
    assert_eq!(p("{'a': 1, 2: [x],}"), "{\"a\": 1, 2: [x]}");
    assert_eq!(p("size(x)"), "size(x)");
    assert_eq!(p("f()"), "f()");
    assert_eq!(p("x.startsWith('a')"), "x.startsWith(\"a\")");
    assert_eq!(p(".x.y"), "x.y");
    assert_eq!(p("a . b"), "a.b");
    assert_eq!(p("google.protobuf.Duration"), "google.protobuf.Duration");
    assert_eq!(p("x // comment\n  + 1"), "x + 1");
}

#[test]
fn macros_expand() {
    let e = parse("args.items.all(i, i > 0)").unwrap();
    let ExprKind::Comprehension(c) = &e.kind else {
        panic!("{e:?}")
    };
    assert_eq!((c.kind, c.var.as_str()), (MacroKind::All, "i"));
    assert_eq!(c.range.to_string(), "args.items");
    assert_eq!(c.predicate.as_ref().map(ToString::to_string), Some("i > 0".into()));
    assert!(c.transform.is_none());

    let e = parse("l.map(x, x * 2)").unwrap();
    let ExprKind::Comprehension(c) = &e.kind else {
        panic!("{e:?}")
    };
    assert_eq!(c.kind, MacroKind::Map);
    assert!(c.predicate.is_none());
    assert_eq!(c.transform.as_ref().map(ToString::to_string), Some("x * 2".into()));

    let e = parse("l.map(x, x > 1, x * 2)").unwrap();
    let ExprKind::Comprehension(c) = &e.kind else {
        panic!("{e:?}")
    };
    assert_eq!(c.predicate.as_ref().map(ToString::to_string), Some("x > 1".into()));

    for (src, kind) in [
        ("l.exists(x, x)", MacroKind::Exists),
        ("l.exists_one(x, x)", MacroKind::ExistsOne),
        ("l.filter(x, x)", MacroKind::Filter),
    ] {
        match parse(src).map(|e| e.kind) {
            Ok(ExprKind::Comprehension(c)) => assert_eq!(c.kind, kind),
            other => panic!("{src}: {other:?}"),
        }
    }
    // Other arities are plain calls.
    assert!(matches!(parse("l.all(x)").map(|e| e.kind), Ok(ExprKind::Call { .. })));
    let e = err("l.all(x.y, true)");
    assert!(e.message.contains("must be a variable name"), "{e}");
    assert_eq!(e.span, Span::new(6, 9));
}

#[test]
fn has_macro() {
    let e = parse("has(args.path)").unwrap();
    assert!(matches!(&e.kind, ExprKind::Select { field, test: true, .. } if field == "path"));
    assert_eq!(e.to_string(), "has(args.path)");
    let e = err("has(args)");
    assert!(e.message.contains("must be a field selection"));
    assert_eq!(e.span, Span::new(4, 8));
    assert!(matches!(parse("has(a, b)").map(|e| e.kind), Ok(ExprKind::Call { .. })));
}

#[test]
fn reserved_words_are_errors() {
    for w in ["if", "in", "let", "package", "and", "not", "while"] {
        let src = format!("{w} + 1");
        let e = err(&src);
        if w == "not" {
            continue; // `not + 1` is a syntax error, not a reserved-word one
        }
        assert!(e.message.contains("reserved"), "{w}: {e}");
    }
    assert_eq!(err("x + var").span, Span::new(4, 7));
    // Field names may be anything.
    assert_eq!(p("x.if"), "x.if");
}

#[test]
fn spans_cover_source() {
    let e = parse("a + bb").unwrap();
    assert_eq!(e.span, Span::new(0, 6));
    let ExprKind::Binary { rhs, .. } = &e.kind else {
        panic!()
    };
    assert_eq!(rhs.span, Span::new(4, 6));
    let e = parse("-5").unwrap();
    assert_eq!(e.span, Span::new(0, 2));
}

#[test]
fn syntax_errors_point_at_the_problem() {
    let e = err("a +");
    assert_eq!(e.message, "unexpected end of condition");
    assert_eq!(e.span, Span::new(3, 3));
    assert_eq!(e.label.as_deref(), Some("expected an expression"));
    let e = err("a b");
    assert_eq!(e.message, "unexpected `b`");
    assert_eq!(e.span, Span::new(2, 3));
    let e = err("(a");
    assert_eq!(e.message, "unexpected end of condition");
    let e = err("x == 'abc");
    assert!(e.help.is_some(), "{e:?}");
    let e = err("");
    assert_eq!(e.message, "unexpected end of condition");
    let e = err("Msg{a: 1}");
    assert_eq!(e.message, "unexpected `{`");
}

#[test]
fn limits_refuse_huge_and_deep_input() {
    let long = format!("'{}'", "a".repeat(MAX_SOURCE_LEN));
    assert!(err(&long).message.contains("too long"));
    let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(err(&deep[..60_000]).message.contains("nests too deeply"));
    let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    assert!(parse(&nest(MAX_NESTING)).is_ok());
    assert!(err(&nest(MAX_NESTING + 1)).message.contains("nests too deeply"));
    // Brackets inside strings don't count.
    assert!(parse(&format!("'{}'", "(".repeat(1000))).is_ok());
    let nots = format!("{}a", "!".repeat(60_000));
    assert!(err(&nots).message.contains("nests too deeply"));
    let negs = format!("{}a", "-".repeat(60_000));
    assert!(err(&negs).message.contains("nests too deeply"));
    let chain = vec!["a"; 15_000].join("||");
    assert!(err(&chain).message.contains("nests too deeply"));
    let members = format!("a{}", ".b".repeat(20_000));
    assert!(err(&members).message.contains("nests too deeply"));
    let ternaries = "a ? b : ".repeat(5_000) + "c";
    assert!(err(&ternaries).message.contains("nests too deeply"));
    let ok_chain = vec!["a"; 200].join(" || ");
    assert!(parse(&ok_chain).is_ok());
}

#[test]
fn limits_hold_on_a_small_stack() {
    let run = || {
        let inputs = [
            "(".repeat(100_000),
            "!".repeat(65_000),
            "-".repeat(65_000) + "1",
            "[".repeat(65_000),
            "{".repeat(30_000),
            "a.b(".repeat(10_000),
            vec!["1"; 30_000].join("+"),
            format!("{}1{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING)),
        ];
        inputs.iter().filter(|s| parse(s).is_ok()).count()
    };
    let handle = std::thread::Builder::new().stack_size(1 << 20).spawn(run).unwrap();
    assert_eq!(handle.join().unwrap(), 1);
}

#[test]
fn unclosed_brackets_get_a_hint() {
    let e = err("glob(args.path, '/root/**'");
    assert_eq!(e.help.as_deref(), Some("the `(` after `glob` is never closed: add `)`"));
    let e = err("[1, 2");
    assert_eq!(e.help.as_deref(), Some("the `[` is never closed: add `]`"));
    let e = err("a ? (b : c");
    assert!(e.help.is_some_and(|h| h.contains("`(` is never closed")));
}

#[test]
fn keywords_are_literals_only_alone() {
    assert_eq!(lit("true"), Literal::Bool(true));
    assert_eq!(p("true.x"), "true.x");
    assert!(err("true()").message.contains("reserved"));
    assert!(err(".null").message.contains("reserved"));
    assert_eq!(p("null == nullx"), "null == nullx");
}

#[test]
fn whitespace_and_comments() {
    assert_eq!(p("a\t&&\r\n\x0Cb // trailing"), "a && b");
    assert_eq!(p("// leading\na"), "a");
    assert!(parse("a = = b").is_err(), "operators cannot contain blanks");
    assert!(parse("a & & b").is_err());
}

#[test]
fn common_mistakes_get_hints() {
    let hint = |src: &str| err(src).help.unwrap_or_default();
    assert_eq!(hint("args.x = 1"), "compare with `==`; CEL has no assignment");
    assert_eq!(hint("a AND b"), "write `and` or `&&`");
    assert_eq!(hint("a OR b"), "write `or` or `||`");
    assert_eq!(hint("a & b"), "write `&&` or `and`");
    assert_eq!(hint("a | b"), "write `||` or `or`");
    assert_eq!(hint("a === b"), "CEL compares with `==` and `!=`");
    assert_eq!(err("a AND b").span, Span::new(2, 5));
}

#[test]
fn optional_syntax() {
    assert_eq!(p("m.?a.b"), "m.?a.b");
    assert_eq!(p("m[?'k'][?0]"), "m[?\"k\"][?0]");
    assert_eq!(p("[?a, b, ?c.?d]"), "[?a, b, ?c.?d]");
    assert_eq!(p("{?'k': v, 'j': w}"), "{?\"k\": v, \"j\": w}");
    assert_eq!(p("[?(a ? b : c)]"), "[?(a ? b : c)]");
    assert!(matches!(parse("m.?a").unwrap().kind, ExprKind::OptSelect { .. }));
    assert!(matches!(parse("m[?a]").unwrap().kind, ExprKind::OptIndex { .. }));
    // `?` is not an expression of its own, and `.?` takes no arguments.
    assert!(parse("?a").is_err());
    assert!(parse("m.?f()").is_err());
    assert!(parse("[a, ?]").is_err());
    // A chain of optional selections is not a nest of ternaries.
    let chain = format!("m{}", ".?a".repeat(MAX_NESTING + 5));
    assert!(parse(&chain).is_ok());
}

#[test]
fn two_variable_macros() {
    assert_eq!(p("l.all(i, v, v > i)"), "l.all(i, v, v > i)");
    assert_eq!(p("l.existsOne(i, v, v)"), "l.exists_one(i, v, v)");
    assert_eq!(
        p("m.transformMap(k, v, v != 0, v * 2)"),
        "m.transformMap(k, v, v != 0, v * 2)"
    );
    assert_eq!(p("m.transformList(k, v, k)"), "m.transformList(k, v, k)");
    assert_eq!(
        p("m.transformMapEntry(k, v, {v: k})"),
        "m.transformMapEntry(k, v, {v: k})"
    );
    assert_eq!(p("o.optMap(x, x + 1)"), "o.optMap(x, x + 1)");
    let Ok(Expr {
        kind: ExprKind::Comprehension(c),
        ..
    }) = parse("l.exists(i, v, true)")
    else {
        panic!("not a comprehension")
    };
    assert_eq!((c.var.as_str(), c.var2.as_deref()), ("i", Some("v")));
    assert!(err("l.all(x, x, true)").message.contains("must differ"));
    assert!(err("l.transformList(i, v.w, 1)").message.contains("second argument"));
    // Not macros with these arities: plain calls.
    assert!(matches!(
        parse("l.transformList(i, v)").unwrap().kind,
        ExprKind::Call { .. }
    ));
}
