//! Unit tests of the evaluator's semantics, through tame-lang's parser.

use std::sync::Arc;

use jiff::SignedDuration;
use tame_lang::{Key, Type, Value, ValueMap};

use crate::{Activation, Env, NoFacts, SessionFacts, ToolPattern, compile, host_fn, roots};

fn eval_in(env: &Env, vars: &[Value], facts: &dyn SessionFacts, src: &str) -> Result<Value, String> {
    let ast = tame_lang::parse(src).map_err(|e| format!("parse: {e}"))?;
    let p = compile(&ast, env).map_err(|e| format!("compile: {e}"))?;
    let now = jiff::Timestamp::from_second(1_700_000_000).map_err(|e| e.to_string())?;
    p.eval(&Activation::new(vars, facts, now)).map_err(|e| e.message)
}

fn eval(src: &str) -> Result<Value, String> {
    eval_in(&Env::new(), &[], &NoFacts, src)
}

#[track_caller]
fn is_true(src: &str) {
    match eval(src) {
        Ok(Value::Bool(true)) => {}
        other => panic!("`{src}` should be true, got {other:?}"),
    }
}

#[track_caller]
fn is_false(src: &str) {
    match eval(src) {
        Ok(Value::Bool(false)) => {}
        other => panic!("`{src}` should be false, got {other:?}"),
    }
}

#[track_caller]
fn fails(src: &str, needle: &str) {
    match eval(src) {
        Err(m) if m.contains(needle) => {}
        other => panic!("`{src}` should fail with `{needle}`, got {other:?}"),
    }
}

fn map(entries: &[(&str, Value)]) -> Value {
    let mut m = ValueMap::default();
    for (k, v) in entries {
        m.insert(Key::from(*k), v.clone());
    }
    Value::Map(Arc::new(m))
}

#[test]
fn integer_arithmetic_errors() {
    is_true("40 + 2 == 42");
    is_true("-7 / 2 == -3 && -7 % 2 == -1");
    fails("9223372036854775807 + 1", "overflow");
    fails("-9223372036854775808 / -1", "overflow");
    fails("-(-9223372036854775808)", "overflow");
    fails("0u - 1u", "overflow");
    fails("1 / 0", "division by zero");
    fails("1u % 0u", "modulus by zero");
    fails("1 + 1u", "no such overload");
    fails("1.5 % 1.0", "no such overload");
    fails("-(1u)", "no such overload");
    assert!(matches!(eval("1.0 / 0.0"), Ok(Value::Double(d)) if d.is_infinite()));
}

#[test]
fn numbers_compare_across_types() {
    is_true("1 == 1u && 1 == 1.0 && 1u == 1.0");
    is_true("1u < 2.5 && -1 < 0u && 2 > 1.5");
    is_false("0.0/0.0 == 0.0/0.0");
    is_true("0.0/0.0 != 0.0/0.0");
    is_false("0.0/0.0 < 1.0 || 0.0/0.0 >= 1.0");
    is_false("1 == 'a'");
    is_true("1 != 'a'");
    is_false("[1] == ['1']");
    fails("'a' < 1", "no such overload");
    fails("null < null", "no such overload");
}

#[test]
fn strings_and_bytes() {
    is_true("size('πέντε') == 5 && 'πέντε'.size() == 5");
    is_true("'foobar'.startsWith('foo') && 'foobar'.endsWith('bar') && 'foobar'.contains('oba')");
    is_true("'ab' + 'cd' == 'abcd'");
    is_true("b'ab' + b'cd' == b'abcd' && size(b'abc') == 3");
    is_true("'grey'.matches('gr(a|e)y') && matches('abc', '^a')");
    is_false("'grey'.matches('^r')");
    is_true("'a' < 'b' && b'a' < b'b'");
    fails("'x'.startsWith(1)", "no such overload");
}

#[test]
fn lists() {
    is_true("[1, 2] + [3] == [1, 2, 3]");
    is_true("[7, 8, 9][1] == 8 && [7, 8, 9][1u] == 8 && [7, 8, 9][dyn(2.0)] == 9");
    fails("[1, 2][2]", "index out of range");
    fails("[1, 2][-1]", "index out of range");
    fails("[1, 2][dyn(0.5)]", "not an integer");
    fails("[1, 2]['a']", "no such overload");
    is_true("2 in [1, 2] && 2.0 in [1, 2] && !(3 in [1, 2])");
    is_false("[1, 2] == [2, 1]");
}

