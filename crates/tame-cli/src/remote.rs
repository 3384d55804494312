//! Server commands over the HTTP API, compatible with the TameSDK CLI:
//! `status`, `policy ...`, `enforce`, `test TOOL`, `approvals`,
//! `sessions` and `audit`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::Exit;
use crate::cli::{
    ApprovalsAction, ApprovalsArgs, AuditAction, AuditArgs, EnforceArgs, PolicyAction, SessionsAction, SessionsArgs,
};
use crate::client::{Client, ServerOpts, encode, parse_object, rendered_diagnostics, show, str_field};
use crate::error::CliError;
use crate::output::{Out, bold, decision_word, dim};

/// `tame status`: is the server there, and what does it serve?
pub fn status(opts: &ServerOpts, out: &Out) -> Result<Exit, CliError> {
    let client = Client::new(opts)?;
    let health = client.get("/health", &[])?;
    // The policy summary is a bonus: a key without read rights still gets
    // the health line.
    let policy = client.get("/api/v1/policy/current", &[]);
    if out.json {
        out.json_pretty(&json!({
            "url": client.url(),
            "connected": true,
            "health": health,
            "policy": policy.as_ref().ok(),
        }));
        return Ok(Exit::Ok);
    }
    out.line(format!(
        "{} connected to {}",
        crate::output::pass_word(true),
        bold(client.url())
    ));
    if let Some(status) = health.get("status") {
        out.line(format!("  status:  {}", show(Some(status))));
    }
    if let Some(version) = health.get("version") {
        out.line(format!("  server:  {}", show(Some(version))));
    }
    match &policy {
        Ok(policy) => out.line(format!(
            "  policy:  version {} ({} rules)",
            show(policy.get("version")),
            show(policy.get("rules_count"))
        )),
        Err(CliError::Server { status, .. }) if *status == 401 || *status == 403 => {
            out.line(format!(
                "  policy:  {}",
                dim(format!(
                    "not readable with this API key ({status}); set --api-key or TAME_API_KEY"
                ))
            ));
        }
        Err(other) => out.line(format!("  policy:  {}", dim(other))),
    }
    Ok(Exit::Ok)
}

/// `tame policy`: the server's current policy.
pub fn policy(opts: &ServerOpts, out: &Out) -> Result<Exit, CliError> {
    let client = Client::new(opts)?;
    let policy = client.get("/api/v1/policy/current", &[])?;
    if out.json {
        out.json_pretty(&policy);
        return Ok(Exit::Ok);
    }
    print_policy(&policy, out);
    Ok(Exit::Ok)
}

