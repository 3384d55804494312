//! The CEL conformance runner: runs every test of every `*.textproto`
//! file (cel-spec's `SimpleTestFile` format) in a folder through
//! tame-lang's parser and checker and this crate's compiler and evaluator,
//! prints pass / fail / skip and the pass rate per file with every skip
//! reason and failure, and asserts a pass-rate floor on the ten files of
//! `../shared/conformance/cel`.
//!
//! The folder is `$TAME_CEL_CONFORMANCE` when set, else
//! `../shared/conformance/cel`; any folder of cel-spec conformance files
//! works (e.g. one with cel-spec's `string_ext`, `optionals` and `macros2`
//! files added):
//!
//! ```text
//! TAME_CEL_CONFORMANCE=/path/to/testdata cargo nextest run -p tame-interp --test conformance --no-capture
//! ```

// Test-only code: a malformed data file may panic the test with a message.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use support::textproto::{self, Msg, Val};
use tame_interp::{Activation, Env, NoFacts, compile};
use tame_lang::{Key, Type, Value, ValueMap};

/// Minimum share of non-skipped tests that must pass, in percent, over
/// the files of [`FLOOR_FILES`] (other files are reported, not asserted).
const PASS_FLOOR_PERCENT: f64 = 99.0;

/// The files of `../shared/conformance/cel`, held to the floor.
const FLOOR_FILES: &[&str] = &[
    "basic",
    "comparisons",
    "fields",
    "fp_math",
    "integer_math",
    "lists",
    "logic",
    "macros",
    "string",
    "timestamps",
];

fn conformance_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("TAME_CEL_CONFORMANCE") {
        return Some(PathBuf::from(dir));
    }
    // crates/tame-interp -> workspace root -> ../shared/conformance/cel
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/conformance/cel"))
        .find(|p| p.is_dir())
        .or_else(|| {
            manifest
                .ancestors()
                .map(|a| a.join("../shared/conformance/cel"))
                .find(|p| p.is_dir())
        })
}

enum Outcome {
    Pass,
    Skip(String),
    Fail(String),
}

#[derive(Default)]
struct Tally {
    pass: usize,
    fail: usize,
    skip: usize,
    skips: Vec<(String, String)>,
    fails: Vec<(String, String)>,
}

/// Why a test cannot run here (it needs protobuf messages), if so.
fn skip_reason(test: &Msg, expr: &str) -> Option<String> {
    if test.flag("disable_macros") {
        return Some("macros cannot be disabled in Tame's parser".into());
    }
    if test.string("container").is_some_and(|c| !c.is_empty()) {
        return Some("needs a protobuf container (message types)".into());
    }
    if expr.contains("TestAllTypes") || expr.contains("NestedTestAllTypes") {
        return Some("needs protobuf message type TestAllTypes".into());
    }
    let mut rest = expr;
    while let Some(i) = rest.find("google.protobuf.") {
        let after = &rest[i + "google.protobuf.".len()..];
        if !(after.starts_with("Timestamp") || after.starts_with("Duration")) {
            return Some("needs google.protobuf wrapper/Any/Struct/Value types".into());
        }
        rest = after;
    }
    for m in test
        .msgs("bindings")
        .chain(test.msg("value"))
        .chain(test.msg("typed_result"))
    {
        if m.mentions("object_value") {
            return Some("protobuf message value (object_value)".into());
        }
        if m.mentions("enum_value") {
            return Some("protobuf enum value".into());
        }
    }
    if test.get("unknown").is_some() || test.get("any_unknowns").is_some() {
        return Some("unknown-value results are not supported".into());
    }
    for env in test.msgs("type_env") {
        if let Some(ident) = env.msg("ident").and_then(|i| i.msg("type"))
            && let Some(mt) = ident.string("message_type")
            && mt != "google.protobuf.Timestamp"
            && mt != "google.protobuf.Duration"
        {
            return Some(format!("declares a variable of message type {mt}"));
        }
        if env.get("function").is_some() {
            return Some("declares custom functions".into());
        }
    }
    None
}

