//! Policies on where data goes: `domain()` (Public Suffix List, IDN),
//! `lookalike()` (confusable skeleton, edit distance) and scheme-less
//! `url()` decide e-mail and fetch calls through the engine, and an
//! address with no domain fails closed.
use serde_json::json;
use tame_engine::*;

const POLICY: &str = r#"
version: "1"
default: deny
rules:
  - name: lookalike_recipient
    action: deny
    tools: ["send_email"]
    condition: 'lookalike(domain(args.to), "example.com")'
    reason: "{args.to} looks like example.com but is not"
  - name: outside_recipient
    action: approve
    tools: ["send_email"]
    condition: 'domain(args.to) != "example.com"'
  - name: allow_mail
    action: allow
    tools: ["send_email"]
  - name: plain_http
    action: deny
    tools: ["fetch"]
    condition: 'url(args.url).scheme != "https"'
  - name: allow_docs
    action: allow
    tools: ["fetch"]
    condition: 'url(args.url).domain in ["rust-lang.org", "docs.rs"]'
"#;

fn decide(p: &Policy, tool: &str, args: serde_json::Value) -> Decision {
    let call = json!({"tool_name": tool, "tool_args": args});
    p.evaluate(&Request::from_call_json(&call).unwrap(), &NoFacts)
}

fn outcome(p: &Policy, tool: &str, args: serde_json::Value) -> (Action, Option<String>) {
    let d = decide(p, tool, args);
    (d.action, d.rule_name.as_deref().map(str::to_owned))
}

#[test]
fn mail_goes_to_the_registrable_domain_and_lookalikes_are_denied() {
    let p = Policy::from_yaml(POLICY, "policies.yml").unwrap_or_else(|e| panic!("{e}"));
    let allowed = (Action::Allow, Some("allow_mail".to_owned()));
    for to in [
        "ada@example.com",
        "ada@mail.EXAMPLE.com",
        "Ada Lovelace <ada@lists.example.com>",
        "mailto:ada@example.com?subject=hi",
    ] {
        assert_eq!(outcome(&p, "send_email", json!({"to": to})), allowed, "{to}");
    }
    let outside = (Action::Approve, Some("outside_recipient".to_owned()));
    for to in ["bob@example.org", "bob@example.com.evil.io", "bob@example.co.uk"] {
        assert_eq!(outcome(&p, "send_email", json!({"to": to})), outside, "{to}");
    }
    // Cyrillic а, its punycode form, `rn` for `m`, one letter off.
    for to in [
        "ceo@exаmple.com",
        "ceo@xn--exmple-4nf.com",
        "ceo@exarnple.com",
        "ceo@examp1e.com",
        "ceo@exampel.com",
    ] {
        let d = decide(&p, "send_email", json!({"to": to}));
        assert_eq!(d.action, Action::Deny, "{to}: {d:?}");
        assert_eq!(d.rule_name.as_deref(), Some("lookalike_recipient"), "{to}");
    }
}

#[test]
fn an_address_without_a_domain_fails_closed() {
    let p = Policy::from_yaml(POLICY, "policies.yml").unwrap_or_else(|e| panic!("{e}"));
    for to in ["", "ada@", "not an address"] {
        let d = decide(&p, "send_email", json!({"to": to}));
        assert_eq!(d.action, Action::Deny, "{to:?}: {d:?}");
        assert!(d.reason.contains("no domain in"), "{to:?}: {}", d.reason);
    }
}

#[test]
fn fetches_read_scheme_less_urls() {
    let p = Policy::from_yaml(POLICY, "policies.yml").unwrap_or_else(|e| panic!("{e}"));
    let fetch = |url: &str| outcome(&p, "fetch", json!({"url": url}));
    assert_eq!(
        fetch("https://doc.rust-lang.org/std/"),
        (Action::Allow, Some("allow_docs".into()))
    );
    assert_eq!(
        fetch("https://docs.rs/serde"),
        (Action::Allow, Some("allow_docs".into()))
    );
    // Without a scheme the scheme is empty: not https.
    assert_eq!(fetch("docs.rs/serde"), (Action::Deny, Some("plain_http".into())));
    assert_eq!(fetch("http://docs.rs/serde"), (Action::Deny, Some("plain_http".into())));
    // The host a client would reach, not the text after `@` or `\`.
    assert_eq!(
        fetch("https://docs.rs\\@evil.io/"),
        (Action::Allow, Some("allow_docs".into()))
    );
    assert_eq!(fetch("https://docs.rs@evil.io/"), (Action::Deny, None));
    assert_eq!(fetch("https://docs.rs.evil.io/"), (Action::Deny, None));
}