#[test]
fn maps() {
    is_true("{1: 'a', 2u: 'b'}[2] == 'b' && {1: 'a'}[1u] == 'a' && {1: 'a'}[1.0] == 'a'");
    is_true("{'a': 1, 'b': 2} == {'b': 2, 'a': 1}");
    is_true("'a' in {'a': 1} && !('z' in {'a': 1}) && 1.0 in {1u: 0}");
    fails("{'a': 1}['b']", "no such key: b");
    fails("{'a': 1}.b", "no such key: b");
    fails("{'a': 1, 'a': 2}", "repeated key");
    fails("{0: 1, 0u: 2}", "repeated key");
    fails("{1.5: 1}", "unsupported key type");
    is_true("has({'a': 1}.a) && !has({'a': 1}.b)");
    fails("has([1].a)", "no such overload");
    fails("1.a", "does not support field selection");
}

#[test]
fn logic_absorbs_errors_like_cel() {
    is_false("false && (1 / 0 == 1)");
    is_false("(1 / 0 == 1) && false");
    is_true("true || (1 / 0 == 1)");
    is_true("(1 / 0 == 1) || true");
    fails("true && (1 / 0 == 1)", "division by zero");
    fails("(1 / 0 == 1) || false", "division by zero");
    fails("1 && true", "needs bool");
    is_true("!false && not false");
    fails("!1", "needs bool");
    is_true("(true ? 1 : 2) == 1 && (false ? 1 : 2) == 2");
    fails("(1 / 0 == 1) ? 1 : 2", "division by zero");
    fails("'x' ? 1 : 2", "needs bool");
}

#[test]
fn macros() {
    is_true("[1, 2, 3].all(x, x > 0) && [1, 2, 3].exists(x, x == 2)");
    is_true("[1, 2, 3].exists_one(x, x > 2) && ![1, 2, 3].exists_one(x, x > 1)");
    is_true("[1, 2, 3].map(x, x * 2) == [2, 4, 6]");
    is_true("[1, 2, 3].map(x, x > 1, x * 10) == [20, 30]");
    is_true("[1, 2, 3].filter(x, x % 2 == 1) == [1, 3]");
    is_true("{'a': 1, 'b': 2}.all(k, k in ['a', 'b'])");
    is_true("{'a': 1, 'b': 2}.map(k, k + k) == ['aa', 'bb']");
    // Errors: `all` is false if any element is false, even after an error.
    is_false("[0, 1].all(x, 1 / x > 5)");
    fails("[0, 1].all(x, 1 / x > 0)", "division by zero");
    is_true("[0, 1].exists(x, 1 / x == 1)");
    fails("[0, 1].exists_one(x, 1 / x == 1)", "division by zero");
    // Nested macros and shadowing.
    is_true("[[1, 2], [3]].all(l, l.all(x, x > 0))");
    is_true("[1].all(x, [2].all(x, x == 2))");
    fails("1.all(x, true)", "no such overload");
}

#[test]
fn types_and_conversions() {
    is_true("type(1) == int && type(1u) == uint && type('a') == string && type([]) == list");
    is_true("type({}) == map && type(null) == null_type && type(int) == type");
    is_true("type(duration('1s')) == google.protobuf.Duration");
    is_true("int('42') == 42 && uint(42) == 42u && double(2) == 2.0 && string(1.5) == '1.5'");
    is_true("int(-1.9) == -1 && string(b'ab') == 'ab' && bytes('ab') == b'ab'");
    is_true("bool('true') && !bool('f') && dyn(1) == 1");
    fails("int(1e20)", "range");
    fails("uint(-1)", "range");
    fails("int('x')", "invalid int");
    fails("int(18446744073709551615u)", "range");
}