/// `tame policy [show|validate|reload|versions]`.
pub fn policy_command(action: Option<&PolicyAction>, opts: &ServerOpts, out: &Out) -> Result<Exit, CliError> {
    match action {
        // Local actions are dispatched before this; show the policy.
        None
        | Some(PolicyAction::Show)
        | Some(PolicyAction::Graph(_))
        | Some(PolicyAction::Check(_))
        | Some(PolicyAction::Test(_)) => policy(opts, out),
        Some(PolicyAction::Validate { file }) => {
            let content = read_policy_text(file)?;
            let client = Client::new(opts)?;
            let report = client.post("/api/v1/policy/validate", &json!({"policy_content": content}))?;
            let valid = report.get("is_valid").and_then(Value::as_bool) == Some(true);
            if out.json {
                out.json_pretty(&report);
            } else if valid {
                out.line(format!(
                    "{} {} is valid on {}: version {}, {} rules",
                    crate::output::pass_word(true),
                    file.display(),
                    client.url(),
                    show(report.get("version")),
                    show(report.get("rules_count"))
                ));
            } else {
                out.line(format!(
                    "{} {} does not compile:",
                    crate::output::pass_word(false),
                    file.display()
                ));
                for line in rendered_diagnostics(&report) {
                    out.line(line);
                }
            }
            Ok(if valid { Exit::Ok } else { Exit::Error })
        }
        Some(PolicyAction::Reload { file }) => {
            let client = Client::new(opts)?;
            let body = match file {
                Some(file) => json!({"policy_content": read_policy_text(file)?}),
                None => json!({}),
            };
            let report = client.post("/api/v1/policy/reload", &body)?;
            if out.json {
                out.json_pretty(&report);
            } else {
                out.line(format!(
                    "{} policy {}: version {}, {} rules, hash {}",
                    crate::output::pass_word(true),
                    show(report.get("status")),
                    show(report.get("version")),
                    show(report.get("rules_count")),
                    dim(show(report.get("hash")))
                ));
            }
            Ok(Exit::Ok)
        }
        Some(PolicyAction::Versions) => {
            let client = Client::new(opts)?;
            let report = client.get("/api/v1/policy/versions", &[])?;
            if out.json {
                out.json_pretty(&report);
                return Ok(Exit::Ok);
            }
            let versions = report
                .get("versions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for v in &versions {
                let active = if v.get("active").and_then(Value::as_bool) == Some(true) {
                    crate::output::good("active")
                } else {
                    String::new()
                };
                out.line(format!(
                    "{:>4}  {:<12} {}  {}  {} {active}",
                    show(v.get("id")),
                    show(v.get("version")),
                    dim(show(v.get("hash")).get(..12).unwrap_or("")),
                    show(v.get("loaded_at")),
                    show(v.get("origin")),
                ));
            }
            Ok(Exit::Ok)
        }
    }
}

fn read_policy_text(file: &std::path::Path) -> Result<String, CliError> {
    std::fs::read_to_string(file).map_err(|source| CliError::Read {
        path: file.to_path_buf(),
        source,
    })
}

/// Prints a `/api/v1/policy/current` document for humans.
pub fn print_policy(policy: &Value, out: &Out) {
    out.line(format!("{} {}", bold("policy"), show(policy.get("version"))));
    if let Some(desc) = policy.get("description").and_then(Value::as_str) {
        out.line(format!("  description: {desc}"));
    }
    out.line(format!("  hash:        {}", show(policy.get("hash"))));
    out.line(format!("  rules:       {}", show(policy.get("rules_count"))));
    if let Some(updated) = policy.get("last_updated") {
        out.line(format!("  updated:     {}", show(Some(updated))));
    }
    if let Some(rules) = policy.get("rules").and_then(Value::as_array) {
        for rule in rules {
            let action = str_field(rule, "action");
            let tools = match rule.get("tools") {
                Some(Value::Array(list)) => list.iter().map(|t| show(Some(t))).collect::<Vec<_>>().join(", "),
                Some(Value::Null) | None => String::from("*"),
                other => show(other),
            };
            out.line(format!(
                "  - {:<32} {:<8} {}",
                str_field(rule, "name"),
                decision_word(action),
                dim(tools)
            ));
        }
    }
}

/// The body of an enforce request.
pub fn enforce_body(
    tool: &str,
    args: Value,
    session_id: Option<&str>,
    agent_id: Option<&str>,
    user_id: Option<&str>,
    metadata: Option<Value>,
) -> Value {
    let mut body = json!({"tool_name": tool, "tool_args": args});
    if let Some(s) = session_id {
        crate::output::set(&mut body, "session_id", s);
    }
    if let Some(a) = agent_id {
        crate::output::set(&mut body, "agent_id", a);
    }
    if let Some(u) = user_id {
        crate::output::set(&mut body, "user_id", u);
    }
    if let Some(m) = metadata {
        crate::output::set(&mut body, "metadata", m);
    }
    body
}

