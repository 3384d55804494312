//! Unit tests of the checker: names, functions, arity, types, macros.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use super::*;
use crate::parse;
use crate::value::Value;

fn ty(src: &str) -> Type {
    let r = Registry::builtins();
    let env = CheckEnv::policy(&r);
    match check(&parse(src).unwrap(), &env) {
        Ok(t) => t,
        Err(e) => panic!("`{src}`: {e:?}"),
    }
}

fn errs(src: &str) -> Vec<CheckError> {
    let r = Registry::builtins();
    let env = CheckEnv::policy(&r);
    match check(&parse(src).unwrap(), &env) {
        Ok(t) => panic!("`{src}` checked as `{}`", t.name()),
        Err(e) => e,
    }
}

fn err1(src: &str) -> CheckError {
    let mut e = errs(src);
    assert_eq!(e.len(), 1, "{e:?}");
    e.remove(0)
}

#[test]
fn policy_conditions_check_as_bool() {
    for src in [
        r#"args.path.startsWith("/etc/") or glob(args.path, "/root/**")"#,
        r#"session.count("send_email", duration("1h")) >= 20"#,
        r#"args.database == "production" and not args.query.matches("(?i)^\\s*select")"#,
        r#"session.called("read_secret") && tool == "send_email""#,
        "size(session.calls) > 100",
        "has_secret(args) || has_pii(tool_args)",
        r#"size(secrets(args)) > 0"#,
        r#"secrets(args).exists(s, s.kind == "aws_key")"#,
        r#"ip(args.addr).in_cidr("10.0.0.0/8") || in_cidr(args.addr, "192.168.0.0/16")"#,
        r#"url(args.to).host == "example.com""#,
        r#"lower(tool) == "x" && tool.upper().trim() == "X""#,
        "agent == null || user != null",
        r#"metadata.env in ["prod", "staging"]"#,
        r#"context["team"] == "ops""#,
        "now > timestamp('2026-01-01T00:00:00Z')",
        "now.getHours('Europe/Paris') < 6",
        "args.amount > 1000 && args.amount <= 2000.5",
        "args.items.all(i, i.price < 100)",
        "args.items.exists(i, i == 'x')",
        "size(args.items.filter(i, i > 1)) == 2",
        "args.tags.map(t, t + '!').exists_one(t, t == 'a!')",
        "has(args.path) && has(metadata.user)",
        "'session' in session.labels",
        "session.id.startsWith('s-')",
        "type(args.x) == string",
        "dyn(args.x) == 1",
        "int(args.n) + 1 == 2",
        "args.path.glob('/tmp/**')",
        "[1, 2, 3].all(x, x > 0)",
        "{'a': 1}.a == 1",
        "{'a': 1}['a'] == 1",
    ] {
        assert_eq!(ty(src), Type::Bool, "{src}");
    }
}

#[test]
fn result_types() {
    assert_eq!(ty("1 + 2"), Type::Int);
    assert_eq!(ty("1u * 2u"), Type::Uint);
    assert_eq!(ty("1.5 / 2.0"), Type::Double);
    assert_eq!(ty("'a' + 'b'"), Type::String);
    assert_eq!(ty("b'a' + b'b'"), Type::Bytes);
    assert_eq!(ty("[1] + [2]"), Type::List(Box::new(Type::Int)));
    assert_eq!(ty("[1, 'a']"), Type::List(Box::new(Type::Dyn)));
    assert_eq!(ty("{'a': 1}"), Type::Map(Box::new(Type::String), Box::new(Type::Int)));
    assert_eq!(ty("now - now"), Type::Duration);
    assert_eq!(ty("now + duration('1h')"), Type::Timestamp);
    assert_eq!(ty("args.x"), Type::Dyn);
    assert_eq!(ty("args.x + 1"), Type::Int);
    assert_eq!(ty("true ? 1 : 2"), Type::Int);
    assert_eq!(ty("true ? 1 : 'a'"), Type::Dyn);
    assert_eq!(ty("[1, 2].map(x, x * 2)"), Type::List(Box::new(Type::Int)));
    assert_eq!(ty("[1, 2].filter(x, x > 1)"), Type::List(Box::new(Type::Int)));
    assert_eq!(ty("{'a': 1}.map(k, k)"), Type::List(Box::new(Type::String)));
    assert_eq!(ty("size('abc')"), Type::Int);
    assert_eq!(
        ty("url('https://x')"),
        Type::Map(Box::new(Type::String), Box::new(Type::String))
    );
    assert_eq!(ty("type(1)"), Type::Type);
    assert_eq!(ty("google.protobuf.Timestamp"), Type::Type);
    assert_eq!(ty("[[1]][0]"), Type::List(Box::new(Type::Int)));
    assert_eq!(ty("session.labels"), Type::List(Box::new(Type::String)));
}

