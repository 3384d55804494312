//! `tame replay POLICY SOURCE`: decides past calls again under a candidate
//! policy and shows what would change, as a step of the tuning loop.
//!
//! SOURCE is read as a stream, one record at a time, whatever its size:
//!
//! - an audit export (`tame audit export`): `decision` records are calls
//!   (with the decision they got), `result` records bring the labels they
//!   attached to the session, a decision with `released_by` is a call a
//!   human released after approval;
//! - a session export (`tame sessions show ID --json`: a JSON array, or its
//!   entries one a line): `tool_name`, `tool_args`, `policy_decision`,
//!   `policy_rule`, `timestamp`;
//! - JSON lines as `tame eval` reads them (`now`, `session` included), with
//!   an optional `decision` (what it got) and `expect` (what it should get:
//!   a label); `input` and `result` steps.
//!
//! Session history is replayed in order, separately for each policy, in the
//! one session state every frontend records in (`tame_enforce::SessionState`): a call
//! a policy allows counts for that policy's later session rules; a call it
//! sends for approval counts only when the log shows it released.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::{Value, json};
use tame_enforce::{ResultSource, SessionState};
use tame_engine::{Action, Decision, MemoryFacts, Policy, Request};

use crate::Exit;
use crate::error::CliError;
use crate::local::{load_policy, parse_call};
use crate::output::{Out, bold, dim};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The candidate policy
    pub policy: PathBuf,
    /// An audit export, a session export or JSON lines of calls; `-` reads
    /// standard input
    pub source: String,
    /// Compare with this policy instead of the recorded decisions; with
    /// labelled calls, exit 1 when a call the baseline decided as labelled
    /// is decided otherwise
    #[arg(long, value_name = "OLD.yml")]
    pub baseline: Option<PathBuf>,
    /// Examples shown per kind of change (and of regression)
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub examples: usize,
}

/// One record of the source.
enum Step {
    Call(Box<Replayed>),
    /// A human released an approved call (audit `released_by`).
    Release {
        session: Option<String>,
        approval_id: String,
        tool: String,
        at: jiff::Timestamp,
        log_id: Option<String>,
    },
    /// What a call returned: for the call logged as `log_id`, or (a
    /// `tame eval` line) for the session's latest call.
    Result {
        session: String,
        log_id: Option<String>,
        /// The result as posted (`{"result": ...}` or the whole output).
        body: Value,
        source: ResultSource,
        /// Labels it attached to the session.
        labels: Vec<String>,
    },
    /// What the user asked.
    Input {
        session: String,
        text: String,
        at: jiff::Timestamp,
    },
    /// A record that decides nothing (an approval record).
    Skip,
}

struct Replayed {
    request: Request,
    /// `session` facts on a `tame eval` line: the session's facts from here.
    facts: Option<MemoryFacts>,
    /// The decision recorded in the source.
    recorded: Option<(Action, Option<String>)>,
    /// The label: what the call should get.
    expect: Option<Action>,
    /// The approval this call's recorded decision opened (audit).
    approval_id: Option<String>,
    /// The call's log entry, which its result names (audit).
    log_id: Option<String>,
}

fn action_of(value: Option<&Value>, what: &str) -> Result<Option<Action>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "allow" => Ok(Some(Action::Allow)),
            "deny" => Ok(Some(Action::Deny)),
            "approve" => Ok(Some(Action::Approve)),
            other => Err(format!("`{what}` is `{other}`, expected `allow`, `deny` or `approve`")),
        },
        Some(_) => Err(format!("`{what}` must be a string")),
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn timestamp_of(v: &Value, key: &str) -> Result<Option<jiff::Timestamp>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse::<jiff::Timestamp>()
            .map(Some)
            .map_err(|e| format!("`{key}` is not an RFC 3339 timestamp: {e}")),
        Some(_) => Err(format!("`{key}` must be an RFC 3339 timestamp string")),
    }
}

/// A call in the server's shape, from a record with these field names.
fn call_from(v: &Value, session: Option<String>) -> Result<Request, String> {
    let mut call = serde_json::Map::new();
    for key in ["tool_name", "tool_args", "agent_id", "user_id", "metadata"] {
        if let Some(x) = v.get(key).filter(|x| !x.is_null()) {
            call.insert(key.to_owned(), x.clone());
        }
    }
    if let Some(s) = session {
        call.insert("session_id".into(), Value::String(s));
    }
    Request::from_call_json(&Value::Object(call)).map_err(|e| e.to_string())
}