/// `tame enforce`: one real call; the exit code is the decision. With
/// `--wait`, an `approve` decision waits for a human and, once approved,
/// releases the call (the server evaluates it again).
pub fn enforce(args: &EnforceArgs, opts: &ServerOpts, out: &Out) -> Result<Exit, CliError> {
    let tool_args = parse_object(&args.args, "--args")?;
    let metadata = args
        .metadata
        .as_deref()
        .map(|m| parse_object(m, "--metadata"))
        .transpose()?;
    let client = Client::new(opts)?;
    let mut body = enforce_body(
        &args.tool,
        tool_args,
        args.session_id.as_deref(),
        args.agent_id.as_deref(),
        args.user_id.as_deref(),
        metadata,
    );
    if let Some(id) = &args.approval_id {
        crate::output::set(&mut body, "approval_id", id.as_str());
    }
    let decision = client.post("/api/v1/enforce", &body)?;
    let approval_id = decision.get("approval_id").and_then(Value::as_str).map(str::to_string);
    let (Some(wait), Some(approval_id)) = (args.wait.filter(|w| *w > 0), approval_id) else {
        print_decision(&decision, out);
        return Ok(exit_for(&decision));
    };
    if !out.json {
        print_decision(&decision, out);
        out.line(dim(format!("waiting up to {wait} s for approval {approval_id}...")));
    }
    let state = wait_for_approval(&approval_id, wait, opts)?;
    match state.as_str() {
        "approved" => {
            // Release: the same call, same session, with the approval's id.
            if let Some(sid) = decision.get("session_id").and_then(Value::as_str) {
                crate::output::set(&mut body, "session_id", sid);
            }
            crate::output::set(&mut body, "approval_id", approval_id.as_str());
            let released = client.post("/api/v1/enforce", &body)?;
            print_decision(&released, out);
            Ok(exit_for(&released))
        }
        "pending" => {
            if out.json {
                print_decision(&decision, out);
            } else {
                out.line(format!("approval {approval_id} is still pending"));
            }
            Ok(Exit::Approve)
        }
        other => {
            if out.json {
                let mut d = decision.clone();
                crate::output::set(&mut d, "decision", "deny");
                crate::output::set(&mut d, "approval_state", other);
                out.json_pretty(&d);
            } else {
                out.line(format!("{}  approval {approval_id} was {other}", decision_word("deny")));
            }
            Ok(Exit::Deny)
        }
    }
}

/// Long-polls an approval until it is decided or `wait` seconds pass;
/// returns its state (`approved`, `rejected`, `expired` or `pending`).
fn wait_for_approval(id: &str, wait: u64, opts: &ServerOpts) -> Result<String, CliError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // The server caps one poll below a minute; ask for at most 50 s.
        let poll = left.as_secs().clamp(1, 50);
        let poll_opts = ServerOpts {
            timeout_secs: poll + opts.timeout_secs,
            ..opts.clone()
        };
        let client = Client::new(&poll_opts)?;
        let poll_text = poll.to_string();
        let answer = client.get(
            &format!("/api/v1/approvals/{}/wait", encode(id)),
            &[("timeout", &poll_text)],
        )?;
        let state = str_field(&answer, "state").to_string();
        if state != "pending" || std::time::Instant::now() >= deadline {
            return Ok(if state.is_empty() {
                String::from("pending")
            } else {
                state
            });
        }
    }
}

fn exit_for(decision: &Value) -> Exit {
    Exit::for_decision_str(str_field(decision, "decision"))
}

/// Prints a server decision for humans or as JSON.
pub fn print_decision(decision: &Value, out: &Out) {
    if out.json {
        out.json_pretty(decision);
        return;
    }
    let word = str_field(decision, "decision");
    out.line(format!(
        "{}  {}",
        decision_word(word),
        bold(show(decision.get("rule_name")))
    ));
    out.line(format!("  {:<16} {}", "reason:", show(decision.get("reason"))));
    for key in ["session_id", "log_id", "approval_id", "policy_version"] {
        if let Some(v) = decision.get(key).filter(|v| !v.is_null()) {
            out.line(format!("  {:<16} {}", format!("{key}:"), dim(show(Some(v)))));
        }
    }
}

