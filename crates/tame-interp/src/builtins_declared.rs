//! Every built-in is declared and implemented together: each overload the
//! registry (`tame_lang::Registry::builtins`) declares resolves to an
//! implementation here ([`Builtin::resolve`]) or is a host slot the
//! embedder fills in, and every implementation is declared with the call
//! forms it accepts. Adding a function without both halves fails here.

use std::collections::BTreeSet;

use tame_lang::Registry;

use crate::funcs::Builtin;
use crate::time::TsPart;

/// Every implementation, each variant once (the `match` below makes a new
/// variant a compile error until it is listed).
fn every_builtin() -> Vec<Builtin> {
    use Builtin as B;
    let parts = [
        TsPart::FullYear,
        TsPart::Month,
        TsPart::Date,
        TsPart::DayOfMonth,
        TsPart::DayOfWeek,
        TsPart::DayOfYear,
        TsPart::Hours,
        TsPart::Minutes,
        TsPart::Seconds,
        TsPart::Milliseconds,
    ];
    let mut all = vec![
        B::Size,
        B::Contains,
        B::StartsWith,
        B::EndsWith,
        B::Matches,
        B::ToInt,
        B::ToUint,
        B::ToDouble,
        B::ToString,
        B::ToBytes,
        B::ToBool,
        B::Dyn,
        B::TypeOf,
        B::Timestamp,
        B::Duration,
        B::Lower,
        B::Upper,
        B::Trim,
        B::Glob,
        B::CleanPath,
        B::Within,
        B::Ip,
        B::Cidr,
        B::IsIp,
        B::InCidr,
        B::Url,
        B::Domain,
        B::Lookalike,
        B::LowerAscii,
        B::UpperAscii,
        B::CharAt,
        B::IndexOf,
        B::LastIndexOf,
        B::Join,
        B::Split,
        B::Replace,
        B::Substring,
        B::Format,
        B::Quote,
        B::Reverse,
        B::OptOf,
        B::OptNone,
        B::OptOfNonZero,
        B::OptHasValue,
        B::OptValue,
        B::OptOrValue,
        B::OptOr,
    ];
    all.extend(parts.into_iter().map(B::Part));
    for b in &all {
        match b {
            B::Size
            | B::Contains
            | B::StartsWith
            | B::EndsWith
            | B::Matches
            | B::ToInt
            | B::ToUint
            | B::ToDouble
            | B::ToString
            | B::ToBytes
            | B::ToBool
            | B::Dyn
            | B::TypeOf
            | B::Timestamp
            | B::Duration
            | B::Part(
                TsPart::FullYear
                | TsPart::Month
                | TsPart::Date
                | TsPart::DayOfMonth
                | TsPart::DayOfWeek
                | TsPart::DayOfYear
                | TsPart::Hours
                | TsPart::Minutes
                | TsPart::Seconds
                | TsPart::Milliseconds,
            )
            | B::Lower
            | B::Upper
            | B::Trim
            | B::Glob
            | B::CleanPath
            | B::Within
            | B::Ip
            | B::Cidr
            | B::IsIp
            | B::InCidr
            | B::Url
            | B::Domain
            | B::Lookalike
            | B::LowerAscii
            | B::UpperAscii
            | B::CharAt
            | B::IndexOf
            | B::LastIndexOf
            | B::Join
            | B::Split
            | B::Replace
            | B::Substring
            | B::Format
            | B::Quote
            | B::Reverse
            | B::OptOf
            | B::OptNone
            | B::OptOfNonZero
            | B::OptHasValue
            | B::OptValue
            | B::OptOrValue
            | B::OptOr => {}
        }
    }
    all
}

/// Whether `session.NAME(args of these types)` (`NAME(args)` when not a
/// method) compiles.
fn session_call_compiles(name: &str, params: &[tame_lang::Type], method: bool) -> bool {
    let args: Vec<&str> = params
        .iter()
        .map(|t| match t {
            tame_lang::Type::Duration => "duration(\"1h\")",
            _ => "\"t\"",
        })
        .collect();
    let src = format!("{}{name}({})", if method { "session." } else { "" }, args.join(", "));
    tame_lang::parse(&src)
        .ok()
        .is_some_and(|ast| crate::compile(&ast, &crate::Env::new().with_session(true)).is_ok())
}

#[test]
fn every_declared_overload_has_an_implementation() {
    let registry = Registry::builtins();
    let mut missing = Vec::new();
    for name in registry.names() {
        for o in registry.overloads(name) {
            // Host slots (`has_secret`, `has_pii`, `secrets`) are
            // implemented by the embedder (tame-engine's payload functions).
            if o.host_slot || o.host.is_some() {
                continue;
            }
            // `session.count(..)` and friends are compiled to session
            // nodes: they must compile.
            if o.receiver && o.params.first().map(tame_lang::Type::name).as_deref() == Some("session") {
                if !session_call_compiles(name, &o.params[1..], true) {
                    missing.push(o.id.clone());
                }
                continue;
            }
            // `from_input(x)` and friends compile to session nodes too.
            if !o.receiver && crate::session::Fact::provenance(name, o.params.len()).is_some() {
                if !session_call_compiles(name, &o.params, false) {
                    missing.push(o.id.clone());
                }
                continue;
            }
            // A receiver is passed as the first argument.
            if Builtin::resolve(name, o.receiver, o.params.len()).is_none() {
                missing.push(o.id.clone());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "declared in tame-lang's registry but not implemented in tame-interp's funcs.rs: {missing:?}"
    );
}

#[test]
fn every_implementation_is_declared() {
    let registry = Registry::builtins();
    let mut declared = BTreeSet::new();
    for name in registry.names() {
        for o in registry.overloads(name).iter().filter(|o| !o.host_slot) {
            if let Some(b) = Builtin::resolve(name, o.receiver, o.params.len()) {
                declared.insert(format!("{b:?}"));
            }
        }
    }
    let undeclared: Vec<String> = every_builtin()
        .into_iter()
        .map(|b| format!("{b:?}"))
        .filter(|b| !declared.contains(b))
        .collect();
    assert!(
        undeclared.is_empty(),
        "implemented in tame-interp's funcs.rs but declared by no overload in tame-lang's registry: {undeclared:?}"
    );
}

#[test]
fn no_call_form_resolves_without_a_declaration() {
    // Every (name, receiver, argument count) the resolver accepts for a
    // declared name is one of that name's declared overloads: the
    // resolver takes no call form the checker would refuse.
    let registry = Registry::builtins();
    let mut extra = Vec::new();
    for name in registry.names() {
        let overloads = registry.overloads(name);
        if overloads.iter().any(|o| o.host_slot) {
            continue;
        }
        for receiver in [false, true] {
            for argc in 0..4 {
                let declared = overloads
                    .iter()
                    .any(|o| o.receiver == receiver && o.params.len() == argc);
                if Builtin::resolve(name, receiver, argc).is_some() && !declared {
                    extra.push(format!("{name} (receiver: {receiver}, {argc} argument(s))"));
                }
            }
        }
    }
    assert!(extra.is_empty(), "resolved but never declared: {extra:?}");
}