#[test]
fn timestamps_and_durations() {
    is_true("timestamp('2009-02-13T23:31:30Z') == timestamp(1234567890)");
    is_true("int(timestamp('2009-02-13T23:31:30Z')) == 1234567890");
    is_true("duration('1h2m3s') == duration('3723s')");
    is_true("timestamp('2009-02-13T23:00:00Z') + duration('1h') == timestamp('2009-02-14T00:00:00Z')");
    is_true("timestamp('2009-02-13T23:00:00Z') - timestamp('2009-02-13T22:00:00Z') == duration('1h')");
    is_true("duration('1m') > duration('59s') && duration('-1s') < duration('0')");
    is_true("string(duration('1.5s')) == '1.5s' && string(timestamp(0)) == '1970-01-01T00:00:00Z'");
    is_true("timestamp('2009-02-13T23:31:30Z').getHours('America/Los_Angeles') == 15");
    is_true("timestamp('2009-02-13T23:31:30Z').getMinutes('+05:30') == 1");
    is_true("timestamp('2009-02-13T23:31:30Z').getDayOfWeek() == 5");
    is_true("timestamp('2009-02-13T23:31:30Z').getMonth() == 1 && timestamp('2009-02-13T23:31:30Z').getDate() == 13");
    is_true("duration('3730s').getMinutes() == 62 && duration('3730s').getHours() == 1");
    is_true("duration('123.321456789s').getMilliseconds() == 321");
    fails("timestamp('2009-02-13')", "invalid timestamp");
    fails("timestamp('0001-01-01T00:00:00Z') - duration('1s')", "range");
    fails("duration('1y')", "invalid duration");
    fails("timestamp(0).getHours('Mars/Olympus')", "unknown time zone");
    // A constant zone is resolved once at compile time; a bad one is a
    // compile error in strict mode.
    policy_true("now.getHours('Asia/Kolkata') == 3 && now.getMinutes('+05:30') == 43");
    let e = compile(
        &tame_lang::parse("now.getHours('Mars/Olympus') > 1").unwrap(),
        &Env::policy(),
    )
    .unwrap_err();
    assert!(e.message.contains("unknown time zone"), "{}", e.message);
}

#[test]
fn tame_string_and_network_additions() {
    is_true("lower('AbC') == 'abc' && 'AbC'.upper() == 'ABC' && trim('  x ') == 'x'");
    is_true("glob('/home/ann/notes/a.txt', '/home/*/**')");
    is_false("glob('/home/ann', '/etc/*')");
    is_false("glob('/tmp/a/b', '/tmp/*')");
    is_true("'/tmp/a'.glob('/tmp/*')");
    is_true("cidr('10.0.0.0/8').containsIP('10.2.3.4') && !cidr('10.0.0.0/8').containsIP(ip('11.0.0.1'))");
    is_true("in_cidr('192.168.1.9', '192.168.0.0/16') && isIP('::1') && !isIP('nope')");
    fails("ip('300.1.1.1')", "invalid IP");
    is_true("url('https://Example.com:8443/a?q=1').host == 'example.com'");
    is_true("url('https://example.com/a').port == '443' && url('http://x.io:81').port == '81'");
    is_true("url('www.example.com/a').scheme == '' && url('www.example.com:81/a').port == '81'");
    is_true("domain('Ada <ada@mail.example.co.uk>') == 'example.co.uk' && domain('10.0.0.5') == '10.0.0.5'");
    is_true("lookalike('p\u{430}ypal.com', 'paypal.com') && !lookalike('paypal.com', 'PayPal.com')");
    fails("url('no pe')", "invalid URL");
    fails("domain('')", "no domain");
}

#[test]
fn constant_patterns_are_checked_at_compile_time() {
    let env = Env::policy();
    let bad_re = tame_lang::parse("args.x.matches('(')").unwrap();
    assert!(compile(&bad_re, &env).unwrap_err().message.contains("invalid regex"));
    let bad_glob = tame_lang::parse("glob(args.x, '[')").unwrap();
    assert!(compile(&bad_glob, &env).unwrap_err().message.contains("invalid glob"));
    let bad_net = tame_lang::parse("cidr('10.0.0.0/99').containsIP(args.ip)").unwrap();
    assert!(compile(&bad_net, &env).is_err());
    // A regex bigger than the size limit is refused, not compiled.
    let huge = format!("args.x.matches('{}')", "(a{1000}){1000}");
    let huge = tame_lang::parse(&huge).unwrap();
    assert!(compile(&huge, &env).unwrap_err().message.contains("invalid regex"));
}

#[test]
fn constants_fold() {
    let p = compile(
        &tame_lang::parse("1 + 2 * 3 == 7 && 'a' + 'b' == 'ab'").unwrap(),
        &Env::new(),
    )
    .unwrap();
    assert!(matches!(p.constant(), Some(Value::Bool(true))));
    let p = compile(&tame_lang::parse("[1, 2, 3].size()").unwrap(), &Env::new()).unwrap();
    assert!(matches!(p.constant(), Some(Value::Int(3))));
    // `false && x` folds even though `x` is a variable.
    let p = compile(&tame_lang::parse("false && args.x == 1").unwrap(), &Env::policy()).unwrap();
    assert!(matches!(p.constant(), Some(Value::Bool(false))));
    // A constant error stays a run-time error (it may be absorbed).
    let p = compile(&tame_lang::parse("1 / 0").unwrap(), &Env::new()).unwrap();
    assert!(p.constant().is_none());
    let p = compile(&tame_lang::parse("args.x == 1").unwrap(), &Env::policy()).unwrap();
    assert!(p.constant().is_none());
}

