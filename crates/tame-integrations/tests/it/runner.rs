//! The local tool runner against real python3 subprocesses.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tame_engine::Action;
use tame_integrations::protocol::{PROTOCOL_VERSION, ToolsFile};
use tame_integrations::run::exit;
use tame_integrations::{ApprovalOutcome, CallContext, CallStatus, RunnerSpec, ToolBinding, ToolRunner, run_guarded};

use crate::common::{ScriptedGuard, fixture};

fn local(name: &str, entry: &str, timeout_seconds: Option<f64>) -> ToolBinding {
    ToolBinding {
        name: name.to_owned(),
        runner: RunnerSpec::Local {
            entry: entry.to_owned(),
            python: None,
            python_path: vec![fixture("tools")],
            cwd: None,
            sandbox: false,
        },
        timeout_seconds,
    }
}

#[tokio::test]
async fn success_returns_the_result_and_keeps_stdout_clean() {
    let runner = ToolRunner::default();
    let run = runner
        .execute(
            &local("greet", "sample_tool:greet", None),
            &json!({"name": "Ada"}),
            "t-1",
        )
        .await;
    assert!(run.ok, "{run:#?}");
    assert_eq!(run.result, Some(json!({"message": "Hello Ada", "ok": true})));
    assert_eq!(run.trace.runner, "local");
    assert_eq!(run.trace.timeout_ms, 10_000);
    assert_eq!(run.trace.protocol_version, PROTOCOL_VERSION);
    assert_eq!(run.trace.trace_id, "t-1");
    assert_eq!(run.trace.exit_code, Some(0));
    assert!(run.trace.python_path.as_deref().unwrap().contains("fixtures/tools"));
}

#[tokio::test]
async fn tool_errors_come_back_as_protocol_errors() {
    let runner = ToolRunner::default();
    let run = runner
        .execute(&local("fail", "sample_tool:fail", None), &json!({}), "t")
        .await;
    assert!(!run.ok);
    let error = run.error.unwrap();
    assert_eq!(
        (error.kind.as_str(), error.message.as_str()),
        ("ValueError", "Missing input")
    );

    let run = runner
        .execute(&local("bad_output", "sample_tool:bad_output", None), &json!({}), "t")
        .await;
    assert_eq!(run.error.unwrap().reason_code.as_deref(), Some("bad_result"));

    let run = runner
        .execute(&local("nope", "no_such_module:f", None), &json!({}), "t")
        .await;
    let error = run.error.unwrap();
    assert_eq!(error.kind, "ModuleNotFoundError");
    assert!(error.message.contains("no_such_module"), "{error:?}");

    let run = runner
        .execute(&local("nope", "sample_tool", None), &json!({}), "t")
        .await;
    assert_eq!(run.error.unwrap().reason_code.as_deref(), Some("bad_entry"));
}

#[tokio::test]
async fn a_crash_is_a_tool_error_with_stderr() {
    let run = ToolRunner::default()
        .execute(&local("die", "sample_tool:die", None), &json!({}), "t")
        .await;
    assert!(!run.ok);
    let error = run.error.unwrap();
    assert_eq!(error.kind, "ToolCrashed");
    assert!(error.message.contains("exit code 7"), "{error:?}");
    assert!(error.message.contains("about to die"), "{error:?}");
    assert_eq!(run.trace.exit_code, Some(7));
}

#[tokio::test]
async fn exit_zero_without_json_is_a_protocol_error() {
    let run = ToolRunner::default()
        .execute(&local("raw", "sample_tool:raw_garbage", None), &json!({}), "t")
        .await;
    let error = run.error.unwrap();
    assert_eq!(error.kind, "ProtocolError");
    assert!(error.message.contains("not json at all"), "{error:?}");
}

#[tokio::test]
async fn timeouts_kill_the_tool_per_tool_override_first() {
    let runner = ToolRunner::new(Duration::from_secs(30));
    let binding = local("sleepy", "sample_tool:sleepy", Some(0.5));
    let run = runner.execute(&binding, &json!({"seconds": 60}), "t").await;
    assert!(!run.ok);
    let error = run.error.unwrap();
    assert_eq!(error.kind, "ToolTimeout");
    assert_eq!(run.trace.timeout_ms, 500);
    // Killed, not waited for: far less than the tool's 60 s.
    assert!(run.trace.duration_ms < 30_000, "{}", run.trace.duration_ms);
    // The runner's default applies without an override.
    assert_eq!(runner.timeout_for(&local("x", "m:f", None)), Duration::from_secs(30));
    assert_eq!(
        runner.timeout_for(&local("x", "m:f", Some(-1.0))),
        Duration::from_secs(30)
    );
}