fn word(v: Option<&Val>) -> Option<String> {
    match v {
        Some(Val::Word(w)) => Some(w.clone()),
        Some(Val::Str(s)) => Some(String::from_utf8_lossy(s).into_owned()),
        _ => None,
    }
}

fn parse_double(w: &str) -> Result<f64, String> {
    match w.to_ascii_lowercase().as_str() {
        "inf" | "infinity" | "+inf" => Ok(f64::INFINITY),
        "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
        "nan" => Ok(f64::NAN),
        other => other.parse().map_err(|_| format!("bad double `{w}`")),
    }
}

fn type_from_name(name: &str) -> Type {
    Type::from_name(name).unwrap_or(Type::Dyn)
}

/// A `cel.expr.Value` message as a Tame value.
fn to_value(m: &Msg) -> Result<Value, String> {
    let Some((name, v)) = m.fields.first() else {
        return Err("empty value".into());
    };
    Ok(match name.as_str() {
        "null_value" => Value::Null,
        "bool_value" => Value::Bool(word(Some(v)).as_deref() == Some("true")),
        "int64_value" => Value::Int(word(Some(v)).and_then(|w| w.parse().ok()).ok_or("bad int64_value")?),
        "uint64_value" => Value::Uint(word(Some(v)).and_then(|w| w.parse().ok()).ok_or("bad uint64_value")?),
        "double_value" => Value::Double(parse_double(&word(Some(v)).unwrap_or_default())?),
        "string_value" => match v {
            Val::Str(b) => Value::String(Arc::from(
                String::from_utf8(b.clone()).map_err(|_| "string_value is not UTF-8")?,
            )),
            _ => return Err("bad string_value".into()),
        },
        "bytes_value" => match v {
            Val::Str(b) => Value::Bytes(Arc::from(b.as_slice())),
            _ => return Err("bad bytes_value".into()),
        },
        "type_value" => Value::Type(type_from_name(&word(Some(v)).unwrap_or_default())),
        "list_value" => {
            let Val::Msg(l) = v else {
                return Err("bad list_value".into());
            };
            let items = l.msgs("values").map(to_value).collect::<Result<Vec<_>, _>>()?;
            Value::List(Arc::from(items))
        }
        "map_value" => {
            let Val::Msg(mv) = v else {
                return Err("bad map_value".into());
            };
            let mut out = ValueMap::default();
            for e in mv.msgs("entries") {
                let k = to_value(e.msg("key").ok_or("entry without key")?)?;
                let val = to_value(e.msg("value").ok_or("entry without value")?)?;
                let key = match k {
                    Value::Int(i) => Key::Int(i),
                    Value::Uint(u) => Key::Uint(u),
                    Value::Bool(b) => Key::Bool(b),
                    Value::String(s) => Key::String(s),
                    other => return Err(format!("unsupported map key {other:?}")),
                };
                out.insert(key, val);
            }
            Value::Map(Arc::new(out))
        }
        other => return Err(format!("unsupported value kind `{other}`")),
    })
}

fn decl_type(t: &Msg) -> Type {
    if let Some(p) = t.string("primitive") {
        return match p.as_str() {
            "BOOL" => Type::Bool,
            "INT64" => Type::Int,
            "UINT64" => Type::Uint,
            "DOUBLE" => Type::Double,
            "STRING" => Type::String,
            "BYTES" => Type::Bytes,
            _ => Type::Dyn,
        };
    }
    if let Some(l) = t.msg("list_type").and_then(|l| l.msg("elem_type")) {
        return Type::List(Box::new(decl_type(l)));
    }
    if let Some(m) = t.msg("map_type") {
        let k = m.msg("key_type").map_or(Type::Dyn, decl_type);
        let v = m.msg("value_type").map_or(Type::Dyn, decl_type);
        return Type::Map(Box::new(k), Box::new(v));
    }
    if let Some(mt) = t.string("message_type") {
        return type_from_name(&mt);
    }
    Type::Dyn
}