#[test]
fn unknown_roots_suggest_the_closest() {
    let e = err1("argz.path == 'x'");
    assert_eq!(e.message, "unknown identifier `argz`");
    assert_eq!(e.span, Span::new(0, 4));
    assert_eq!(e.help.as_deref(), Some("did you mean `args`?"));
    let e = err1("zzzzzz");
    assert!(e.help.unwrap().contains("available roots: tool, args"));
    // Macro variables are in scope only inside their macro.
    let e = err1("args.l.all(x, x > 0) && x");
    assert_eq!(e.message, "unknown identifier `x`");
}

#[test]
fn unknown_functions_suggest_the_closest() {
    let e = err1("args.path.startswith('/etc')");
    assert_eq!(e.message, "unknown function `startswith`");
    assert_eq!(e.help.as_deref(), Some("did you mean `startsWith`?"));
    let e = err1("sise(args)");
    assert_eq!(e.help.as_deref(), Some("did you mean `size`?"));
    let e = err1("startsWith(tool, 'a')");
    assert!(e.help.unwrap().contains("is a method"));
    let e = err1("tool.glob2('a')");
    assert_eq!(e.message, "unknown function `glob2`");
}

#[test]
fn wrong_arity() {
    let e = err1("size(tool, tool)");
    assert_eq!(e.message, "`size` takes 1 argument, not 2");
    assert!(e.help.unwrap().contains("size(string) -> int"));
    let e = err1("session.count()");
    assert_eq!(e.message, "`count` takes 1 or 2 arguments, not 0");
}

#[test]
fn statically_wrong_types() {
    assert_eq!(err1("'a' + 1").message, "no `+` for `string` and `int`");
    assert_eq!(
        err1("size(1) == 1").message,
        "no overload of `size` matches `size(int)`"
    );
    assert_eq!(err1("!'x'").message, "`!` needs a bool, not `string`");
    assert_eq!(err1("-'x' == 1").message, "cannot negate a value of type `string`");
    assert_eq!(err1("-1u == 1u").message, "cannot negate a value of type `uint`");
    assert_eq!(err1("1 && true").message, "`&&` needs bool operands, not `int`");
    assert_eq!(err1("tool == 1").message, "cannot compare `string` with `int`");
    assert_eq!(err1("tool < 1").message, "cannot order `string` and `int` with `<`");
    assert_eq!(
        err1("1 in tool").message,
        "`in` needs a list or map on the right, not `string`"
    );
    assert_eq!(err1("1 + 1.0 == 2.0").message, "no `+` for `int` and `double`");
    assert_eq!(err1("1.5 % 2.0 == 0.0").message, "no `%` for `double` and `double`");
    assert_eq!(
        err1("tool.x == 1").message,
        "cannot select field `x` of a value of type `string`"
    );
    assert_eq!(err1("tool[0] == 'a'").message, "cannot index a value of type `string`");
    assert_eq!(
        err1("[1]['a'] == 1").message,
        "a list index must be an int, not `string`"
    );
    assert_eq!(
        err1("{1.5: 1}.size() == 1").message,
        "map keys must be int, uint, bool or string, not `double`"
    );
    assert_eq!(
        err1("tool.all(x, x)").message,
        "`all` needs a list or map, not `string`"
    );
    assert_eq!(
        err1("[1].all(x, x + 1)").message,
        "the predicate of `all` must be a bool, not `int`"
    );
    assert_eq!(
        err1("1 ? 2 : 3").message,
        "the condition of `? :` must be a bool, not `int`"
    );
    assert_eq!(
        err1("session.count(1) > 0").message,
        "no overload of `count` matches `session.count(int)`"
    );
    let e = err1("session.cals > 1");
    assert_eq!(e.message, "`session` has no field `cals`");
    assert_eq!(e.help.as_deref(), Some("did you mean `session.calls`?"));
    // Numbers compare across types; dyn is compatible with everything.
    assert_eq!(ty("1 == 1.0 && 1u < 2"), Type::Bool);
    assert_eq!(ty("args.x + 'a' == args.y"), Type::Bool);
}