#[tokio::test]
async fn the_policy_decides_before_anything_runs() {
    let guard = ScriptedGuard::new(&[
        ("greet", Action::Allow),
        ("die", Action::Deny),
        ("sleepy", Action::Approve),
    ]);
    let runner = ToolRunner::default();
    let ctx = CallContext {
        session_id: Some("s-9".into()),
        agent_id: Some("a".into()),
        ..CallContext::default()
    };

    let report = run_guarded(
        &guard,
        &runner,
        &local("greet", "sample_tool:greet", None),
        &json!({"name": "Bo"}),
        &ctx,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(report.exit_code(), exit::OK);
    assert!(report.executed && report.ok);
    assert_eq!(report.result.as_ref().unwrap()["message"], "Hello Bo");
    let records = guard.records();
    assert_eq!(records.len(), 1);
    let (verdict, outcome) = &records[0];
    assert_eq!(verdict.session_id, "s-9");
    assert_eq!(outcome.status, CallStatus::Success);
    assert_eq!(outcome.extra["trace"]["runner"], "local");
    assert_eq!(outcome.extra["trace"]["protocol_version"], 1);
    assert!(outcome.extra["trace"]["duration_ms"].is_u64());

    // Denied: `die` would crash, but never runs.
    let report = run_guarded(
        &guard,
        &runner,
        &local("die", "sample_tool:die", None),
        &json!({}),
        &ctx,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(report.exit_code(), exit::DENIED);
    assert!(!report.executed);
    assert_eq!(report.error.as_ref().unwrap().kind, "PolicyDenied");
    assert_eq!(report.reason, "scripted deny of die");
    assert_eq!(guard.records().len(), 1, "nothing recorded for a call that did not run");

    // Approval pending: not run, exit code says so.
    let report = run_guarded(
        &guard,
        &runner,
        &local("sleepy", "sample_tool:sleepy", None),
        &json!({"seconds": 0}),
        &ctx,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(report.exit_code(), exit::PENDING_APPROVAL);
    assert!(
        report
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("pending approval id: appr-")
    );

    // Approved: runs.
    let mut approving = ScriptedGuard::new(&[("sleepy", Action::Approve)]);
    approving.approval = Some(ApprovalOutcome::Approved);
    let report = run_guarded(
        &approving,
        &runner,
        &local("sleepy", "sample_tool:sleepy", None),
        &json!({"seconds": 0}),
        &ctx,
        Duration::from_secs(1),
    )
    .await;
    assert!(report.ok, "{report:#?}");

    // A failing tool is recorded as an error.
    let report = run_guarded(
        &guard,
        &runner,
        &local("greet", "sample_tool:greet", None),
        &json!({}),
        &ctx,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(report.exit_code(), exit::TOOL_FAILED);
    let records = guard.records();
    assert_eq!(records.last().unwrap().1.status, CallStatus::Error);
    assert_eq!(
        records.last().unwrap().1.error_message.as_deref(),
        Some("ValueError: Missing input")
    );
}

#[test]
fn tools_files_resolve_paths_and_timeouts() {
    let text = "defaults:\n  timeout_seconds: 4\ntools:\n  greet:\n    runner: local\n    entry: sample_tool:greet\n    python_path: [tools]\n  slow:\n    runner: local\n    entry: sample_tool:sleepy\n    timeout_seconds: 1.5\n  weather:\n    runner: service\n    url: http://127.0.0.1:1/run\n";
    let file = ToolsFile::from_yaml(text, "tools.yaml", &fixture("")).unwrap();
    let greet = file.binding("greet").unwrap();
    assert_eq!(greet.timeout_seconds, Some(4.0));
    match &greet.runner {
        RunnerSpec::Local { python_path, .. } => assert_eq!(python_path, &vec![fixture("tools")]),
        other => panic!("{other:?}"),
    }
    assert_eq!(file.binding("slow").unwrap().timeout_seconds, Some(1.5));
    assert!(matches!(
        file.binding("weather").unwrap().runner,
        RunnerSpec::Service { .. }
    ));
    assert!(file.binding("missing").is_none());

    let err = ToolsFile::from_yaml("tools:\n  x:\n    runner: rocket\n", "bad.yaml", &fixture("")).unwrap_err();
    assert!(format!("{err:#}").contains("bad.yaml"), "{err:#}");
}

#[test]
fn run_tool_refuses_to_nest_runtimes_and_checks_its_options() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(async { tame_integrations::run_tool(Default::default()) })
        .unwrap_err();
    assert!(err.to_string().contains("run_tool_async"), "{err}");
    let opts = tame_integrations::RunToolOptions {
        tool: "x".into(),
        payload: json!({}),
        ..Default::default()
    };
    let err = tame_integrations::run_tool(opts).unwrap_err();
    assert!(err.to_string().contains("has no binding"), "{err}");
    let _ = Arc::new(());
}