struct Facts;

impl SessionFacts for Facts {
    fn calls(&self) -> i64 {
        7
    }
    fn count(&self, tool: &ToolPattern, window: Option<SignedDuration>) -> i64 {
        match (tool.as_str(), window) {
            ("send_email", None) => 25,
            ("send_email", Some(w)) if w <= SignedDuration::from_hours(1) => 3,
            ("send_email", Some(_)) => 12,
            _ => 0,
        }
    }
    fn called(&self, tool: &ToolPattern) -> bool {
        tool.matches("read_secret")
    }
    fn labels(&self) -> Vec<Arc<str>> {
        vec![Arc::from("secret_read")]
    }
}

fn policy_vars() -> Vec<Value> {
    let mut v = vec![Value::Null; roots::COUNT];
    v[roots::TOOL] = Value::string("read_file");
    v[roots::ARGS] = map(&[("path", Value::string("/etc/hosts")), ("amount", Value::Uint(1500))]);
    v[roots::AGENT] = Value::string("agent-1");
    v[roots::USER] = Value::Null;
    v[roots::METADATA] = map(&[("env", Value::string("prod"))]);
    v[roots::SESSION_ID] = Value::string("s-42");
    v
}

#[track_caller]
fn policy_true(src: &str) {
    let r = eval_in(&Env::policy(), &policy_vars(), &Facts, src);
    assert!(matches!(r, Ok(Value::Bool(true))), "`{src}` should be true, got {r:?}");
}

#[test]
fn policy_roots_and_aliases() {
    policy_true("tool == 'read_file' && args.path.startsWith('/etc/')");
    policy_true("tool_args.path == args.path && context.env == metadata.env");
    policy_true("agent == 'agent-1' && user == null && session.id == 's-42'");
    policy_true("args.amount > 1000 && args.amount > 1000.5");
    policy_true("now > timestamp('2020-01-01T00:00:00Z') && now.getFullYear() == 2023");
    policy_true("has(args.path) && !has(args.nope)");
    let r = eval_in(&Env::policy(), &policy_vars(), &Facts, "args.missing == 1");
    assert_eq!(r.unwrap_err(), "no such key: missing");
}

#[test]
fn session_facts() {
    // `session.calls` is the history (these facts keep none).
    policy_true("session.calls == []");
    policy_true("session.count('send_email') == 25");
    policy_true("session.count('send_email', duration('1h')) == 3");
    policy_true("session.count('send_email', duration('24h')) == 12");
    policy_true("session.called('read_secret') && !session.called('x')");
    policy_true("'secret_read' in session.labels");
    let env = Env::policy();
    for bad in ["session", "session.nope", "session.count()", "session.frob('x')"] {
        let ast = tame_lang::parse(bad).unwrap();
        assert!(compile(&ast, &env).is_err(), "`{bad}` should not compile");
    }
    let r = eval_in(&env, &policy_vars(), &Facts, "session.count(1) > 0");
    assert!(r.unwrap_err().contains("no such overload"));
}

#[test]
fn unknown_names_are_compile_errors_unless_lenient() {
    let env = Env::policy();
    let e = compile(&tame_lang::parse("argz.path == 1").unwrap(), &env).unwrap_err();
    assert_eq!(e.message, "unknown name `argz`");
    assert_eq!((e.span.start, e.span.end), (0, 4));
    let e = compile(&tame_lang::parse("frob(1)").unwrap(), &env).unwrap_err();
    assert!(e.message.contains("unknown function `frob`"));
    let e = compile(&tame_lang::parse("'a'.startsWith()").unwrap(), &env).unwrap_err();
    assert!(e.message.contains("no such overload"));

    let lenient = Env::new().with_lenient(true);
    assert!(
        eval_in(&lenient, &[], &NoFacts, "x")
            .unwrap_err()
            .contains("undeclared reference")
    );
    assert!(matches!(
        eval_in(&lenient, &[], &NoFacts, "x || true"),
        Ok(Value::Bool(true))
    ));
    assert!(
        eval_in(&lenient, &[], &NoFacts, "f(1)")
            .unwrap_err()
            .contains("unbound function")
    );
}