#[test]
fn all_errors_are_collected() {
    let e = errs("argz.x == 1 && sise(tool) == 1 && 'a' + 1 == 'b'");
    let msgs: Vec<&str> = e.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "unknown identifier `argz`",
            "unknown function `sise`",
            "no `+` for `string` and `int`"
        ]
    );
}

#[test]
fn host_functions_are_checked_like_builtins() {
    let mut r = Registry::builtins();
    r.register_host(
        "risk_score",
        vec![Type::String],
        Type::Int,
        Arc::new(|_: &[Value]| Ok(Value::Int(1))),
    )
    .unwrap();
    let env = CheckEnv::policy(&r);
    let ok = check(&parse("risk_score(tool) > 5").unwrap(), &env);
    assert_eq!(ok, Ok(Type::Bool));
    let bad = check(&parse("risk_score(1) > 5").unwrap(), &env).unwrap_err();
    assert_eq!(bad[0].message, "no overload of `risk_score` matches `risk_score(int)`");
    assert_eq!(bad[0].help.as_deref(), Some("expected `risk_score(string) -> int`"));
}

#[test]
fn custom_environments() {
    let r = Registry::builtins();
    let env = CheckEnv::new(&r).with("x", Type::Int).with("a.b.c", Type::String);
    assert_eq!(check(&parse("x + 1").unwrap(), &env), Ok(Type::Int));
    assert_eq!(check(&parse("a.b.c + 'd'").unwrap(), &env), Ok(Type::String));
    assert_eq!(check(&parse("size(a.b.c)").unwrap(), &env), Ok(Type::Int));
    assert!(check(&parse("tool").unwrap(), &env).is_err());
    // An empty registry knows no functions.
    let empty = Registry::new();
    let env = CheckEnv::new(&empty);
    assert!(check(&parse("size('a')").unwrap(), &env).is_err());
}

#[test]
fn check_error_renders_with_a_caret() {
    let src = "args.path.startswith('/etc')";
    let e = err1(src);
    let out = e.render("policies.yml", src, 0);
    assert!(out.contains("unknown function `startswith`"), "{out}");
    assert!(out.contains("policies.yml:1:1"), "{out}");
    assert!(out.contains("did you mean `startsWith`?"), "{out}");
}

#[test]
fn unknown_function_errors_point_at_the_name() {
    let e = err1("args.path.startswith('/etc')");
    assert_eq!(e.span, Span::new(10, 20));
    let e = err1("sise(args)");
    assert_eq!(e.span, Span::new(0, 4));
}

#[test]
fn network_and_string_aliases_check() {
    for src in [
        "cidr('10.0.0.0/8').containsIP(args.ip)",
        "containsIP(cidr('10.0.0.0/8'), ip(args.ip))",
        "isIP(args.ip) && args.ip.is_ip()",
        "tool.lowerAscii() == lowerAscii(tool.upperAscii())",
    ] {
        assert_eq!(ty(src), Type::Bool, "{src}");
    }
}

#[test]
fn deep_trees_built_by_hand_are_refused_not_walked() {
    let r = Registry::builtins();
    let env = CheckEnv::policy(&r);
    let mut e = Expr::new(ExprKind::Literal(Literal::Bool(true)), Span::default());
    for _ in 0..10_000 {
        e = Expr::new(
            ExprKind::Unary {
                op: UnaryOp::Not,
                operand: Box::new(e),
            },
            Span::default(),
        );
    }
    let errs = check(&e, &env).unwrap_err();
    assert!(errs[0].message.contains("nests too deeply"));
    assert!(e.to_string().starts_with("<expression nested deeper than"));
    // Take it apart without recursion.
    let mut stack = vec![e];
    while let Some(mut x) = stack.pop() {
        x.take_children(&mut stack);
    }
}