/// `tame test TOOL --args JSON`: a dry run on the server (no audit entry).
/// Falls back to a real enforce on servers without the dry-run route, as
/// the TameSDK CLI did, and says so.
pub fn test_call(tool: &str, args: Value, opts: &ServerOpts, out: &Out) -> Result<Exit, CliError> {
    let client = Client::new(opts)?;
    let body = enforce_body(tool, args, None, None, None, None);
    let decision = match client.post("/api/v1/policy/test", &body) {
        Ok(dry) => normalize_dry_run(dry),
        Err(CliError::Server { status: 404 | 405, .. }) => {
            out.warning("the server has no dry-run route; enforcing the call instead (it is logged)");
            client.post("/api/v1/enforce", &body)?
        }
        Err(other) => return Err(other),
    };
    print_decision(&decision, out);
    Ok(exit_for(&decision))
}

/// A dry run answers `{"decision": {"action", "rule_name", ...},
/// "explanation", "logged": false}`; flatten it to the enforce shape.
fn normalize_dry_run(dry: Value) -> Value {
    let Some(inner) = dry.get("decision").filter(|d| d.is_object()) else {
        return dry;
    };
    let mut flat = json!({
        "decision": inner.get("action").cloned().unwrap_or(Value::Null),
        "rule_name": inner.get("rule_name").cloned().unwrap_or(Value::Null),
        "reason": inner.get("reason").cloned().unwrap_or(Value::Null),
        "policy_version": inner.get("policy_version").cloned().unwrap_or(Value::Null),
    });
    if let Some(logged) = dry.get("logged") {
        crate::output::set(&mut flat, "logged", logged.clone());
    }
    flat
}

/// `tame approvals ...`.
pub fn approvals(args: &ApprovalsArgs, opts: &ServerOpts, out: &Out) -> Result<Exit, CliError> {
    let client = Client::new(opts)?;
    match &args.action {
        ApprovalsAction::List => {
            let list = client.get("/api/v1/approvals", &[])?;
            if out.json {
                out.json_pretty(&list);
                return Ok(Exit::Ok);
            }
            let items = match &list {
                Value::Array(items) => items.clone(),
                other => other
                    .get("approvals")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            };
            if items.is_empty() {
                out.line("no pending approvals");
            }
            for item in &items {
                out.line(format!(
                    "{}  {}  {}  {}",
                    bold(show(item.get("approval_id").or_else(|| item.get("id")))),
                    show(item.get("state").or_else(|| item.get("status"))),
                    show(item.get("tool_name")),
                    dim(show(item.get("tool_args")))
                ));
                if let Some(rule) = item.get("rule_name").filter(|v| !v.is_null()) {
                    out.line(format!(
                        "    rule {}, session {}, created {}",
                        show(Some(rule)),
                        show(item.get("session_id")),
                        show(item.get("created_at"))
                    ));
                }
            }
            Ok(Exit::Ok)
        }
        ApprovalsAction::Approve { id, reason, by } => {
            let mut body = json!({});
            if let Some(r) = reason {
                crate::output::set(&mut body, "reason", r.clone());
            }
            if let Some(b) = by {
                crate::output::set(&mut body, "by", b.clone());
            }
            let resp = client.post(&format!("/api/v1/approvals/{}/approve", encode(id)), &body)?;
            report_approval(&resp, id, "approved", out);
            Ok(Exit::Ok)
        }
        ApprovalsAction::Reject { id, reason, by } => {
            let mut body = json!({"reason": reason});
            if let Some(b) = by {
                crate::output::set(&mut body, "by", b.clone());
            }
            let resp = client.post(&format!("/api/v1/approvals/{}/reject", encode(id)), &body)?;
            report_approval(&resp, id, "rejected", out);
            Ok(Exit::Ok)
        }
    }
}