#[test]
fn host_functions() {
    let mut env = Env::policy();
    env.add_function(
        "has_secret",
        Some(1),
        host_fn(|args| match args {
            [Value::Map(m)] => Ok(Value::Bool(
                m.values().any(|v| v.as_str().is_some_and(|s| s.starts_with("sk-"))),
            )),
            _ => Err("expects a map".into()),
        }),
    );
    env.add_function(
        "shout",
        None,
        host_fn(|args| match args {
            [Value::String(s)] => Ok(Value::string(&s.to_uppercase())),
            _ => Err("expects a string".into()),
        }),
    );
    let mut vars = policy_vars();
    vars[roots::ARGS] = map(&[("key", Value::string("sk-123"))]);
    let ok = eval_in(&env, &vars, &NoFacts, "has_secret(args) && tool.shout() == 'READ_FILE'");
    assert!(matches!(ok, Ok(Value::Bool(true))), "{ok:?}");
    let err = eval_in(&env, &vars, &NoFacts, "has_secret(tool)").unwrap_err();
    assert_eq!(err, "has_secret: expects a map");
    let arity = compile(&tame_lang::parse("has_secret(args, 1)").unwrap(), &env).unwrap_err();
    assert!(
        arity
            .message
            .contains("no overload of host function `has_secret` takes 2"),
        "{}",
        arity.message
    );
}

#[test]
fn a_panicking_host_function_is_an_error() {
    let mut env = Env::policy();
    env.add_function("boom", Some(0), host_fn(|_| panic!("host bug")));
    let r = eval_in(&env, &policy_vars(), &NoFacts, "boom() || true");
    assert!(matches!(r, Ok(Value::Bool(true))), "{r:?}");
    let r = eval_in(&env, &policy_vars(), &NoFacts, "boom()");
    assert_eq!(r.unwrap_err(), "boom: host function panicked");
}

#[test]
fn registry_host_functions() {
    let mut reg = tame_lang::Registry::builtins();
    // Declared for the embedder but not implemented: a compile error.
    let env = Env::policy().with_registry(&reg);
    let e = compile(&tame_lang::parse("has_secret(args)").unwrap(), &env).unwrap_err();
    assert!(e.message.contains("no implementation"), "{}", e.message);

    reg.register_host(
        "has_secret",
        vec![Type::Dyn],
        Type::Bool,
        host_fn(|_| Ok(Value::Bool(true))),
    )
    .unwrap();
    reg.register_host_method(
        "mail_domain",
        vec![Type::String],
        Type::String,
        host_fn(|a| match a {
            [Value::String(s)] => Ok(Value::string(s.rsplit('@').next().unwrap_or(""))),
            _ => Err("expects a string".into()),
        }),
    )
    .unwrap();
    let env = Env::policy().with_registry(&reg);
    let mut vars = policy_vars();
    vars[roots::ARGS] = map(&[("to", Value::string("bob@evil.com"))]);
    let r = eval_in(
        &env,
        &vars,
        &NoFacts,
        "has_secret(args) && args.to.mail_domain() == 'evil.com'",
    );
    assert!(matches!(r, Ok(Value::Bool(true))), "{r:?}");
    // Registered as a method only: the global form does not resolve.
    let e = compile(&tame_lang::parse("mail_domain(args.to)").unwrap(), &env).unwrap_err();
    assert!(
        e.message.contains("no overload of host function `mail_domain`"),
        "{}",
        e.message
    );
}

#[test]
fn declared_variables_and_qualified_names() {
    let mut env = Env::new();
    let x = env.declare("x", Type::Int);
    let abc = env.declare("a.b.c", Type::String);
    let ab = env.declare("a.b", Type::Dyn);
    assert_eq!((x, abc, ab), (0, 1, 2));
    let vars = vec![
        Value::Int(5),
        Value::string("yeah"),
        map(&[("c", Value::string("oops"))]),
    ];
    assert!(matches!(eval_in(&env, &vars, &NoFacts, "x * 2"), Ok(Value::Int(10))));
    let r = eval_in(&env, &vars, &NoFacts, "a.b.c").unwrap();
    assert_eq!(r.as_str(), Some("yeah"));
    // A missing slot is a run-time error naming the variable.
    let short = eval_in(&env, &vars[..1], &NoFacts, "a.b.c").unwrap_err();
    assert!(short.contains("`a.b.c`"), "{short}");
    // Macro variables shadow declarations.
    assert!(matches!(
        eval_in(&env, &vars, &NoFacts, "[1].all(x, x == 1)"),
        Ok(Value::Bool(true))
    ));
}