#[test]
fn macros_with_the_wrong_shape_explain_themselves() {
    let e = err1("args.l.all(x)");
    assert_eq!(
        e.message,
        "`all` is a macro and takes one or two variables and a predicate: `list.all(x, x > 0)`, \
         `list.all(i, x, x > i)`"
    );
    assert_eq!(e.span, Span::new(7, 10));
    let e = err1("has(args.a, args.b)");
    assert!(e.message.starts_with("`has` is a macro and takes one field selection"));
}

#[test]
fn strings_extension_types() {
    assert_eq!(ty("'a,b'.split(',')"), Type::List(Box::new(Type::String)));
    assert_eq!(ty("'abc'.charAt(1) + 'x'.substring(0, 1)"), Type::String);
    assert_eq!(ty("'abc'.indexOf('b', 1) + 'abc'.lastIndexOf('b')"), Type::Int);
    assert_eq!(
        ty("['a'].join('-') + '%d'.format([1]) + strings.quote('x')"),
        Type::String
    );
    assert_eq!(ty("'a'.replace('a', 'b', 1).reverse()"), Type::String);
    assert!(err1("'abc'.charAt('1')").message.contains("no overload of `charAt`"));
    assert!(err1("[1].join()").message.contains("no overload of `join`"));
    assert!(err1("strings.nope('x')").message.contains("unknown"));
}

#[test]
fn optional_types() {
    let opt = |t: Type| Type::Optional(Box::new(t));
    assert_eq!(ty("optional.of(1)"), opt(Type::Int));
    assert_eq!(ty("optional.of(1).value() + 1"), Type::Int);
    assert_eq!(ty("optional.of('a').orValue('b')"), Type::String);
    assert_eq!(ty("args.?path"), opt(Type::Dyn));
    assert_eq!(ty("{'a': 1}.?a"), opt(Type::Int));
    assert_eq!(ty("{'a': {'b': 1}}.?a.b"), opt(Type::Int));
    assert_eq!(ty("[1, 2][?0]"), opt(Type::Int));
    assert_eq!(ty("[?optional.of(1), 2]"), Type::List(Box::new(Type::Int)));
    assert_eq!(ty("optional.none().or(optional.of(2)).hasValue()"), Type::Bool);
    assert_eq!(ty("type(optional.none()) == optional_type"), Type::Bool);
    assert_eq!(ty("optional.of(2).optMap(x, x * 2)"), opt(Type::Int));
    assert!(err1("[?1]").message.contains("an optional element must be an optional"));
    assert!(
        err1("{?'k': 1}")
            .message
            .contains("an optional element must be an optional")
    );
    assert!(
        err1("optional.of(1).orValue('a')")
            .message
            .contains("no overload of `orValue`")
    );
    assert!(err1("optional.of(1) + 1").message.contains("no `+`"));
    assert!(err1("1.optMap(x, x)").message.contains("needs an optional"));
}

#[test]
fn two_variable_comprehension_types() {
    assert_eq!(ty("[1, 2].all(i, v, i < v)"), Type::Bool);
    assert_eq!(
        ty("['a'].transformList(i, v, v + string(i))"),
        Type::List(Box::new(Type::String))
    );
    assert_eq!(
        ty("['a'].transformMap(i, v, i)"),
        Type::Map(Box::new(Type::Int), Box::new(Type::Int))
    );
    assert_eq!(
        ty("{'a': 1}.transformMap(k, v, v > 0, v * 2)"),
        Type::Map(Box::new(Type::String), Box::new(Type::Int))
    );
    assert_eq!(
        ty("{'a': 1}.transformMapEntry(k, v, {v: k})"),
        Type::Map(Box::new(Type::Int), Box::new(Type::String))
    );
    // The index of a list is an int; the variables are scoped to the macro.
    assert!(err1("['a'].all(i, v, i + v == '')").message.contains("no `+`"));
    assert!(
        err1("[1].all(i, v, true) && i == 0")
            .message
            .contains("unknown identifier `i`")
    );
    assert!(
        err1("[1].transformList(i, v, i, v)")
            .message
            .contains("filter of `transformList` must be a bool")
    );
    assert!(err1("[1].transformMapEntry(i, v, v)").message.contains("must be a map"));
}
