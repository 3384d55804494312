//! The dashboard's HTML: one layout and one function per page, written
//! with maud, which escapes every spliced value. Tool names, arguments,
//! reasons and ids come from agents: they only ever enter a page through
//! a splice (escaped) or a percent-encoded URL segment.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tame_engine::{Action, Diagnostic, PolicyInfo};
use tame_store::{Approval, ApprovalState, DecisionTotals, LogEntry, PolicyVersion, SessionSummary, VerifyReport};

use super::login::Viewer;
use crate::AppError;

/// The stylesheet, inlined in every page (its hash is in the CSP).
pub const CSS: &str = include_str!("../../assets/dashboard.css");
/// The approvals page's auto-refresh (its hash is in the CSP).
pub const REFRESH_JS: &str = include_str!("../../assets/refresh.js");

/// Longest pretty-printed JSON shown in a page (characters).
const MAX_JSON: usize = 16 * 1024;

// ------------------------------------------------------------ errors

/// An error answered as an HTML page.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError {
            status,
            message: message.into(),
        }
    }

    /// A server-side failure: logged in full, shown generically.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "dashboard error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }
}

impl From<AppError> for PageError {
    fn from(e: AppError) -> Self {
        PageError::new(e.status, e.detail)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        (self.status, error_page(self.status, &self.message)).into_response()
    }
}

// ------------------------------------------------------------ formatting

/// Characters left as they are in a path segment or query value.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// `s` percent-encoded for use as one URL path segment.
pub fn path_segment(s: &str) -> String {
    utf8_percent_encode(s, KEEP).to_string()
}

/// `s` percent-encoded for use as a query value.
pub fn query_value(s: &str) -> String {
    utf8_percent_encode(s, KEEP).to_string()
}

/// A stored timestamp as `2026-11-21 09:35:12 UTC` (unparseable ones as stored).
pub fn fmt_time(ts: &str) -> String {
    match ts.parse::<Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => ts.to_owned(),
    }
}

/// `ts` relative to `now`: `in 14 min`, `3 h ago`.
pub fn relative(ts: &str, now: Timestamp) -> String {
    let Ok(t) = ts.parse::<Timestamp>() else {
        return String::new();
    };
    let secs = t.as_second() - now.as_second();
    let n = secs.unsigned_abs();
    if n < 5 {
        return "just now".into();
    }
    let amount = match n {
        0..60 => format!("{n} s"),
        60..3600 => format!("{} min", n / 60),
        3600..86_400 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    };
    if secs >= 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// `v` pretty-printed, cut at [`MAX_JSON`] characters.
pub fn pretty_json(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    if s.len() > MAX_JSON {
        let mut cut = MAX_JSON;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n… (cut: open the API for the whole value)");
    }
    s
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n).collect();
        out.push('…');
        out
    }
}

fn action_str(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Approve => "approve",
    }
}

fn decision_badge(a: Action) -> Markup {
    let s = action_str(a);
    html! { span class=(format!("badge {s}")) { (s) } }
}

fn state_badge(s: ApprovalState) -> Markup {
    html! { span class=(format!("badge {}", s.as_str())) { (s.as_str()) } }
}

fn session_link(id: &str) -> Markup {
    html! { a.mono href=(format!("/dashboard/sessions/{}", path_segment(id))) title=(id) { (short(id, 14)) } }
}

fn opt(v: Option<&str>) -> Markup {
    match v {
        Some(s) => html! { (s) },
        None => html! { span.muted { "–" } },
    }
}

// ------------------------------------------------------------ layout

/// Which page the navigation marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Approvals,
    Sessions,
    Policy,
}

/// What every page around its body shows.
#[derive(Debug)]
pub struct Chrome<'a> {
    pub viewer: &'a Viewer,
    pub pending: usize,
    pub nav: Nav,
}

fn head(title: &str, refresh: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            // No icon: keeps browsers from asking the API for /favicon.ico.
            link rel="icon" href="data:,";
            title { (title) " · Tame" }
            style { (PreEscaped(CSS)) }
            @if refresh {
                script { (PreEscaped(REFRESH_JS)) }
            }
        }
    }
}