/// Reads one record, whichever of the three shapes it has.
fn parse_step(v: &Value) -> Result<Step, String> {
    if !v.is_object() {
        return Err(String::from("a record must be a JSON object"));
    }
    // Audit export: {seq, kind, ts, session_id, record: {...}, hash, ...}.
    if let (Some(kind), Some(record)) = (v.get("kind").and_then(Value::as_str), v.get("record")) {
        let session = str_of(v, "session_id").or_else(|| str_of(record, "session_id"));
        return match kind {
            "decision" => {
                let mut request = call_from(record, session.clone())?;
                if let Some(at) = timestamp_of(record, "timestamp")?.or(timestamp_of(v, "ts")?) {
                    request.now = at;
                }
                if let Some(approval_id) = str_of(record, "released_by") {
                    return Ok(Step::Release {
                        session,
                        approval_id,
                        tool: request.tool.to_string(),
                        at: request.now,
                        log_id: str_of(record, "log_id"),
                    });
                }
                let action = action_of(record.get("decision"), "record.decision")?;
                Ok(Step::Call(Box::new(Replayed {
                    request,
                    facts: None,
                    recorded: action.map(|a| (a, str_of(record, "rule_name"))),
                    expect: None,
                    approval_id: str_of(record, "approval_id"),
                    log_id: str_of(record, "log_id"),
                })))
            }
            "result" => match session {
                Some(session) => {
                    let labels = record
                        .get("labels")
                        .and_then(Value::as_array)
                        .map(|l| l.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                        .unwrap_or_default();
                    Ok(Step::Result {
                        session,
                        log_id: str_of(record, "log_id"),
                        body: record.get("result").cloned().unwrap_or(Value::Null),
                        source: str_of(record, "source")
                            .and_then(|s| ResultSource::parse(&s))
                            .unwrap_or(ResultSource::Agent),
                        labels,
                    })
                }
                None => Ok(Step::Skip),
            },
            "input" => match (session, str_of(record, "text")) {
                (Some(session), Some(text)) => Ok(Step::Input {
                    session,
                    text,
                    at: timestamp_of(record, "timestamp")?
                        .or(timestamp_of(v, "ts")?)
                        .unwrap_or_else(jiff::Timestamp::now),
                }),
                _ => Ok(Step::Skip),
            },
            _ => Ok(Step::Skip),
        };
    }
    // Session export entry: {session_id, timestamp, tool_name, policy_decision, ...}.
    if v.get("policy_decision").is_some() {
        let mut request = call_from(v, str_of(v, "session_id"))?;
        if let Some(at) = timestamp_of(v, "timestamp")? {
            request.now = at;
        }
        let action = action_of(v.get("policy_decision"), "policy_decision")?;
        return Ok(Step::Call(Box::new(Replayed {
            request,
            facts: None,
            recorded: action.map(|a| (a, str_of(v, "policy_rule"))),
            expect: action_of(v.get("expect"), "expect")?,
            approval_id: None,
            log_id: None,
        })));
    }
    // `tame eval` lines: calls, and `input` / `result` steps (one line
    // format: `crate::steps`).
    if v.get("tool_name").is_none() {
        return match crate::steps::parse_step(v).map_err(|e| e.to_string())? {
            crate::steps::Step::Input { session_id, text } => Ok(Step::Input {
                session: session_id,
                text,
                at: jiff::Timestamp::now(),
            }),
            crate::steps::Step::Result { session_id, value } => {
                let body = json!({ "result": value });
                let labels = tame_engine::labels(&tame_engine::Scanner::global().scan(&body));
                Ok(Step::Result {
                    session: session_id,
                    log_id: None,
                    body,
                    source: ResultSource::Agent,
                    labels,
                })
            }
            crate::steps::Step::Call(_) => Err(String::from("`tool_name`: missing")),
        };
    }
    let mut call = v.clone();
    let recorded = action_of(v.get("decision"), "decision")?;
    let expect = action_of(v.get("expect"), "expect")?;
    if let Some(obj) = call.as_object_mut() {
        for key in ["decision", "rule_name", "expect", "reason", "policy_version"] {
            obj.remove(key);
        }
    }
    let (request, facts) = parse_call(&call)?;
    Ok(Step::Call(Box::new(Replayed {
        request,
        facts,
        recorded: recorded.map(|a| (a, str_of(v, "rule_name"))),
        expect,
        approval_id: None,
        log_id: None,
    })))
}

/// A rule's hits and time under one policy.
#[derive(Clone, Copy, Debug, Default)]
struct RuleStat {
    hits: u64,
    nanos: u128,
}

/// One policy replayed: its session state and its rule statistics.
struct Side {
    policy: Policy,
    /// Each session as this policy would have left it: the one session
    /// state every frontend records in (`tame_enforce::SessionState`).
    sessions: HashMap<Arc<str>, SessionState>,
    /// Approvals of recorded decisions, with this policy's decision of the
    /// call that opened them.
    approvals: HashMap<String, Action>,
    rules: HashMap<Option<Arc<str>>, RuleStat>,
    eval_time: Duration,
    /// Log ids given to calls the source names none for.
    next_id: u64,
}

impl Side {
    fn new(policy: Policy) -> Side {
        Side {
            policy,
            sessions: HashMap::new(),
            approvals: HashMap::new(),
            rules: HashMap::new(),
            eval_time: Duration::ZERO,
            next_id: 0,
        }
    }

    fn decide(&mut self, step: &Replayed) -> Decision {
        let req = &step.request;
        let mut local;
        let state: &mut SessionState = match &req.session_id {
            Some(id) => self.sessions.entry(Arc::clone(id)).or_default(),
            None => {
                local = SessionState::default();
                &mut local
            }
        };
        if let Some(given) = &step.facts {
            *state = SessionState::seeded(given);
        }
        let started = Instant::now();
        let decision = self.policy.evaluate(req, &state.view(req.now));
        let took = started.elapsed();
        self.eval_time += took;
        let stat = self.rules.entry(decision.rule_name.clone()).or_default();
        stat.hits += 1;
        stat.nanos += took.as_nanos();
        // Denied calls and calls sent for approval are kept as not run;
        // a call that ran waits for its result (under its log id).
        let mut call = tame_enforce::CallStep::decided(req, &decision);
        self.next_id += 1;
        call.log_id = Some(match &step.log_id {
            Some(id) => Arc::from(id.as_str()),
            None => Arc::from(format!("replay-{}", self.next_id)),
        });
        state.record(call);
        if let Some(id) = &step.approval_id {
            self.approvals.insert(id.clone(), decision.action);
        }
        decision
    }

    /// A human released an approved call: it ran, if this policy had also
    /// sent it for approval.
    fn release(
        &mut self,
        session: Option<&str>,
        approval_id: &str,
        tool: &str,
        at: jiff::Timestamp,
        log_id: Option<&str>,
    ) {
        if self.approvals.remove(approval_id) == Some(Action::Approve)
            && let Some(session) = session
        {
            let mut call = tame_enforce::CallStep::new(tool, Action::Allow, None, true, at);
            call.log_id = log_id.map(Arc::from);
            self.sessions.entry(Arc::from(session)).or_default().record(call);
        }
    }

    /// A result: its labels, and its value and provenance for the call
    /// it names (or the session's latest call, when that ran under this
    /// policy).
    fn result(&mut self, session: &str, log_id: Option<&str>, body: &Value, source: ResultSource, labels: &[String]) {
        let state = self.sessions.entry(Arc::from(session)).or_default();
        for l in labels {
            state.add_label(l);
        }
        let log_id = match log_id {
            Some(id) => Arc::from(id),
            None => match state.last_call().filter(|c| c.ran()).and_then(|c| c.log_id.clone()) {
                Some(id) => id,
                None => return,
            },
        };
        let (value, extract) = tame_enforce::result_provenance(&state.index_key(), body);
        state.record_result(&log_id, None, value, source, &extract);
    }

    fn input(&mut self, session: &str, text: &str, at: jiff::Timestamp) {
        let state = self.sessions.entry(Arc::from(session)).or_default();
        let extract = tame_enforce::provenance::Extract::text(&state.index_key(), text, false);
        state.record_input(text, at, &extract);
    }
}

/// A decision as the report names it: action and rule.
type Outcome = (Action, Option<String>);

fn rule_name(rule: Option<&str>) -> &str {
    rule.unwrap_or("(default)")
}

/// One example of a change or a regression.
struct ExampleCall {
    at: String,
    call: String,
    old: Outcome,
    new: Outcome,
    expect: Option<Action>,
}

/// Counts of one labelled action (deny or approve).
#[derive(Clone, Copy, Debug, Default)]
struct Confusion {
    tp: u64,
    fp: u64,
    fn_: u64,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Everything the report says.
#[derive(Default)]
struct Report {
    calls: u64,
    steps_skipped: u64,
    releases: u64,
    malformed: u64,
    malformed_examples: Vec<String>,
    compared: u64,
    changes: BTreeMap<(&'static str, &'static str), u64>,
    by_rule: BTreeMap<(String, String), u64>,
    examples: BTreeMap<(&'static str, &'static str), Vec<ExampleCall>>,
    labelled: u64,
    confusion: BTreeMap<&'static str, Confusion>,
    /// Per rule of the candidate: labelled hits, of which as labelled.
    rule_labels: BTreeMap<String, (Action, u64, u64)>,
    regressions: u64,
    improvements: u64,
    regression_examples: Vec<ExampleCall>,
}

fn short_call(req: &Request) -> String {
    let mut args = tame_engine::value_to_json(&req.args).to_string();
    if args.len() > 120 {
        let cut = (0..=117).rev().find(|i| args.is_char_boundary(*i)).unwrap_or(0);
        args.truncate(cut);
        args.push_str("...");
    }
    format!("{} {args}", req.tool)
}

struct Replayer {
    candidate: Side,
    baseline: Option<Side>,
    report: Report,
    examples: usize,
}

impl Replayer {
    fn step(&mut self, at: &str, value: Result<Value, String>) {
        let step = value.and_then(|v| parse_step(&v));
        let step = match step {
            Ok(step) => step,
            Err(message) => {
                self.report.malformed += 1;
                if self.report.malformed_examples.len() < 5 {
                    self.report.malformed_examples.push(format!("{at}: {message}"));
                }
                return;
            }
        };
        match step {
            Step::Skip => self.report.steps_skipped += 1,
            Step::Result {
                session,
                log_id,
                body,
                source,
                labels,
            } => {
                for side in std::iter::once(&mut self.candidate).chain(self.baseline.as_mut()) {
                    side.result(&session, log_id.as_deref(), &body, source, &labels);
                }
            }
            Step::Input {
                session,
                text,
                at: when,
            } => {
                for side in std::iter::once(&mut self.candidate).chain(self.baseline.as_mut()) {
                    side.input(&session, &text, when);
                }
            }
            Step::Release {
                session,
                approval_id,
                tool,
                at: when,
                log_id,
            } => {
                self.report.releases += 1;
                for side in std::iter::once(&mut self.candidate).chain(self.baseline.as_mut()) {
                    side.release(session.as_deref(), &approval_id, &tool, when, log_id.as_deref());
                }
            }
            Step::Call(call) => self.call(at, &call),
        }
    }

    fn call(&mut self, at: &str, call: &Replayed) {
        self.report.calls += 1;
        let new = self.candidate.decide(call);
        let new: Outcome = (new.action, new.rule_name.as_deref().map(str::to_owned));
        let old: Option<Outcome> = match &mut self.baseline {
            Some(b) => {
                let d = b.decide(call);
                Some((d.action, d.rule_name.as_deref().map(str::to_owned)))
            }
            None => call.recorded.clone(),
        };
        let r = &mut self.report;
        if let Some(old) = &old {
            r.compared += 1;
            if old.0 != new.0 || old.1 != new.1 {
                *r.changes.entry((old.0.as_str(), new.0.as_str())).or_default() += 1;
                let key = (
                    rule_name(old.1.as_deref()).to_owned(),
                    rule_name(new.1.as_deref()).to_owned(),
                );
                *r.by_rule.entry(key).or_default() += 1;
                let list = r.examples.entry((old.0.as_str(), new.0.as_str())).or_default();
                if list.len() < self.examples {
                    list.push(ExampleCall {
                        at: at.to_owned(),
                        call: short_call(&call.request),
                        old: old.clone(),
                        new: new.clone(),
                        expect: call.expect,
                    });
                }
            }
        }
        let Some(expect) = call.expect else { return };
        r.labelled += 1;
        for action in [Action::Deny, Action::Approve] {
            let c = r.confusion.entry(action.as_str()).or_default();
            match (expect == action, new.0 == action) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (true, false) => c.fn_ += 1,
                (false, false) => {}
            }
        }
        let entry = r
            .rule_labels
            .entry(rule_name(new.1.as_deref()).to_owned())
            .or_insert((new.0, 0, 0));
        entry.1 += 1;
        if expect == new.0 {
            entry.2 += 1;
        }
        if self.baseline.is_some()
            && let Some(old) = old
        {
            match (old.0 == expect, new.0 == expect) {
                (true, false) => {
                    r.regressions += 1;
                    if r.regression_examples.len() < self.examples {
                        r.regression_examples.push(ExampleCall {
                            at: at.to_owned(),
                            call: short_call(&call.request),
                            old,
                            new,
                            expect: Some(expect),
                        });
                    }
                }
                (false, true) => r.improvements += 1,
                _ => {}
            }
        }
    }
}

/// Calls `f` with each element of a JSON array, one at a time.
struct EachElement<F>(F);

impl<'de, F: FnMut(Value)> DeserializeSeed<'de> for EachElement<F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Value)> Visitor<'de> for EachElement<F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Value>()? {
            (self.0)(v);
        }
        Ok(())
    }
}