#[test]
fn eval_bool_requires_bool() {
    let env = Env::policy();
    let p = compile(&tame_lang::parse("args.path").unwrap(), &env).unwrap();
    let vars = policy_vars();
    let act = Activation::new(&vars, &NoFacts, jiff::Timestamp::UNIX_EPOCH);
    assert!(p.eval_bool(&act).unwrap_err().message.contains("not bool"));
    let p = compile(&tame_lang::parse("args.path.startsWith('/etc/')").unwrap(), &env).unwrap();
    assert!(p.eval_bool(&act).unwrap());
}

#[test]
fn too_deep_is_a_compile_error() {
    let mut e = tame_lang::Expr::new(
        tame_lang::ExprKind::Literal(tame_lang::Literal::Bool(true)),
        tame_lang::Span::default(),
    );
    for _ in 0..crate::MAX_DEPTH + 5 {
        e = tame_lang::Expr::new(
            tame_lang::ExprKind::Unary {
                op: tame_lang::UnaryOp::Not,
                operand: Box::new(e),
            },
            tame_lang::Span::default(),
        );
    }
    let err = compile(&e, &Env::new()).unwrap_err();
    assert!(err.message.contains("nested too deeply"));
}

#[test]
fn programs_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<crate::Program>();
    assert_send_sync::<Env>();
    let p = Arc::new(
        compile(
            &tame_lang::parse("args.path.startsWith('/etc/')").unwrap(),
            &Env::policy(),
        )
        .unwrap(),
    );
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                let vars = policy_vars();
                let act = Activation::new(&vars, &NoFacts, jiff::Timestamp::UNIX_EPOCH);
                p.eval_bool(&act).unwrap()
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
}

#[test]
fn errors_carry_the_failing_span() {
    let src = "args.path == '/x' && args.nope > 1";
    let ast = tame_lang::parse(src).unwrap();
    let p = compile(&ast, &Env::policy()).unwrap();
    let mut vars = policy_vars();
    vars[roots::ARGS] = map(&[("path", Value::string("/x"))]);
    let e = p
        .eval(&Activation::new(&vars, &NoFacts, jiff::Timestamp::UNIX_EPOCH))
        .unwrap_err();
    assert_eq!(e.message, "no such key: nope");
    assert_eq!(src[e.span.range()].trim_end(), "args.nope");
}

#[test]
fn public_equality_follows_cel() {
    assert!(crate::equals(&Value::Int(1), &Value::Double(1.0)));
    assert!(crate::equals(&Value::Uint(1), &Value::Int(1)));
    assert!(!crate::equals(&Value::Double(f64::NAN), &Value::Double(f64::NAN)));
    assert!(!crate::equals(&Value::Int(1), &Value::string("1")));
    assert!(crate::equals(
        &map(&[("a", Value::Int(1))]),
        &map(&[("a", Value::Uint(1))])
    ));
}

#[test]
fn deepest_accepted_expression_evaluates_on_a_small_stack() {
    // `!!...!(args.path == '/etc/hosts')` exactly MAX_DEPTH deep, evaluated
    // on a 1 MiB thread: debug builds have frames of several KiB, so this
    // needs the stack checks of `Node::Grow` and of the compiler.
    let mut e = tame_lang::parse("args.path == '/etc/hosts'").unwrap();
    let nots = crate::MAX_DEPTH - 3;
    for _ in 0..nots {
        e = tame_lang::Expr::new(
            tame_lang::ExprKind::Unary {
                op: tame_lang::UnaryOp::Not,
                operand: Box::new(e),
            },
            tame_lang::Span::default(),
        );
    }
    let env = Env::policy();
    let p = compile(&e, &env).unwrap();
    let r = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let vars = policy_vars();
            p.eval_bool(&Activation::new(&vars, &NoFacts, jiff::Timestamp::UNIX_EPOCH))
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(r.unwrap(), nots.is_multiple_of(2));
    // One level more is refused.
    let deeper = tame_lang::Expr::new(
        tame_lang::ExprKind::Unary {
            op: tame_lang::UnaryOp::Not,
            operand: Box::new(e),
        },
        tame_lang::Span::default(),
    );
    assert!(compile(&deeper, &env).is_err());
}
