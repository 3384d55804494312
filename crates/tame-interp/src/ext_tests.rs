//! Unit tests of CEL's extensions as the evaluator runs them: the strings
//! extension, optionals and two-variable comprehensions, error cases
//! included. Each expression is also type-checked, as a policy's would be.

use std::sync::Arc;

use tame_lang::{Key, Value, ValueMap};

use crate::{Activation, Env, NoFacts, compile};

fn eval_with(vars: &[(&str, Value)], src: &str) -> Result<Value, String> {
    let ast = tame_lang::parse(src).map_err(|e| format!("parse: {e}"))?;
    let registry = tame_lang::Registry::builtins();
    let mut cenv = tame_lang::CheckEnv::new(&registry);
    let mut env = Env::new();
    let mut values = Vec::new();
    for (name, v) in vars {
        cenv.declare(*name, tame_lang::Type::Dyn);
        env.declare(name, tame_lang::Type::Dyn);
        values.push(v.clone());
    }
    tame_lang::check(&ast, &cenv).map_err(|e| format!("check: {e:?}"))?;
    let p = compile(&ast, &env).map_err(|e| format!("compile: {e}"))?;
    p.eval(&Activation::new(&values, &NoFacts, jiff::Timestamp::UNIX_EPOCH))
        .map_err(|e| e.message)
}

fn eval(src: &str) -> Result<Value, String> {
    eval_with(&[], src)
}

#[track_caller]
fn is_true(src: &str) {
    match eval(src) {
        Ok(Value::Bool(true)) => {}
        other => panic!("`{src}` should be true, got {other:?}"),
    }
}

#[track_caller]
fn fails(src: &str, needle: &str) {
    match eval(src) {
        Err(m) if m.contains(needle) => {}
        other => panic!("`{src}` should fail with `{needle}`, got {other:?}"),
    }
}

#[track_caller]
fn gives(src: &str, expected: &str) {
    match eval(src) {
        Ok(Value::String(s)) if &*s == expected => {}
        other => panic!("`{src}` should give {expected:?}, got {other:?}"),
    }
}

#[test]
fn char_at_index_of_last_index_of() {
    gives("'tacocat'.charAt(3)", "o");
    gives("'©αT'.charAt(1)", "α");
    gives("'tacocat'.charAt(7)", "");
    fails("'tacocat'.charAt(8)", "index out of range: 8");
    fails("'tacocat'.charAt(-1)", "index out of range: -1");
    is_true("'hello mellow'.indexOf('') == 0 && 'hello mellow'.indexOf('ello') == 1");
    is_true("'hello mellow'.indexOf('jello') == -1 && 'hello mellow'.indexOf('ello', 2) == 7");
    is_true("'ta©o©αT'.indexOf('©', 3) == 4 && 'hello mellow'.indexOf('', 2) == 2");
    fails("'hello'.indexOf('l', 6)", "index out of range: 6");
    fails("'hello'.indexOf('l', -1)", "index out of range: -1");
    is_true("'hello mellow'.lastIndexOf('') == 12 && 'hello mellow'.lastIndexOf('ello') == 7");
    is_true("'hello mellow'.lastIndexOf('ello', 6) == 1 && 'ta©o©αT'.lastIndexOf('©', 3) == 2");
    is_true("'hello'.lastIndexOf('x') == -1");
    fails("'hello'.lastIndexOf('l', -1)", "index out of range: -1");
    fails("'hello'.lastIndexOf('l', 6)", "index out of range: 6");
}

#[test]
fn join_split_replace_substring_reverse() {
    gives("['a', 'b'].join()", "ab");
    gives("['a', 'b'].join(', ')", "a, b");
    gives("[].join('-')", "");
    fails("dyn(['a', 1]).join()", "join");
    is_true("'a b c'.split(' ') == ['a', 'b', 'c'] && 'a b c'.split(' ', 2) == ['a', 'b c']");
    is_true("'a b'.split(' ', 0) == [] && 'a b'.split(' ', -1) == ['a', 'b'] && 'ab'.split('') == ['a', 'b']");
    gives("'hello hello'.replace('he', 'we')", "wello wello");
    gives("'hello hello'.replace('he', 'we', 1)", "wello hello");
    gives("'hello hello'.replace('he', 'we', 0)", "hello hello");
    gives("'hello hello'.replace('he', 'we', -1)", "wello wello");
    gives("'tacocat'.substring(4)", "cat");
    gives("'tacocat'.substring(0, 4)", "taco");
    gives("'ta©o©αT'.substring(2, 6)", "©o©α");
    fails("'tacocat'.substring(-1)", "index out of range: -1");
    fails("'tacocat'.substring(8)", "index out of range: 8");
    fails("'tacocat'.substring(2, 1)", "invalid substring range. start: 2, end: 1");
    gives("'gums'.reverse()", "smug");
    gives("'©αT'.reverse()", "Tα©");
}