/// Strict structural equality for checking results: same kinds (an `int`
/// is not a `uint`), NaN equals NaN, maps compare without order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Uint(x), Value::Uint(y)) => x == y,
        (Value::Double(x), Value::Double(y)) => {
            (x.is_nan() && y.is_nan()) || (x == y && x.is_sign_negative() == y.is_sign_negative())
        }
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::List(x), Value::List(y)) => x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same(p, q)),
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Type(x), Value::Type(y)) => x.name() == y.name(),
        (Value::Timestamp(x), Value::Timestamp(y)) => x == y,
        (Value::Duration(x), Value::Duration(y)) => x == y,
        _ => false,
    }
}

fn run_test(test: &Msg) -> Outcome {
    let expr = test.string("expr").unwrap_or_default();
    if let Some(reason) = skip_reason(test, &expr) {
        return Outcome::Skip(reason);
    }
    let ast = match tame_lang::parse(&expr) {
        Ok(a) => a,
        Err(e) => return Outcome::Fail(format!("parse error: {e}")),
    };

    let mut env = Env::new().with_lenient(test.flag("disable_check"));
    let mut vars: Vec<Value> = Vec::new();
    // Bound variables first so their slots line up with `vars`.
    for b in test.msgs("bindings") {
        let Some(name) = b.string("key") else {
            continue;
        };
        let Some(v) = b.msg("value").and_then(|v| v.msg("value")) else {
            return Outcome::Skip("binding is not a plain value (error/unknown)".into());
        };
        let value = match to_value(v) {
            Ok(v) => v,
            Err(e) => return Outcome::Fail(format!("bad binding: {e}")),
        };
        let slot = env.declare(&name, Type::Dyn);
        if slot == vars.len() {
            vars.push(value);
        } else if let Some(s) = vars.get_mut(slot) {
            *s = value;
        }
    }
    for d in test.msgs("type_env") {
        if let (Some(name), Some(t)) = (d.string("name"), d.msg("ident").and_then(|i| i.msg("type"))) {
            env.declare(&name, decl_type(t));
        }
    }

    // Type-check unless the test disables it: the checker must accept
    // every test that evaluates to a value.
    if !test.flag("disable_check") {
        let registry = tame_lang::Registry::builtins();
        let mut cenv = tame_lang::CheckEnv::new(&registry);
        for b in test.msgs("bindings") {
            if let Some(name) = b.string("key") {
                cenv.declare(name, Type::Dyn);
            }
        }
        for d in test.msgs("type_env") {
            if let (Some(name), Some(t)) = (d.string("name"), d.msg("ident").and_then(|i| i.msg("type"))) {
                cenv.declare(name, decl_type(t));
            }
        }
        if let Err(errs) = tame_lang::check(&ast, &cenv) {
            let msg: Vec<String> = errs.iter().map(ToString::to_string).collect();
            return if test.get("value").is_some() || test.get("typed_result").is_some() {
                Outcome::Fail(format!("check error: {}", msg.join("; ")))
            } else {
                Outcome::Pass
            };
        }
    }

    let got = compile(&ast, &env)
        .map_err(|e| format!("compile error: {e}"))
        .and_then(|p| {
            p.eval(&Activation::new(&vars, &NoFacts, jiff::Timestamp::UNIX_EPOCH))
                .map_err(|e| format!("eval error: {e}"))
        });

    let expected = test
        .msg("value")
        .or_else(|| test.msg("typed_result").and_then(|t| t.msg("result")));
    // A test without an expectation expects `true` (simple.proto).
    let expects_error = test.get("eval_error").is_some() || test.get("any_eval_errors").is_some();
    let default_true = Msg {
        fields: vec![("bool_value".to_owned(), Val::Word("true".to_owned()))],
    };
    let expected = expected.or((!expects_error).then_some(&default_true));
    match (expected, got) {
        (Some(exp), Ok(v)) => match to_value(exp) {
            Ok(e) if same(&e, &v) => Outcome::Pass,
            Ok(e) => Outcome::Fail(format!("expected {e:?}, got {v:?}")),
            Err(err) => Outcome::Skip(format!("cannot read the expected value: {err}")),
        },
        (Some(exp), Err(e)) => Outcome::Fail(format!("expected {}, got {e}", describe(exp))),
        (None, Err(_)) if expects_error => Outcome::Pass,
        (None, Ok(v)) => Outcome::Fail(format!("expected an error, got {v:?}")),
        (None, Err(e)) => Outcome::Fail(format!("no expectation in the test; got {e}")),
    }
}