/// A reader that counts the bytes read through it (for the progress bar).
struct Counting<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

fn progress_bar(total: Option<u64>, out: &Out) -> Option<indicatif::ProgressBar> {
    if out.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(len) => {
            let bar = indicatif::ProgressBar::new(len);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{wide_bar} {bytes}/{total_bytes} {msg} (eta {eta})")
            {
                bar.set_style(style);
            }
            bar
        }
        None => indicatif::ProgressBar::new_spinner(),
    };
    Some(bar)
}

/// `tame replay POLICY SOURCE`.
pub fn replay(args: &ReplayArgs, out: &Out) -> Result<Exit, CliError> {
    let candidate = Side::new(load_policy(&args.policy)?);
    let baseline = match &args.baseline {
        Some(path) => Some(Side::new(load_policy(path)?)),
        None => None,
    };
    let read = Rc::new(Cell::new(0u64));
    let (reader, total): (Box<dyn Read>, Option<u64>) = if args.source == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let path = PathBuf::from(&args.source);
        let file = std::fs::File::open(&path).map_err(|source| CliError::Read {
            path: path.clone(),
            source,
        })?;
        let len = file.metadata().ok().map(|m| m.len());
        (Box::new(file), len)
    };
    let mut reader = std::io::BufReader::with_capacity(
        1 << 16,
        Counting {
            inner: reader,
            read: Rc::clone(&read),
        },
    );
    let mut replayer = Replayer {
        candidate,
        baseline,
        report: Report::default(),
        examples: args.examples,
    };
    let bar = progress_bar(total, out);
    let started = Instant::now();
    let tick = |r: &Replayer| {
        if let Some(bar) = &bar
            && r.report.calls.is_multiple_of(4096)
        {
            bar.set_position(read.get());
            bar.set_message(format!("{} calls", r.report.calls));
        }
    };
    // A JSON array (a session export) or JSON lines.
    let first = loop {
        let buf = reader.fill_buf().map_err(|e| read_error(&args.source, e))?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let byte = buf.get(i).copied();
                reader.consume(i);
                break byte;
            }
            None if buf.is_empty() => break None,
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    if first == Some(b'[') {
        let mut index = 0u64;
        let mut de = serde_json::Deserializer::from_reader(&mut reader);
        EachElement(|v: Value| {
            index += 1;
            replayer.step(&format!("item {index}"), Ok(v));
            tick(&replayer);
        })
        .deserialize(&mut de)
        .map_err(|e| CliError::Input(format!("{}: invalid JSON array: {e}", args.source)))?;
    } else {
        let mut line = String::new();
        let mut number = 0u64;
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(|e| read_error(&args.source, e))?;
            if n == 0 {
                break;
            }
            number += 1;
            if line.trim().is_empty() {
                continue;
            }
            let value =
                serde_json::from_str::<Value>(&line).map_err(|e| format!("invalid JSON at column {}: {e}", e.column()));
            replayer.step(&format!("line {number}"), value);
            tick(&replayer);
        }
    }
    let wall = started.elapsed();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let Replayer {
        candidate,
        baseline,
        report,
        ..
    } = replayer;
    if report.calls == 0 && report.malformed == 0 {
        return Err(CliError::Input(format!("{}: no calls to replay", args.source)));
    }
    let against = match &args.baseline {
        Some(p) => format!("the baseline {}", p.display()),
        None => String::from("the recorded decisions"),
    };
    print_report(args, out, &report, &candidate, baseline.as_ref(), &against, wall);
    Ok(if report.malformed > 0 || report.regressions > 0 {
        Exit::Error
    } else {
        Exit::Ok
    })
}