#[test]
fn ascii_casing_leaves_other_letters_alone() {
    // Before the strings extension, these lowered and raised every letter.
    gives("'TacoCÆt Xii'.lowerAscii()", "tacocÆt xii");
    gives("'tacoCαt'.upperAscii()", "TACOCαT");
    gives("lowerAscii('ÄB')", "Äb");
    // `lower` and `upper` stay Unicode.
    gives("'ÄB'.lower()", "äb");
}

#[test]
fn trim_is_unicode_white_space() {
    is_true(r"'\u0085\u00a0\u1680 text\u2028\u3000\t'.trim() == 'text'");
    is_true(r"'\u200btext\ufeff'.trim() == '\u200btext\ufeff'");
}

#[test]
fn format_and_quote() {
    gives(
        "'%s is %d, %.2f, %e'.format(['x', 7, 1.005, 1052.032911275])",
        "x is 7, 1.00, 1.052033e+03",
    );
    gives("'%x %X %o %b %%'.format([255, 'hi', 8, true])", "ff 6869 10 1 %");
    gives("'%s'.format([[1, 'a', null, {'k': 2.5}]])", "[1, a, null, {k: 2.5}]");
    gives(
        "'%s %s'.format([duration('90s'), timestamp('2023-02-03T23:31:20Z')])",
        "90s 2023-02-03T23:31:20Z",
    );
    gives("'%f'.format([double('NaN')])", "NaN");
    fails("'%d %d'.format([1])", "index 1 out of range");
    fails("'%a'.format([1])", "unrecognized formatting clause \"a\"");
    fails(
        "'%d'.format(['x'])",
        "decimal clause can only be used on integers, was given string",
    );
    fails(
        "'%b'.format([1.5])",
        "only integers and bools can be formatted as binary",
    );
    fails("'%s'.format([optional.none()])", "string clause can only be used on");
    gives(r#"strings.quote("a\"b\n")"#, "\"a\\\"b\\n\"");
    gives("strings.quote('')", "\"\"");
}

#[test]
fn string_functions_refuse_wrong_types() {
    for src in [
        "dyn(42).charAt(0)",
        "'a'.charAt(dyn(true))",
        "dyn(1).indexOf('a')",
        "'a'.split(dyn(1))",
        "'a'.replace('a', dyn(1))",
        "'a'.substring(dyn('0'))",
        "dyn(1).format([])",
        "dyn(1).reverse()",
    ] {
        fails(src, "no such overload");
    }
}

#[test]
fn optional_values() {
    is_true("optional.of(null).hasValue() && !optional.none().hasValue()");
    is_true("!optional.ofNonZeroValue('').hasValue() && optional.ofNonZeroValue(1).value() == 1");
    is_true("!optional.ofNonZeroValue([]).hasValue() && !optional.ofNonZeroValue(duration('0s')).hasValue()");
    fails("optional.none().value()", "optional.none() dereference");
    is_true("optional.none().orValue(3) == 3 && optional.of(1).orValue(3) == 1");
    is_true("optional.none().or(optional.of(2)).value() == 2 && optional.of(1).or(optional.none()).value() == 1");
    // `orValue` and `or` evaluate their argument only when needed.
    is_true("optional.of(1).orValue(1 / 0) == 1");
    is_true("optional.of(1).or(optional.of(1 / 0)).value() == 1");
    fails("optional.none().orValue(1 / 0)", "division by zero");
    is_true("optional.none() == optional.none() && optional.of(1) == optional.of(1.0)");
    is_true("optional.of(1) != optional.none() && optional.of(1) != optional.of(2)");
    is_true("type(optional.none()) == optional_type");
}

#[test]
fn optional_selection_and_index() {
    let m = {
        let mut inner = ValueMap::default();
        inner.insert(Key::from("b"), Value::string("x"));
        let mut m = ValueMap::default();
        m.insert(Key::from("a"), Value::Map(Arc::new(inner)));
        m.insert(Key::from("n"), Value::Null);
        Value::Map(Arc::new(m))
    };
    let t = |src: &str| match eval_with(&[("m", m.clone())], src) {
        Ok(Value::Bool(true)) => {}
        other => panic!("`{src}` should be true, got {other:?}"),
    };
    t("m.?a.b.value() == 'x'");
    t("!m.?z.hasValue() && !m.?z.b.hasValue()");
    t("m.?n.hasValue()");
    t("m[?'a'][?'b'].orValue('') == 'x' && !m[?'q'].hasValue()");
    t("has(m.?a.b) && !has(m.?a.c) && !has(m.?z.b)");
    t("optional.of(m).a.b.value() == 'x' && !optional.of(m).q.hasValue()");
    t("optional.of(m)['a']['b'].value() == 'x' && !optional.of(m)['q'].hasValue()");
    match eval_with(&[("m", m.clone())], "m.?n.x") {
        Err(e) if e.contains("does not support field selection") => {}
        other => panic!("selecting on null should fail, got {other:?}"),
    }
    is_true("[1, 2][?1].value() == 2 && ![1][?1].hasValue() && ![1][?-1].hasValue()");
    is_true("!optional.none()[?0].hasValue() && optional.of([7])[?0].value() == 7");
    fails("[1][?dyn('a')]", "no such overload");
    fails("dyn(1).?a", "does not support field selection");
}

#[test]
fn optional_list_and_map_entries() {
    is_true("[?optional.of(1), 2, ?optional.none()] == [1, 2]");
    is_true("{?'a': optional.of(1), ?'b': optional.none(), 'c': 3} == {'a': 1, 'c': 3}");
    is_true("[?{}.?c, ?{'c': 5}.?c] == [5]");
    fails("[?dyn(1)]", "an optional element must be an optional");
    fails("{?'a': dyn(1)}", "an optional element must be an optional");
    is_true("optional.of(2).optMap(x, x * 10).value() == 20 && !optional.none().optMap(x, x).hasValue()");
    is_true("optional.of({'k': 1}).optFlatMap(m, m.?k).value() == 1");
    fails("optional.of(1).optFlatMap(x, dyn(x))", "needs an optional");
}

#[test]
fn two_variable_comprehensions() {
    is_true("[1, 2, 3].all(i, v, v == i + 1) && [1, 2, 3].exists(i, v, i == 2 && v == 3)");
    is_true("!{'a': 1, 'b': 2}.exists(k, v, k == 'a' && v == 2)");
    is_true("[5, 7, 8].existsOne(i, v, v % 5 == i) && ![0, 1, 2].exists_one(i, v, v == i)");
    // Errors are absorbed as in the one-variable forms.
    is_true("![1, 0].all(i, v, 1 / v == 1 && i == 5)");
    fails("[1, 0].all(i, v, 1 / v == 1)", "division by zero");
    fails("[3, 0].existsOne(i, v, 6 / v == 2)", "division by zero");
    is_true("[2, 4, 6].transformList(i, v, v / 2 + i) == [1, 3, 5]");
    is_true("[2, 4, 6].transformList(i, v, i != 1, v) == [2, 6]");
    is_true("{'a': 1, 'b': 2}.transformList(k, v, k + string(v)) == ['a1', 'b2']");
    is_true("{'a': 1, 'b': 2}.transformMap(k, v, v * 10) == {'a': 10, 'b': 20}");
    is_true("{'a': 1, 'b': 2}.transformMap(k, v, k != 'a', v) == {'b': 2}");
    is_true("['x', 'y'].transformMap(i, v, v + v) == {0: 'xx', 1: 'yy'}");
    is_true("{'a': 'b', 'c': 'd'}.transformMapEntry(k, v, {v: k}) == {'b': 'a', 'd': 'c'}");
    is_true("{'a': 1, 'c': 2}.transformMapEntry(k, v, v > 1, {v: k}) == {2: 'c'}");
    fails(
        "['a', 'b'].transformMapEntry(i, v, {'same': v})",
        "insert failed: key 'same' already exists",
    );
    fails("[1, 0].transformList(i, v, 1 / v)", "division by zero");
    fails("dyn(1).transformList(i, v, v)", "no such overload");
    // Nested: the inner variables shadow the outer ones.
    is_true("[[1, 2]].all(i, l, l.all(i, v, v == i + 1))");
}