fn report_approval(resp: &Value, id: &str, verb: &str, out: &Out) {
    if out.json {
        out.json_pretty(resp);
    } else {
        out.line(format!("{verb} {}", bold(id)));
    }
}

/// `tame sessions [show ID | summary ID]`.
pub fn sessions(args: &SessionsArgs, opts: &ServerOpts, out: &Out) -> Result<Exit, CliError> {
    let client = Client::new(opts)?;
    match &args.action {
        None => {
            let page = args.page.to_string();
            let size = args.page_size.to_string();
            let mut query: Vec<(&str, &str)> = vec![("page", &page), ("page_size", &size)];
            if let Some(a) = &args.agent_id {
                query.push(("agent_id", a));
            }
            if let Some(u) = &args.user_id {
                query.push(("user_id", u));
            }
            let list = client.get("/api/v1/sessions", &query)?;
            if out.json {
                out.json_pretty(&list);
                return Ok(Exit::Ok);
            }
            let sessions = list
                .get("sessions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            out.line(format!(
                "{} of {} sessions (page {})",
                sessions.len(),
                show(list.get("total_count")),
                show(list.get("page"))
            ));
            for s in &sessions {
                print_summary(s, out);
            }
        }
        Some(SessionsAction::Summary { id }) => {
            let summary = client.get(&format!("/api/v1/sessions/{}/summary", encode(id)), &[])?;
            if out.json {
                out.json_pretty(&summary);
            } else {
                print_summary(&summary, out);
            }
        }
        Some(SessionsAction::Show { id }) => {
            let log = client.get(&format!("/api/v1/sessions/{}", encode(id)), &[])?;
            if out.json {
                out.json_pretty(&log);
                return Ok(Exit::Ok);
            }
            for entry in log.as_array().into_iter().flatten() {
                out.line(format!(
                    "{}  {:<8} {:<24} {}  {}",
                    dim(show(entry.get("timestamp"))),
                    decision_word(str_field(entry, "policy_decision")),
                    show(entry.get("tool_name")),
                    show(entry.get("policy_rule")),
                    dim(show(entry.get("tool_args")))
                ));
                if let Some(status) = entry.get("execution_status").filter(|v| !v.is_null()) {
                    out.line(format!(
                        "    result: {} {}",
                        show(Some(status)),
                        dim(show(entry.get("execution_duration_ms")) + " ms")
                    ));
                }
            }
        }
    }
    Ok(Exit::Ok)
}

fn print_summary(s: &Value, out: &Out) {
    out.line(format!(
        "{}  {} calls: {} allowed, {} denied, {} approve  {}",
        bold(show(s.get("session_id"))),
        show(s.get("total_calls")),
        show(s.get("allowed_calls")),
        show(s.get("denied_calls")),
        show(s.get("approved_calls")),
        dim(format!(
            "agent {}, user {}, since {}",
            show(s.get("agent_id")),
            show(s.get("user_id")),
            show(s.get("start_time"))
        ))
    ));
}