fn read_error(source: &str, e: std::io::Error) -> CliError {
    CliError::Read {
        path: Path::new(source).to_path_buf(),
        source: e,
    }
}

/// Rules in file order, the default last: (name, hits, mean ns).
fn rule_rows(side: &Side) -> Vec<(String, u64, u64)> {
    let mut names: Vec<Option<Arc<str>>> = side
        .policy
        .info()
        .rules
        .iter()
        .map(|r| Some(Arc::from(&*r.name)))
        .collect();
    // Built-in checks (payload safety) that decided, then the default.
    for key in side.rules.keys() {
        if !names.contains(key) && key.is_some() {
            names.push(key.clone());
        }
    }
    names.push(None);
    names
        .into_iter()
        .map(|key| {
            let stat = side.rules.get(&key).copied().unwrap_or_default();
            let mean = u64::try_from(stat.nanos / u128::from(stat.hits.max(1))).unwrap_or(u64::MAX);
            (rule_name(key.as_deref()).to_owned(), stat.hits, mean)
        })
        .collect()
}

fn example_json(e: &ExampleCall) -> Value {
    json!({
        "at": e.at, "call": e.call,
        "old": {"decision": e.old.0.as_str(), "rule": e.old.1},
        "new": {"decision": e.new.0.as_str(), "rule": e.new.1},
        "expect": e.expect.map(Action::as_str),
    })
}