fn describe(m: &Msg) -> String {
    to_value(m).map_or_else(|e| format!("<{e}>"), |v| format!("{v:?}"))
}

#[test]
fn cel_conformance() {
    let Some(dir) = conformance_dir() else {
        println!("skipping CEL conformance: ../shared/conformance/cel not found (set TAME_CEL_CONFORMANCE)");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read conformance dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "textproto"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .textproto files in {}", dir.display());

    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read textproto");
        let doc = textproto::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tally = tallies.entry(file.clone()).or_default();
        for section in doc.msgs("section") {
            let sname = section.string("name").unwrap_or_default();
            for test in section.msgs("test") {
                let id = format!("{file}/{sname}/{}", test.string("name").unwrap_or_default());
                let expr = test.string("expr").unwrap_or_default();
                let outcome =
                    std::panic::catch_unwind(|| run_test(test)).unwrap_or_else(|_| Outcome::Fail("panicked".into()));
                match outcome {
                    Outcome::Pass => tally.pass += 1,
                    Outcome::Skip(r) => {
                        tally.skip += 1;
                        tally.skips.push((id, r));
                    }
                    Outcome::Fail(r) => {
                        tally.fail += 1;
                        tally.fails.push((id, format!("`{expr}`: {r}")));
                    }
                }
            }
        }
    }

    let rate = |pass: usize, fail: usize| {
        if pass + fail == 0 {
            100.0
        } else {
            100.0 * pass as f64 / (pass + fail) as f64
        }
    };
    let (mut p, mut f, mut s) = (0, 0, 0);
    let (mut fp, mut ff) = (0, 0);
    println!("\nfolder: {}", dir.display());
    println!(
        "\n{:<16} {:>5} {:>5} {:>5} {:>7}",
        "file", "pass", "fail", "skip", "rate"
    );
    for (name, t) in &tallies {
        println!(
            "{name:<16} {:>5} {:>5} {:>5} {:>6.1}%",
            t.pass,
            t.fail,
            t.skip,
            rate(t.pass, t.fail)
        );
        p += t.pass;
        f += t.fail;
        s += t.skip;
        if FLOOR_FILES.contains(&name.as_str()) {
            fp += t.pass;
            ff += t.fail;
        }
    }
    println!("{:<16} {p:>5} {f:>5} {s:>5} {:>6.1}%", "total", rate(p, f));
    println!("(rate: passed / (passed + failed); skipped tests need protobuf messages or features Tame leaves out)");
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    println!("\nskipped:");
    for t in tallies.values() {
        for (id, r) in &t.skips {
            println!("  {id}: {r}");
            *reasons.entry(r).or_default() += 1;
        }
    }
    println!("\nskip reasons:");
    for (r, n) in &reasons {
        println!("  {n:>4}  {r}");
    }
    println!("\nfailures:");
    for t in tallies.values() {
        for (id, r) in &t.fails {
            println!("  {id}: {r}");
        }
    }
    let all = rate(p, f);
    let held = rate(fp, ff);
    println!(
        "\npass rate over non-skipped tests: {all:.1}% in all files; {held:.1}% in the files held to the floor \
         ({PASS_FLOOR_PERCENT}%: {})",
        FLOOR_FILES.join(", ")
    );
    assert!(
        held >= PASS_FLOOR_PERCENT,
        "pass rate {held:.1}% of the shared files is below the floor {PASS_FLOOR_PERCENT}%"
    );
}