/// `tame audit verify`: exit 0 when the chain is intact, 1 when not (every
/// problem the server found is printed, one per line).
pub fn audit(args: &AuditArgs, opts: &ServerOpts, out: &Out) -> Result<Exit, CliError> {
    let client = Client::new(opts)?;
    match args.action {
        AuditAction::Export => {
            match client.get("/api/v1/audit/export", &[])? {
                // Several JSON lines do not parse as one document.
                Value::String(text) => {
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        out.line(line);
                    }
                }
                Value::Null => {}
                one => out.json_line(&one),
            }
            Ok(Exit::Ok)
        }
        AuditAction::Verify => {
            let report = client.get("/api/v1/audit/verify", &[])?;
            let ok = ["ok", "valid", "verified", "intact"]
                .iter()
                .find_map(|k| report.get(*k).and_then(Value::as_bool))
                .unwrap_or(false);
            if out.json {
                out.json_pretty(&report);
            } else if ok {
                out.line(format!(
                    "{} audit chain intact ({} records checked)",
                    crate::output::pass_word(true),
                    show(
                        report
                            .get("records")
                            .or_else(|| report.get("checked"))
                            .or_else(|| report.get("count"))
                    )
                ));
            } else {
                let problems = describe_problems(&report);
                match problems.as_slice() {
                    [one] => out.line(format!("{} audit chain broken: {one}", crate::output::pass_word(false))),
                    many => {
                        out.line(format!(
                            "{} audit chain broken: {} problems",
                            crate::output::pass_word(false),
                            many.len()
                        ));
                        for problem in many {
                            out.line(format!("  - {problem}"));
                        }
                    }
                }
            }
            Ok(if ok { Exit::Ok } else { Exit::Error })
        }
    }
}

/// Every problem of an audit report (`problems`; from an older server,
/// its `first_problem`), each naming its record, and how many more the
/// server counted without listing them.
fn describe_problems(report: &Value) -> Vec<String> {
    let listed: Vec<&Value> = match report.get("problems").and_then(Value::as_array) {
        Some(problems) if !problems.is_empty() => problems.iter().collect(),
        _ => report
            .get("first_problem")
            .filter(|p| !p.is_null())
            .into_iter()
            .collect(),
    };
    if listed.is_empty() {
        return vec![show(report.get("error").or_else(|| report.get("detail")))];
    }
    let mut lines: Vec<String> = listed.into_iter().map(describe_problem).collect();
    if let Some(more) = report.get("more_problems").and_then(Value::as_u64).filter(|n| *n > 0) {
        lines.push(format!("... and {more} more"));
    }
    lines
}

/// One problem of an audit report, naming the record.
fn describe_problem(problem: &Value) -> String {
    let mut text = show(problem.get("message"));
    if let Some(seq) = problem.get("seq").filter(|v| !v.is_null()) {
        text.push_str(&format!(" (record #{}", show(Some(seq))));
        if let Some(id) = problem.get("ref_id").filter(|v| !v.is_null()) {
            text.push_str(&format!(", log {}", show(Some(id))));
        }
        text.push(')');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_problems_name_the_record() {
        let report = json!({"valid": false, "records": 9, "first_problem": {
            "kind": "hash_mismatch", "seq": 4, "ref_id": "log-4", "message": "record was edited"}});
        assert_eq!(describe_problems(&report), ["record was edited (record #4, log log-4)"]);
        assert_eq!(describe_problems(&json!({"detail": "x"})), ["x"]);
    }

    #[test]
    fn every_audit_problem_is_described() {
        let edited = json!({"kind": "edited", "seq": 2, "ref_id": "l2", "message": "record 2 was edited"});
        let short = json!({"kind": "truncated", "seq": 5, "ref_id": null,
            "message": "log shorter than witnessed head (seq 7, found 4)"});
        let report = json!({"valid": false, "records": 4, "first_problem": edited,
            "problems": [edited, short], "more_problems": 3});
        assert_eq!(
            describe_problems(&report),
            [
                "record 2 was edited (record #2, log l2)",
                "log shorter than witnessed head (seq 7, found 4) (record #5)",
                "... and 3 more",
            ]
        );
    }

    #[test]
    fn dry_runs_are_flattened_to_the_enforce_shape() {
        let dry = json!({"decision": {"action": "deny", "rule_name": "r", "reason": "x",
            "policy_version": "1"}, "explanation": {}, "logged": false});
        assert_eq!(
            normalize_dry_run(dry),
            json!({"decision": "deny", "rule_name": "r", "reason": "x", "policy_version": "1", "logged": false})
        );
        let enforce = json!({"decision": "allow", "log_id": "7"});
        assert_eq!(normalize_dry_run(enforce.clone()), enforce);
    }
}