fn example_line(e: &ExampleCall) -> String {
    let expect = e
        .expect
        .map_or_else(String::new, |x| format!(" (expected {})", x.as_str()));
    format!(
        "    {}: {}  {} {} → {} {}{expect}",
        e.at,
        e.call,
        e.old.0.as_str(),
        rule_name(e.old.1.as_deref()),
        e.new.0.as_str(),
        rule_name(e.new.1.as_deref()),
    )
}

fn print_report(
    args: &ReplayArgs,
    out: &Out,
    r: &Report,
    candidate: &Side,
    baseline: Option<&Side>,
    against: &str,
    wall: Duration,
) {
    let per_sec = r.calls as f64 / wall.as_secs_f64().max(f64::MIN_POSITIVE);
    let rows = rule_rows(candidate);
    let changed: u64 = r.changes.values().sum();
    let precision_recall = |action: Action| {
        let c = r.confusion.get(action.as_str()).copied().unwrap_or_default();
        (ratio(c.tp, c.tp + c.fp), ratio(c.tp, c.tp + c.fn_), c)
    };
    if out.json {
        let labels = (r.labelled > 0).then(|| {
            let mut by_action = serde_json::Map::new();
            for action in [Action::Deny, Action::Approve] {
                let (p, rc, c) = precision_recall(action);
                by_action.insert(
                    action.as_str().to_owned(),
                    json!({"precision": p, "recall": rc, "true_positives": c.tp,
                           "false_positives": c.fp, "false_negatives": c.fn_}),
                );
            }
            json!({
                "labelled": r.labelled,
                "actions": by_action,
                "rules": r.rule_labels.iter().map(|(rule, (action, hits, right))| json!({
                    "rule": rule, "decision": action.as_str(), "hits": hits, "as_labelled": right,
                    "precision": ratio(*right, *hits),
                    "recall": precision_recall(*action).2.tp.checked_add(precision_recall(*action).2.fn_)
                        .and_then(|total| ratio(*right, total)),
                })).collect::<Vec<_>>(),
                "regressions": baseline.map(|_| r.regressions),
                "improvements": baseline.map(|_| r.improvements),
                "regression_examples": r.regression_examples.iter().map(example_json).collect::<Vec<_>>(),
            })
        });
        out.json_pretty(&json!({
            "policy": args.policy.display().to_string(),
            "source": args.source,
            "compared_with": against,
            "calls": r.calls,
            "steps_skipped": r.steps_skipped,
            "releases": r.releases,
            "malformed": r.malformed,
            "malformed_examples": r.malformed_examples,
            "seconds": wall.as_secs_f64(),
            "calls_per_sec": per_sec.round(),
            "compared": r.compared,
            "changed": changed,
            "changes": r.changes.iter().map(|((o, n), c)| json!({
                "old": o, "new": n, "calls": c,
                "examples": r.examples.get(&(*o, *n)).map(|v| v.iter().map(example_json).collect::<Vec<_>>()),
            })).collect::<Vec<_>>(),
            "changes_by_rule": r.by_rule.iter().map(|((o, n), c)| json!({"old": o, "new": n, "calls": c}))
                .collect::<Vec<_>>(),
            "rules": rows.iter().map(|(rule, hits, mean)| json!({"rule": rule, "hits": hits, "mean_ns": mean}))
                .collect::<Vec<_>>(),
            "labels": labels,
        }));
        return;
    }
    out.line(format!(
        "{} {} over {}: {} calls, {} other records, {} releases in {:.2} s ({:.0} calls/s)",
        bold("replay"),
        args.policy.display(),
        args.source,
        r.calls,
        r.steps_skipped,
        r.releases,
        wall.as_secs_f64(),
        per_sec
    ));
    if r.malformed > 0 {
        out.line(format!("  {} malformed records (exit 1):", r.malformed));
        for m in &r.malformed_examples {
            out.line(format!("    {m}"));
        }
    }
    if r.compared == 0 {
        out.line(dim(
            "  no recorded decisions to compare with (give --baseline OLD.yml, or records with `decision`)",
        ));
    } else {
        out.line(format!(
            "  against {against}: {changed} of {} calls change ({:.2}%)",
            r.compared,
            changed as f64 * 100.0 / r.compared as f64
        ));
        for ((o, n), count) in &r.changes {
            let action_changed = if o == n { " (another rule)" } else { "" };
            out.line(format!("  {o:>8} → {n:<8} {count:>10}{action_changed}"));
            for e in r.examples.get(&(*o, *n)).into_iter().flatten() {
                out.line(dim(example_line(e)));
            }
        }
        if !r.by_rule.is_empty() {
            out.line("  by rule (old → new):");
            let mut by_rule: Vec<_> = r.by_rule.iter().collect();
            by_rule.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for ((o, n), count) in by_rule.into_iter().take(20) {
                out.line(format!("    {o} → {n}: {count}"));
            }
        }
    }
    out.line(format!(
        "  {}",
        bold(format!(
            "{:>3} {:<36} {:>10} {:>7} {:>12}",
            "#", "rule", "hits", "share", "mean cost"
        ))
    ));
    let total = r.calls.max(1);
    for (index, (name, hits, mean)) in rows.iter().enumerate() {
        let position = if index + 1 < rows.len() {
            (index + 1).to_string()
        } else {
            String::new()
        };
        let cost = if *hits == 0 {
            String::from("-")
        } else {
            format!("{mean} ns")
        };
        let line = format!(
            "  {position:>3} {name:<36} {hits:>10} {:>6.1}% {cost:>12}",
            *hits as f64 * 100.0 / total as f64
        );
        out.line(if *hits == 0 { dim(line) } else { line });
    }
    if r.labelled > 0 {
        let mut text = format!("  labelled calls: {}", r.labelled);
        let pct = |x: Option<f64>| x.map_or_else(|| String::from("-"), |v| format!("{:.1}%", v * 100.0));
        for action in [Action::Deny, Action::Approve] {
            let (p, rc, c) = precision_recall(action);
            let _ = write!(
                text,
                "\n    {:<8} precision {:>6}  recall {:>6}  ({} right, {} wrongly, {} missed)",
                action.as_str(),
                pct(p),
                pct(rc),
                c.tp,
                c.fp,
                c.fn_
            );
        }
        out.line(text);
        for (rule, (action, hits, right)) in &r.rule_labels {
            if *action == Action::Allow {
                continue;
            }
            let (_, _, c) = precision_recall(*action);
            out.line(format!(
                "    {rule} ({}): precision {} of {hits}, recall {} of {} labelled {}",
                action.as_str(),
                pct(ratio(*right, *hits)),
                pct(ratio(*right, c.tp + c.fn_)),
                c.tp + c.fn_,
                action.as_str()
            ));
        }
        if baseline.is_some() {
            out.line(format!(
                "  against the baseline: {} regressions, {} improvements",
                r.regressions, r.improvements
            ));
            for e in &r.regression_examples {
                out.line(example_line(e));
            }
            if r.regressions > 0 {
                out.error(&CliError::Input(format!(
                    "{} labelled calls the baseline decided as labelled are decided otherwise",
                    r.regressions
                )));
            }
        }
    }
}