/// A full page: header, navigation, the open-mode banner and `body`.
pub fn layout(title: &str, chrome: &Chrome<'_>, refresh: bool, body: Markup) -> Markup {
    let item = |nav: Nav, href: &str, label: &str| -> Markup {
        html! {
            a.on[chrome.nav == nav] href=(href) {
                (label)
                @if nav == Nav::Approvals && chrome.pending > 0 {
                    span.count { (chrome.pending) }
                }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, refresh))
            body {
                header.top {
                    a.brand href="/dashboard" { "Tame" }
                    nav {
                        (item(Nav::Overview, "/dashboard", "Overview"))
                        (item(Nav::Approvals, "/dashboard/approvals", "Approvals"))
                        (item(Nav::Sessions, "/dashboard/sessions", "Sessions"))
                        (item(Nav::Policy, "/dashboard/policy", "Policy"))
                    }
                    div.who {
                        @if chrome.viewer.open {
                            span { "open (loopback)" }
                        } @else {
                            span { "signed in as " strong { (chrome.viewer.name) } }
                            form method="post" action="/dashboard/logout" {
                                input type="hidden" name="csrf" value=(chrome.viewer.csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                @if chrome.viewer.open {
                    div.banner {
                        strong { "No API keys are configured." }
                        " This dashboard and the API are open to anyone on this machine; the server listens on loopback only. Configure an admin key to require a login."
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The login form, with an error after a failed attempt.
pub fn login_page(error: Option<&str>, next: &str, name: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Log in", false))
            body {
                header.top { a.brand href="/dashboard" { "Tame" } }
                main {
                    div.card.login {
                        h1 { "Tame dashboard" }
                        p.muted { "Log in with an admin key. Agent keys cannot open the dashboard." }
                        @if let Some(e) = error {
                            div.flash.bad { (e) }
                        }
                        form method="post" action="/dashboard/login" {
                            input type="hidden" name="next" value=(next);
                            label for="key" { "Admin key" }
                            input #key type="password" name="key" autocomplete="current-password" required autofocus;
                            label for="name" { "Your name (recorded in the audit log with your decisions)" }
                            input #name type="text" name="name" value=(name) maxlength="64" autocomplete="username";
                            button.primary type="submit" { "Log in" }
                        }
                    }
                }
            }
        }
    }
}

/// A page that only says what went wrong.
pub fn error_page(status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false))
            body {
                header.top { a.brand href="/dashboard" { "Tame" } }
                main {
                    div.card {
                        h1 { (status.as_u16()) " " (title) }
                        p { (message) }
                        p { a href="/dashboard" { "Back to the dashboard" } }
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------ overview

/// What the overview shows.
#[derive(Debug)]
pub struct Overview<'a> {
    pub info: &'a PolicyInfo,
    pub origin: &'a str,
    pub loaded_at: String,
    pub warnings: usize,
    /// Decisions counted over every session.
    pub counts: DecisionTotals,
    pub recent: Vec<LogEntry>,
    pub verify: VerifyReport,
    /// When the chain was checked (the check is reused for a minute).
    pub verified_at: Timestamp,
}

fn percent(n: u64, of: u64) -> String {
    if of == 0 {
        "–".into()
    } else {
        format!("{:.1} %", (n as f64) * 100.0 / (of as f64))
    }
}

pub fn overview(chrome: &Chrome<'_>, o: &Overview<'_>) -> Markup {
    let c = o.counts;
    let body = html! {
        h1 { "Overview" }
        div.grid {
            div.card {
                h2 { "Policy" }
                div.big { (o.info.version) }
                @if let Some(d) = &o.info.description { div.muted { (d) } }
                dl.kv {
                    dt { "rules" } dd { (o.info.rules.len()) }
                    dt { "default" } dd { (action_str(o.info.default)) }
                    dt { "hash" } dd.mono title=(o.info.hash) { (short(&o.info.hash, 16)) }
                    dt { "loaded" } dd { (o.loaded_at) }
                    dt { "file" } dd.mono.small { (o.origin) }
                    @if o.warnings > 0 {
                        dt { "warnings" } dd { a href="/dashboard/policy" { (o.warnings) } }
                    }
                }
            }
            div.card {
                h2 { "Pending approvals" }
                div.big { (chrome.pending) }
                p { a href="/dashboard/approvals" { @if chrome.pending > 0 { "Review them" } @else { "None waiting" } } }
            }
            div.card {
                h2 { "Audit chain" }
                @if o.verify.valid {
                    div.big { span.badge.ok { "intact" } }
                } @else {
                    div.big { span.badge.bad { "broken" } }
                }
                dl.kv {
                    dt { "records" } dd { (o.verify.records) }
                    @if let Some(h) = &o.verify.head_hash {
                        dt { "head" } dd.mono title=(h) { (short(h, 16)) }
                    }
                    @if let Some(p) = &o.verify.first_problem {
                        dt { "problem" } dd { "record " (p.seq) ": " (p.message) }
                    }
                    dt { "checked" } dd {
                        (relative(&o.verified_at.to_string(), Timestamp::now()))
                        " · " a href="/dashboard?verify=now" { "check now" }
                    }
                }
            }
        }
        div.card {
            h2 { "Decisions"
                span.muted.small { " · " (c.sessions) " sessions" }
            }
            table {
                thead { tr { th { "decision" } th.num { "calls" } th.num { "share" } } }
                tbody {
                    tr { td { (decision_badge(Action::Allow)) } td.num { (c.allowed) } td.num { (percent(c.allowed, c.total)) } }
                    tr { td { (decision_badge(Action::Deny)) } td.num { (c.denied) } td.num { (percent(c.denied, c.total)) } }
                    tr { td { (decision_badge(Action::Approve)) } td.num { (c.approved) } td.num { (percent(c.approved, c.total)) } }
                    tr { td { strong { "total" } } td.num { strong { (c.total) } } td.num {} }
                }
            }
        }
        div.card {
            h2 { "Recent decisions" }
            @if o.recent.is_empty() {
                p.empty { "No decisions yet. Agents' calls to " code { "POST /api/v1/enforce" } " show up here." }
            } @else {
                table {
                    thead { tr { th { "time" } th { "session" } th { "tool" } th { "decision" } th { "rule" } th { "reason" } } }
                    tbody {
                        @for e in &o.recent {
                            tr {
                                td.small { (fmt_time(&e.timestamp)) }
                                td { (session_link(&e.session_id)) }
                                td.mono { (e.tool_name) }
                                td { (decision_badge(e.policy_decision)) }
                                td.mono { (opt(e.policy_rule.as_deref())) }
                                td { (short(&e.reason, 120)) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Overview", chrome, true, body)
}

// ------------------------------------------------------------ approvals

/// A message after an approve or reject.
#[derive(Debug)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

pub fn approvals(
    chrome: &Chrome<'_>,
    flash: Option<&Flash>,
    pending: &[Approval],
    decided: &[Approval],
    now: Timestamp,
) -> Markup {
    let body = html! {
        h1 { "Approvals " span.muted.small { a href="/dashboard/approvals" { "Refresh" } } }
        @if let Some(f) = flash {
            div class=(if f.ok { "flash ok" } else { "flash bad" }) { (f.text) }
        }
        @if pending.is_empty() {
            div.card { p.empty { "No call is waiting for approval." } }
        }
        @for a in pending {
            @let base = format!("/dashboard/approvals/{}", path_segment(&a.approval_id));
            div.card.approval {
                header {
                    span.tool.mono { (a.tool_name) }
                    span.small.muted { "expires " (relative(&a.expires_at, now)) " · " (fmt_time(&a.expires_at)) }
                }
                dl.kv {
                    dt { "rule" } dd.mono { (opt(a.rule_name.as_deref())) }
                    dt { "reason" } dd { (a.reason) }
                    dt { "session" } dd { (session_link(&a.session_id)) }
                    dt { "agent" } dd { (opt(a.agent_id.as_deref())) }
                    dt { "user" } dd { (opt(a.user_id.as_deref())) }
                    dt { "asked" } dd { (fmt_time(&a.created_at)) " (" (relative(&a.created_at, now)) ")" }
                    dt { "policy" } dd { (a.policy_version) }
                    dt { "approval" } dd.mono { (a.approval_id) }
                }
                pre { (pretty_json(&a.tool_args)) }
                form.verdict method="post" action=(format!("{base}/approve")) {
                    input type="hidden" name="csrf" value=(chrome.viewer.csrf);
                    input type="text" name="reason" placeholder="Reason (recorded in the audit log)" maxlength="2000" aria-label="Reason";
                    button.go type="submit" { "Approve" }
                    button.stop type="submit" formaction=(format!("{base}/reject")) { "Reject" }
                }
            }
        }
        @if !decided.is_empty() {
            div.card {
                h2 { "Recently decided" }
                table {
                    thead { tr { th { "tool" } th { "state" } th { "by" } th { "why" } th { "when" } th { "session" } } }
                    tbody {
                        @for a in decided {
                            tr {
                                td.mono { (a.tool_name) }
                                td { (state_badge(a.state)) }
                                td { (opt(a.decided_by.as_deref())) }
                                td { (opt(a.decision_reason.as_deref())) }
                                td.small { (fmt_time(a.decided_at.as_deref().unwrap_or(&a.expires_at))) }
                                td { (session_link(&a.session_id)) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Approvals", chrome, true, body)
}

// ------------------------------------------------------------ sessions

/// The session list's filter and page.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub agent_id: String,
    pub user_id: String,
    pub page: u64,
    pub page_size: u64,
}

impl SessionFilter {
    fn href(&self, page: u64) -> String {
        let mut q = format!("/dashboard/sessions?page={page}");
        if !self.agent_id.is_empty() {
            q.push_str(&format!("&agent_id={}", query_value(&self.agent_id)));
        }
        if !self.user_id.is_empty() {
            q.push_str(&format!("&user_id={}", query_value(&self.user_id)));
        }
        q
    }
}

/// Which way a paged list runs, for the pager's labels.
#[derive(Debug, Clone, Copy)]
enum Order {
    /// Page 1 holds the newest (the session list).
    NewestFirst,
    /// Page 1 holds the oldest (a session's log).
    OldestFirst,
}

fn pager(page: u64, pages: u64, order: Order, href: impl Fn(u64) -> String) -> Markup {
    let (prev, next) = match order {
        Order::NewestFirst => ("← Newer", "Older →"),
        Order::OldestFirst => ("← Earlier", "Later →"),
    };
    html! {
        div.pager {
            @if page > 1 { a href=(href(page - 1)) rel="prev" { (prev) } }
            span.muted { "page " (page) " of " (pages.max(1)) }
            @if page < pages { a href=(href(page + 1)) rel="next" { (next) } }
        }
    }
}

pub fn sessions(chrome: &Chrome<'_>, f: &SessionFilter, list: &[SessionSummary], total: u64) -> Markup {
    let pages = total.div_ceil(f.page_size.max(1));
    let body = html! {
        h1 { "Sessions " span.muted.small { (total) " in all" } }
        form.filter method="get" action="/dashboard/sessions" {
            input type="text" name="agent_id" value=(f.agent_id) placeholder="agent id" aria-label="Agent id";
            input type="text" name="user_id" value=(f.user_id) placeholder="user id" aria-label="User id";
            button type="submit" { "Filter" }
            @if !f.agent_id.is_empty() || !f.user_id.is_empty() { a href="/dashboard/sessions" { "clear" } }
        }
        div.card {
            @if list.is_empty() {
                p.empty { @if total == 0 { "No sessions yet." } @else { "Nothing on this page." } }
            } @else {
                table {
                    thead { tr {
                        th { "session" } th { "agent" } th { "user" } th { "started" } th { "last call" }
                        th.num { "calls" } th.num { "allowed" } th.num { "denied" } th.num { "approval" }
                    } }
                    tbody {
                        @for s in list {
                            tr {
                                td { (session_link(&s.session_id)) }
                                td { (opt(s.agent_id.as_deref())) }
                                td { (opt(s.user_id.as_deref())) }
                                td.small { (fmt_time(&s.start_time)) }
                                td.small { (s.end_time.as_deref().map(fmt_time).unwrap_or_default()) }
                                td.num { (s.total_calls) }
                                td.num { (s.allowed_calls) }
                                td.num { (s.denied_calls) }
                                td.num { (s.approved_calls) }
                            }
                        }
                    }
                }
            }
            (pager(f.page, pages, Order::NewestFirst, |p| f.href(p)))
        }
    };
    layout("Sessions", chrome, false, body)
}

/// Log entries shown per page of a session.
pub const LOG_PAGE: u64 = 100;

/// A session's page: its summary and one page (`page`, from 1) of its
/// log of `total` entries.
pub fn session(chrome: &Chrome<'_>, s: &SessionSummary, log: &[LogEntry], page: u64, total: u64) -> Markup {
    let pages = total.div_ceil(LOG_PAGE);
    let href_base = format!("/dashboard/sessions/{}", path_segment(&s.session_id));
    let body = html! {
        h1 { "Session " span.mono { (s.session_id) } }
        div.card {
            dl.kv {
                dt { "agent" } dd { (opt(s.agent_id.as_deref())) }
                dt { "user" } dd { (opt(s.user_id.as_deref())) }
                dt { "started" } dd { (fmt_time(&s.start_time)) }
                dt { "last call" } dd { (s.end_time.as_deref().map(fmt_time).unwrap_or_default()) }
                dt { "calls" } dd {
                    (s.total_calls) " · "
                    span.badge.allow { (s.allowed_calls) " allowed" } " "
                    span.badge.deny { (s.denied_calls) " denied" } " "
                    span.badge.approve { (s.approved_calls) " approval" }
                }
            }
        }
        div.card {
            h2 { "Log" }
            table {
                thead { tr { th { "#" } th { "time" } th { "tool and arguments" } th { "decision" } th { "result" } } }
                tbody {
                    @for e in log {
                        tr {
                            td.num.small { (e.seq) }
                            td.small { (fmt_time(&e.timestamp)) }
                            td {
                                span.mono { strong { (e.tool_name) } }
                                details { summary { "arguments" } pre { (pretty_json(&e.tool_args)) } }
                            }
                            td {
                                (decision_badge(e.policy_decision))
                                " " span.mono.small { (opt(e.policy_rule.as_deref())) }
                                div.small { (e.reason) }
                                @if let Some(id) = &e.approval_id { div.small.muted.mono { "approval " (id) } }
                            }
                            td {
                                @if let Some(st) = &e.execution_status {
                                    span.mono { (st) }
                                    @if let Some(ms) = e.execution_duration_ms { " " span.muted.small { (format!("{ms:.0} ms")) } }
                                } @else if e.tool_result.is_none() {
                                    span.muted { "–" }
                                }
                                @if let Some(err) = &e.error_message { div.small { (err) } }
                                @if let Some(r) = &e.tool_result {
                                    details { summary { "result" } pre { (pretty_json(r)) } }
                                }
                            }
                        }
                    }
                }
            }
            (pager(page, pages, Order::OldestFirst, |p| format!("{href_base}?page={p}")))
        }
    };
    layout("Session", chrome, false, body)
}

// ------------------------------------------------------------ policy

pub fn policy(
    chrome: &Chrome<'_>,
    info: &PolicyInfo,
    origin: &str,
    loaded_at: &str,
    lints: &[Diagnostic],
    source: &str,
    versions: &[PolicyVersion],
) -> Markup {
    let body = html! {
        h1 { "Policy " span.muted.small { (info.version) } }
        div.card {
            dl.kv {
                dt { "version" } dd { (info.version) }
                dt { "description" } dd { (opt(info.description.as_deref())) }
                dt { "hash" } dd.mono { (info.hash) }
                dt { "default" } dd { (decision_badge(info.default)) }
                dt { "format" } dd { @if info.legacy { "legacy (original tame)" } @else { "current" } }
                dt { "file" } dd.mono { (origin) }
                dt { "loaded" } dd { (loaded_at) }
            }
            details { summary { "source" } pre { (source) } }
        }
        @if !lints.is_empty() {
            div.card {
                h2 { "Warnings" }
                @for d in lints { pre { (d.rendered) } }
            }
        }
        div.card {
            h2 { "Rules " span.muted.small { "first match wins" } }
            @if info.rules.is_empty() {
                p.empty { "No rules: every call gets the default." }
            } @else {
                table {
                    thead { tr { th { "#" } th { "name" } th { "action" } th { "tools" } th { "condition" } th { "description and reason" } } }
                    tbody {
                        @for (i, r) in info.rules.iter().enumerate() {
                            tr {
                                td.num.small { (i + 1) }
                                td.mono { (r.name) }
                                td { (decision_badge(r.action)) }
                                td.mono.small { @if r.tools.is_empty() { "all tools" } @else { (r.tools.join(", ")) } }
                                td.mono.small { (opt(r.condition.as_deref())) }
                                td.small {
                                    @if let Some(d) = &r.description { div { (d) } }
                                    @if let Some(reason) = &r.reason { div.muted { "reason: " (reason) } }
                                    @if r.description.is_none() && r.reason.is_none() { span.muted { "–" } }
                                }
                            }
                        }
                    }
                }
            }
        }
        div.card {
            h2 { "Versions" }
            @if versions.is_empty() {
                p.empty { "No version is stored yet." }
            }
            table {
                thead { tr { th { "#" } th { "version" } th { "hash" } th { "origin" } th { "loaded" } th {} } }
                tbody {
                    @for v in versions.iter().rev() {
                        tr {
                            td.num.small { (v.id) }
                            td { (v.version) }
                            td.mono.small title=(v.hash) { (short(&v.hash, 16)) }
                            td.mono.small { (v.origin) }
                            td.small { (fmt_time(&v.loaded_at)) }
                            td { @if v.hash == info.hash { span.badge.ok { "running" } } }
                        }
                    }
                }
            }
        }
    };
    layout("Policy", chrome, false, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_values_are_encoded() {
        assert_eq!(path_segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(query_value("x&y=z"), "x%26y%3Dz");
        assert_eq!(path_segment("s-1_2.3~"), "s-1_2.3~");
    }

    #[test]
    fn times_are_readable_and_relative() {
        assert_eq!(fmt_time("2026-11-21T06:00:00.123456Z"), "2026-11-21 06:00:00 UTC");
        assert_eq!(fmt_time("garbage"), "garbage");
        let now: Timestamp = "2026-11-21T06:00:00Z".parse().unwrap();
        assert_eq!(relative("2026-11-21T06:14:10Z", now), "in 14 min");
        assert_eq!(relative("2026-11-21T03:00:00Z", now), "3 h ago");
        assert_eq!(relative("2026-11-21T06:00:30Z", now), "in 30 s");
        assert_eq!(relative("2026-11-21T05:59:58Z", now), "just now");
    }

    #[test]
    fn long_json_is_cut_on_a_char_boundary() {
        let v = Value::String("é".repeat(MAX_JSON));
        let s = pretty_json(&v);
        assert!(s.len() < MAX_JSON + 100);
        assert!(s.ends_with("whole value)"));
    }

    #[test]
    fn error_pages_escape_their_message() {
        let page = error_page(StatusCode::FORBIDDEN, "<script>x</script>").into_string();
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!page.contains("<script>x"));
    }
}
