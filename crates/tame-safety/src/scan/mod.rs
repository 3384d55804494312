//! Secret and personal-data detection over JSON payloads: one pass of one
//! multi-pattern automaton over every string (keys and values), candidates
//! confirmed by checksums and context, findings with JSON paths.
//!
//! The walk is iterative (an explicit stack), so arbitrarily deep payloads
//! cannot overflow the stack; depth and the number of findings are bounded by
//! [`ScanOptions`].
//!
//! Kinds are stable names: they label redactions (`[REDACTED:<kind>]`),
//! findings and session tags (`secret.<kind>`).
//!
//! | kind | what is matched | confirmed by |
//! |---|---|---|
//! | `aws_access_key_id` | `AKIA`/`ASIA`/`ABIA`/`ACCA`/`A3T?` + 16 | word boundaries |
//! | `aws_secret_access_key` | 40 base64 chars after an `aws…secret…=`/`:` name, or as the value of such a JSON member | entropy ≥ 3.5, not a placeholder |
//! | `github_token` | `ghp_ gho_ ghu_ ghs_ ghr_` + 36, `github_pat_` 22 `_` 59 | boundaries, not a placeholder |
//! | `gitlab_token` | `glpat- gldt- glrt- glptt- glcbt- glffct- glft- glimt- glagent- gloas- glsoat-` + 20 or more, `GR1348941` + 20 | boundaries |
//! | `slack_token` | `xox[baprs]-…`, `xapp-…`; `xoxe.xox[bp]-1-` + 163–166, `xoxe-1-` + 146 | a numeric id segment, length ≥ 24 (the `xoxe` forms: exact length) |
//! | `slack_webhook` | `https://hooks.slack.com/services/…` | length |
//! | `stripe_key` | `sk_/rk_` + `live_/test_/prod_`, `whsec_` (not `pk_`) | boundaries |
//! | `google_api_key` | `AIza` + 35 | boundaries |
//! | `google_oauth` | `GOCSPX-` + 28, `ya29.` + 30 or more | boundaries; `ya29.`: a random body |
//! | `openai_api_key` | `sk-proj- sk-svcacct- sk-admin- sk-None-` + 40 or more; `sk-` + 32 or more letters and digits (legacy keys with `T3BlbkFJ`, OpenAI-compatible providers) | boundaries, a random body (letters and digits, entropy ≥ 3) |
//! | `anthropic_api_key` | `sk-ant-api03- sk-ant-admin01- sk-ant-oat01- sk-ant-ort01-` + 40 or more | boundaries |
//! | `openrouter_api_key` | `sk-or-v1-` + 64 hex | boundaries |
//! | `huggingface_token` | `hf_` or `api_org_` + 34 letters | boundaries, ≥ 6 capitals and ≥ 6 small letters |
//! | `groq_api_key`, `xai_api_key`, `perplexity_api_key`, `replicate_api_token`, `langsmith_api_key` | `gsk_` + 48–52, `xai-` + 80, `pplx-` + 48, `r8_` + 37, `lsv2_pt_`/`lsv2_sk_` + 32 hex `_` 10 hex | boundaries |
//! | `npm_token`, `pypi_token`, `docker_hub_token` | `npm_` + 36, `pypi-AgEIcHlwaS5vcmc` + 50 or more, `dckr_pat_` + 27 | boundaries |
//! | `twilio_api_key`, `sendgrid_api_key`, `mailgun_api_key` | `SK` + 32 hex, `SG.` 22 `.` 43, `key-` + 32 hex | boundaries; Twilio: a random body; Mailgun: `mailgun` in the 64 bytes before |
//! | `shopify_token`, `digitalocean_token`, `databricks_token` | `shpat_ shpca_ shppa_ shpss_` + 32 hex, `dop_v1_ doo_v1_ dor_v1_` + 64 hex, `dapi` + 32 hex | boundaries |
//! | `azure_storage_key` | `AccountKey=` + 86 base64 + `==`, `SharedAccessKey=` + 43 + `=` (range = the key) | boundaries |
//! | `azure_client_secret` | 3 chars, a digit, `Q~`, 31–34 chars | delimited on both sides, a random body |
//! | `discord_token`, `discord_webhook` | bot token `[MNO]…` 24–28 `.` 6 `.` 27–40; `https://discord.com/api/webhooks/<id>/<token>` | the first segment decodes to a 17–20 digit user id |
//! | `telegram_bot_token` | 8–10 digits `:AA` + 33 | boundaries (may follow `/bot`) |
//! | `postman_api_key`, `doppler_token`, `linear_api_key`, `grafana_token`, `sentry_token`, `notion_token` | `PMAK-`; `dp.pt.` etc.; `lin_api_`, `lin_oauth_`; `glc_`, `glsa_`, `eyJrIjoi`; `sntryu_`, `sntrys_`; `ntn_` | boundaries, exact length |
//! | `atlassian_api_token`, `heroku_api_key`, `vault_token`, `tailscale_key`, `pulumi_token`, `onepassword_token`, `age_secret_key` | `ATATT3`; `HRKU-AA`; `hvs.`, `hvb.`; `tskey-api-` etc.; `pul-`; `ops_eyJ`; `AGE-SECRET-KEY-1` | boundaries, exact length |
//! | `private_key` | `-----BEGIN … PRIVATE KEY-----` (PEM, OpenSSH, PGP; also a GCP service account file's `private_key`) through its END line | ≥ 16 base64 chars of body (escaped `\n` too) |
//! | `jwt` | `eyJ….….…` | header decodes to a JSON object with `alg`/`typ`, payload to an object |
//! | `url_password` | `scheme://user:password@host` (range = the password; a token used as password is also named) | not a placeholder (`password`, `****`, `$VAR`) |
//! | `generic_secret` | value after `password= secret: api_key= access_token= … Bearer`, or the value of a member whose name ends so | length 8–512, entropy ≥ 3.0 bits/char, not a placeholder, template, call or identifier |
//! | `email` | `local@domain.tld` (ASCII) | no URL userinfo, no `git@host:` remotes, no `@2x.png` file names |
//! | `phone` | `+` and 8–15 digits with separators; North American `(415) 555-2671`, `415-555-2671`, `1-800-555-0199` | boundaries, consistent separators |
//! | `credit_card` | 13–19 digits, optionally grouped by spaces or dashes | issuer prefix (IIN) and length, Luhn |
//! | `us_ssn` | `ddd-dd-dddd` | area not 000/666/9xx, group not 00, serial not 0000, published examples excluded |
//! | `iban` | two letters, two digits, 11–30 alphanumerics, optionally in groups of 4 (uppercase) | country length table, mod-97 |
//!
//! "Boundaries": a token does not continue a longer word (letters, digits,
//! `_`, `-`) on either side, and is not a placeholder (`xxxx`, `your_…`,
//! `…_here`). Vendor formats follow gitleaks' public rule set (MIT) and the
//! vendors' documentation; they are declared in `detectors.rs` (`PATTERNS`).
//!
//! Known gaps (by design, to stay precise): bare 10-digit phone numbers,
//! national formats outside North America without `+`, SSNs without dashes,
//! lowercase IBANs, non-ASCII e-mail local parts (the ASCII tail is found),
//! vendor tokens other than the ones listed, vendor keys without a prefix of
//! their own (those are found only as `generic_secret`, next to a secret-looking name).

mod checks;
mod detectors;
mod path;

use std::borrow::Cow;
use std::ops::{ControlFlow, Range};
use std::sync::LazyLock;

use regex_automata::meta;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use detectors::{Category, Kind};
use detectors::{PATTERNS, Rule};
pub(crate) use path::{Segment, format_path};

/// Where in a JSON member a finding sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// In a string value.
    Value,
    /// In an object member's name.
    Key,
}

/// One detected secret or piece of personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// What was found, e.g. `aws_access_key_id`, `email`.
    pub kind: Kind,
    /// `secret` or `pii`.
    pub category: Category,
    /// Path of the string that holds it, e.g. `$.body.to[2]`. Member names
    /// that themselves hold a finding appear redacted in paths.
    pub path: String,
    /// Whether the match is in a member name or a string value.
    pub location: Location,
    /// Byte offset of the match within the string (inclusive).
    pub start: usize,
    /// Byte offset of the match within the string (exclusive).
    pub end: usize,
    /// A masked preview that never shows more than four characters.
    pub preview: String,
}

impl Finding {
    /// The replacement text used by redaction: `[REDACTED:kind]`.
    #[must_use]
    pub fn replacement(&self) -> String {
        replacement(self.kind)
    }
}

/// Session labels for what a payload revealed: the category (`secret`,
/// `pii`) and the data tag of each kind (`secret.aws_access_key_id`,
/// `personal.pii.email`), sorted and without duplicates. Meant for
/// `session.labels`, so a rule like `"secret" in session.labels` can stop a
/// later `send_email`.
#[must_use]
pub fn labels(findings: &[Finding]) -> Vec<String> {
    let mut out: Vec<String> = findings
        .iter()
        .flat_map(|f| [f.category.as_str(), f.kind.data_tag()])
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn replacement(kind: Kind) -> String {
    format!("[REDACTED:{}]", kind.as_str())
}

/// Limits that keep a scan bounded on hostile payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanOptions {
    /// Containers nested deeper than this are not descended into (the root is depth 0).
    pub max_depth: usize,
    /// The scan stops after this many findings.
    pub max_findings: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            max_depth: 256,
            max_findings: 10_000,
        }
    }
}

/// Findings plus whether a limit cut the scan short.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    /// Findings in document order.
    pub findings: Vec<Finding>,
    /// Some containers were deeper than `max_depth` and were not scanned.
    pub depth_exceeded: bool,
    /// The scan stopped at `max_findings`.
    pub findings_capped: bool,
}

impl ScanReport {
    /// True when a limit left part of the payload unscanned.
    #[must_use]
    pub fn incomplete(&self) -> bool {
        self.depth_exceeded || self.findings_capped
    }
}

/// A confirmed match inside one string.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hit {
    kind: Kind,
    range: Range<usize>,
}

/// The compiled detectors. Build once (or use [`Scanner::global`]) and share:
/// `Scanner` is `Send + Sync` and scanning takes `&self`.
#[derive(Debug)]
pub struct Scanner {
    automaton: meta::Regex,
    rules: Vec<Rule>,
    secret_key_name: regex::Regex,
    aws_secret_key_name: regex::Regex,
    options: ScanOptions,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new()
    }
}

static GLOBAL: LazyLock<Scanner> = LazyLock::new(Scanner::new);

/// Strings shorter than this cannot hold any detector's match.
const MIN_CANDIDATE_LEN: usize = 6;

impl Scanner {
    /// Compiles the detectors with default limits.
    #[must_use]
    pub fn new() -> Scanner {
        Scanner::with_options(ScanOptions::default())
    }

    /// Compiles the detectors with the given limits.
    #[must_use]
    #[expect(
        clippy::expect_used,
        reason = "the patterns are constants; every one is compiled by the unit tests"
    )]
    pub fn with_options(options: ScanOptions) -> Scanner {
        let patterns: Vec<&str> = PATTERNS.iter().map(|(_, p)| *p).collect();
        let automaton = meta::Builder::new()
            .syntax(syntax::Config::new().unicode(false).utf8(true))
            .configure(meta::Config::new().match_kind(MatchKind::LeftmostFirst))
            .build_many(&patterns)
            .expect("built-in detector patterns compile");
        let secret_key_name = regex::Regex::new(detectors::SECRET_KEY_NAME).expect("built-in key pattern compiles");
        let aws_secret_key_name =
            regex::Regex::new(detectors::AWS_SECRET_KEY_NAME).expect("built-in key pattern compiles");
        Scanner {
            automaton,
            rules: PATTERNS.iter().map(|(r, _)| *r).collect(),
            secret_key_name,
            aws_secret_key_name,
            options,
        }
    }

    /// A process-wide scanner with default limits, compiled on first use.
    #[must_use]
    pub fn global() -> &'static Scanner {
        &GLOBAL
    }

    /// The limits this scanner applies.
    #[must_use]
    pub fn options(&self) -> ScanOptions {
        self.options
    }

    /// All findings in `value`, in document order.
    #[must_use]
    pub fn scan(&self, value: &Value) -> Vec<Finding> {
        self.scan_report(value).findings
    }

    /// All findings plus whether a limit cut the scan short.
    #[must_use]
    pub fn scan_report(&self, value: &Value) -> ScanReport {
        let mut report = ScanReport::default();
        let max = self.options.max_findings;
        let depth_exceeded = self.walk(value, &mut |f| {
            if report.findings.len() >= max {
                report.findings_capped = true;
                return ControlFlow::Break(());
            }
            report.findings.push(f);
            ControlFlow::Continue(())
        });
        report.depth_exceeded = depth_exceeded;
        report
    }

    /// Findings in a single string (paths are `$`).
    #[must_use]
    pub fn scan_str(&self, text: &str) -> Vec<Finding> {
        let mut hits = Vec::new();
        self.hits_in(text, None, &mut hits);
        hits.iter()
            .map(|h| make_finding(h, text, "$".to_owned(), Location::Value))
            .collect()
    }

    /// The secrets in one string: byte ranges and kinds, in order, overlaps
    /// resolved as [`Scanner::scan_str`] resolves them (a token used as a
    /// URL's password is both `url_password` and its own kind). Builds no
    /// [`Finding`]s: allocates only when the string holds a candidate
    /// (personal data included), for callers that scan many short strings.
    #[must_use]
    pub fn secret_spans(&self, text: &str) -> Vec<(Range<usize>, Kind)> {
        let mut hits = Vec::new();
        self.hits_in(text, None, &mut hits);
        hits.into_iter()
            .filter(|h| h.kind.category() == Category::Secret)
            .map(|h| (h.range, h.kind))
            .collect()
    }

    /// True when any string in `value` holds a secret. Stops at the first one.
    #[must_use]
    pub fn has_secret(&self, value: &Value) -> bool {
        self.has_category(value, Category::Secret)
    }

    /// True when any string in `value` holds personal data. Stops at the first one.
    #[must_use]
    pub fn has_pii(&self, value: &Value) -> bool {
        self.has_category(value, Category::Pii)
    }

    fn has_category(&self, value: &Value, category: Category) -> bool {
        let mut found = false;
        self.walk(value, &mut |f| {
            if f.category == category {
                found = true;
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        found
    }

    /// The secret findings only.
    #[must_use]
    pub fn secrets(&self, value: &Value) -> Vec<Finding> {
        self.scan(value)
            .into_iter()
            .filter(|f| f.category == Category::Secret)
            .collect()
    }

    /// The personal-data findings only.
    #[must_use]
    pub fn pii(&self, value: &Value) -> Vec<Finding> {
        self.scan(value)
            .into_iter()
            .filter(|f| f.category == Category::Pii)
            .collect()
    }

    /// Replaces every match in `value` (keys and string values) with
    /// `[REDACTED:kind]` and returns what was replaced. Byte ranges in the
    /// returned findings refer to the original strings.
    pub fn redact(&self, value: &mut Value) -> Vec<Finding> {
        self.redact_where(value, |_| true)
    }

    /// Like [`Scanner::redact`], but only replaces findings for which `select`
    /// returns true (e.g. secrets only); the others are left in place and not returned.
    pub fn redact_where(&self, value: &mut Value, select: impl Fn(Kind) -> bool) -> Vec<Finding> {
        let nothing_to_scan = match &*value {
            Value::Object(map) => map.is_empty(),
            Value::Array(items) => items.is_empty(),
            Value::String(s) => s.len() < MIN_CANDIDATE_LEN,
            Value::Null | Value::Bool(_) | Value::Number(_) => true,
        };
        if nothing_to_scan {
            // Often so (`metadata: {}`): no walk, no allocation.
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut path: Vec<Segment<'_>> = Vec::new();
        // (depth, segment leading to the node, node, parent member name)
        let mut stack: Vec<(usize, Option<Segment<'_>>, &mut Value, Option<&str>)> = vec![(0, None, value, None)];
        while let Some((depth, seg, node, parent_key)) = stack.pop() {
            if out.len() >= self.options.max_findings {
                break;
            }
            path.truncate(depth.saturating_sub(1));
            if let Some(seg) = seg {
                path.push(seg);
            }
            match node {
                Value::String(s) => {
                    if s.len() < MIN_CANDIDATE_LEN {
                        continue;
                    }
                    let mut found = Vec::new();
                    if let Some(new) = self.redact_text(s, parent_key, &select, "", Location::Value, &mut found) {
                        let p = format_path(&path);
                        out.extend(found.into_iter().map(|f| Finding { path: p.clone(), ..f }));
                        *s = new;
                    }
                }
                Value::Array(items) => {
                    if depth >= self.options.max_depth {
                        continue;
                    }
                    let first_child = stack.len();
                    for (i, child) in items.iter_mut().enumerate() {
                        stack.push((depth + 1, Some(Segment::Index(i)), child, None));
                    }
                    if let Some(pushed) = stack.get_mut(first_child..) {
                        pushed.reverse();
                    }
                }
                Value::Object(map) => {
                    if depth >= self.options.max_depth {
                        continue;
                    }
                    // First rename members whose names hold a finding.
                    let mut renames = Vec::new();
                    for key in map.keys() {
                        let mut found = Vec::new();
                        if let Some(new_key) = self.redact_text(key, None, &select, "", Location::Key, &mut found) {
                            path.push(Segment::Key(Cow::Owned(new_key.clone())));
                            let p = format_path(&path);
                            path.pop();
                            out.extend(found.into_iter().map(|f| Finding { path: p.clone(), ..f }));
                            renames.push((key.clone(), new_key));
                        }
                    }
                    for (old, new) in renames {
                        if let Some(v) = map.remove(&old) {
                            // Two names can redact to the same text; keep both members.
                            let mut name = new.clone();
                            let mut n = 2;
                            while map.contains_key(&name) {
                                name = format!("{new}#{n}");
                                n += 1;
                            }
                            map.insert(name, v);
                        }
                    }
                    let first_child = stack.len();
                    for (key, child) in map.iter_mut() {
                        let key = key.as_str();
                        stack.push((depth + 1, Some(Segment::Key(Cow::Borrowed(key))), child, Some(key)));
                    }
                    if let Some(pushed) = stack.get_mut(first_child..) {
                        pushed.reverse();
                    }
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        out.truncate(self.options.max_findings);
        out
    }

    /// Redacts one string, returning the new text and the findings.
    #[must_use]
    pub fn redact_str(&self, text: &str) -> (String, Vec<Finding>) {
        let mut findings = Vec::new();
        let redacted = self
            .redact_text(text, None, &|_| true, "$", Location::Value, &mut findings)
            .unwrap_or_else(|| text.to_owned());
        (redacted, findings)
    }

    /// Redacts one string until a rescan finds nothing selected (a
    /// replacement can turn a neighbour into a delimited match, e.g.
    /// `AKIA…EXAMPLEalice@example.com`); at most four rounds. Findings of
    /// later rounds carry ranges in the partly redacted text. Returns `None`
    /// when nothing was found.
    fn redact_text(
        &self,
        text: &str,
        member: Option<&str>,
        select: &dyn Fn(Kind) -> bool,
        path: &str,
        location: Location,
        out: &mut Vec<Finding>,
    ) -> Option<String> {
        let mut current: Option<String> = None;
        let mut hits = Vec::new();
        for _ in 0..4 {
            let source = current.as_deref().unwrap_or(text);
            hits.clear();
            // The member-name rule only applies to the original value.
            let member = if current.is_none() { member } else { None };
            self.hits_in(source, member, &mut hits);
            hits.retain(|h| select(h.kind));
            if hits.is_empty() {
                break;
            }
            out.extend(hits.iter().map(|h| make_finding(h, source, path.to_owned(), location)));
            current = Some(apply_redaction(source, &hits));
        }
        current
    }

    /// Visits every finding in document order; returns true when the depth
    /// limit left containers unscanned.
    fn walk(&self, root: &Value, visit: &mut dyn FnMut(Finding) -> ControlFlow<()>) -> bool {
        let mut hits = Vec::new();
        let mut depth_exceeded = false;
        let mut path: Vec<Segment<'_>> = Vec::new();
        // (depth, segment leading to the node, node, parent member name)
        let mut stack: Vec<(usize, Option<Segment<'_>>, &Value, Option<&str>)> = vec![(0, None, root, None)];
        while let Some((depth, seg, node, parent_key)) = stack.pop() {
            path.truncate(depth.saturating_sub(1));
            if let Some(seg) = seg {
                path.push(seg);
            }
            match node {
                Value::String(s) => {
                    hits.clear();
                    self.hits_in(s, parent_key, &mut hits);
                    if !hits.is_empty() {
                        let p = format_path(&path);
                        for h in &hits {
                            if visit(make_finding(h, s, p.clone(), Location::Value)).is_break() {
                                return depth_exceeded;
                            }
                        }
                    }
                }
                Value::Array(items) => {
                    if items.is_empty() {
                        continue;
                    }
                    if depth >= self.options.max_depth {
                        depth_exceeded = true;
                        continue;
                    }
                    for (i, child) in items.iter().enumerate().rev() {
                        stack.push((depth + 1, Some(Segment::Index(i)), child, None));
                    }
                }
                Value::Object(map) => {
                    if map.is_empty() {
                        continue;
                    }
                    if depth >= self.options.max_depth {
                        depth_exceeded = true;
                        continue;
                    }
                    let first_child = stack.len();
                    for (key, child) in map.iter() {
                        hits.clear();
                        self.hits_in(key, None, &mut hits);
                        let seg = if hits.is_empty() {
                            Segment::Key(Cow::Borrowed(key.as_str()))
                        } else {
                            let shown = Segment::Key(Cow::Owned(apply_redaction(key, &hits)));
                            path.push(shown.clone());
                            let p = format_path(&path);
                            path.pop();
                            for h in &hits {
                                if visit(make_finding(h, key, p.clone(), Location::Key)).is_break() {
                                    return depth_exceeded;
                                }
                            }
                            shown
                        };
                        stack.push((depth + 1, Some(seg), child, Some(key.as_str())));
                    }
                    if let Some(pushed) = stack.get_mut(first_child..) {
                        pushed.reverse();
                    }
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        depth_exceeded
    }

    /// Runs the automaton over `range` of `text`, confirming each candidate.
    /// With `nested`, the password of a URL is searched again so a token
    /// used as a password (`https://x:ghp_…@github.com`) is named too.
    fn search(&self, text: &str, range: Range<usize>, nested: bool, out: &mut Vec<Hit>) {
        let end = range.end;
        let mut input = Input::new(text).range(range);
        let mut skip_until = 0usize;
        while let Some(m) = self.automaton.search(&input) {
            let next = m.end().max(m.start() + 1);
            if m.start() >= skip_until {
                let rule = self.rules.get(m.pattern().as_usize()).copied();
                if let Some((kind, range)) = rule.and_then(|r| detectors::confirm(r, text, m.range())) {
                    if kind == Kind::PrivateKey {
                        skip_until = range.end;
                    }
                    if nested && kind == Kind::UrlPassword {
                        self.search(text, range.clone(), false, out);
                    }
                    out.push(Hit { kind, range });
                }
            }
            if next >= end {
                break;
            }
            input.set_start(next.max(skip_until.min(end)));
        }
    }

    /// The confirmed, de-overlapped matches in one string. `member` is the
    /// name of the object member holding the string, if any.
    fn hits_in(&self, text: &str, member: Option<&str>, out: &mut Vec<Hit>) {
        let start_len = out.len();
        if text.len() >= MIN_CANDIDATE_LEN {
            self.search(text, 0..text.len(), true, out);
        }
        if let Some(member) = member {
            let has_secret = out
                .get(start_len..)
                .is_some_and(|h| h.iter().any(|h| h.kind.category() == Category::Secret));
            if !has_secret && let Some(kind) = self.secret_by_member_name(member, text) {
                out.push(Hit {
                    kind,
                    range: 0..text.len(),
                });
            }
        }
        if out.len() > start_len + 1 {
            let new = out.split_off(start_len);
            out.extend(resolve_overlaps(text, new));
        }
    }

    /// A whole string value that is a secret because of its member's name
    /// (`"db_password": "…"`), or `None`.
    fn secret_by_member_name(&self, member: &str, text: &str) -> Option<Kind> {
        if text.len() < detectors::GENERIC_MIN_LEN || text.len() > detectors::GENERIC_MAX_LEN {
            return None;
        }
        if self.aws_secret_key_name.is_match(member)
            && text.len() == 40
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'+')
            && checks::shannon_entropy(text) >= 3.5
        {
            return Some(Kind::AwsSecretAccessKey);
        }
        (self.secret_key_name.is_match(member) && detectors::generic_value_ok(text)).then_some(Kind::GenericSecret)
    }
}

/// Sorts one string's hits. A generic hit that overlaps a specific one is
/// cut short before it (and dropped when what is left no longer looks like a
/// secret); a hit inside a private key block is dropped. Other overlapping
/// specific hits are kept (a token used as a URL password is both).
fn resolve_overlaps(text: &str, mut hits: Vec<Hit>) -> Vec<Hit> {
    hits.sort_by_key(|h| (h.range.start, h.kind.is_generic()));
    let specific: Vec<Range<usize>> = hits
        .iter()
        .filter(|h| !h.kind.is_generic())
        .map(|h| h.range.clone())
        .collect();
    let mut kept: Vec<Hit> = Vec::with_capacity(hits.len());
    for mut h in hits {
        if h.kind.is_generic() {
            let cut = specific
                .iter()
                .filter(|r| r.start < h.range.end && h.range.start < r.end)
                .map(|r| r.start)
                .min();
            if let Some(cut) = cut {
                let shortened = h.range.start..cut;
                let still_secret =
                    cut > h.range.start && text.get(shortened.clone()).is_some_and(detectors::generic_value_ok);
                if !still_secret {
                    continue;
                }
                h.range = shortened;
            }
        }
        let inside_kept = kept.last().is_some_and(|k| {
            k.kind == Kind::PrivateKey && k.range.start <= h.range.start && h.range.end <= k.range.end
        });
        if !inside_kept {
            kept.push(h);
        }
    }
    kept.sort_by_key(|h| h.range.start);
    kept
}

fn make_finding(hit: &Hit, text: &str, path: String, location: Location) -> Finding {
    let matched = text.get(hit.range.clone()).unwrap_or_default();
    Finding {
        kind: hit.kind,
        category: hit.kind.category(),
        path,
        location,
        start: hit.range.start,
        end: hit.range.end,
        preview: preview(hit.kind, matched),
    }
}

/// Shows at most four leading characters (at most a quarter of the match for
/// secrets, a fifth for personal data) followed by `****`.
fn preview(kind: Kind, matched: &str) -> String {
    let n = matched.chars().count();
    let shown = match kind.category() {
        Category::Secret => (n / 4).min(4),
        Category::Pii => (n / 5).min(2),
    };
    let mut out: String = matched.chars().take(shown).collect();
    out.push_str("****");
    out
}

/// Replaces each hit's range with `[REDACTED:kind]`; overlapping hits are
/// merged into one replacement named after the earliest (longest) hit.
fn apply_redaction(text: &str, hits: &[Hit]) -> String {
    let mut sorted: Vec<&Hit> = hits.iter().collect();
    sorted.sort_by_key(|h| (h.range.start, std::cmp::Reverse(h.range.end)));
    let mut merged: Vec<(Range<usize>, Kind)> = Vec::with_capacity(sorted.len());
    for h in sorted {
        match merged.last_mut() {
            Some((r, _)) if h.range.start < r.end => r.end = r.end.max(h.range.end),
            _ => merged.push((h.range.clone(), h.kind)),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0usize;
    for (range, kind) in merged {
        out.push_str(text.get(pos..range.start).unwrap_or_default());
        out.push_str(&replacement(kind));
        pos = range.end;
    }
    out.push_str(text.get(pos..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles_alone() {
        for (rule, pattern) in PATTERNS {
            let built = meta::Builder::new()
                .syntax(syntax::Config::new().unicode(false).utf8(true))
                .build(pattern);
            assert!(built.is_ok(), "{rule:?}: {built:?}");
        }
        let _ = Scanner::new();
    }

    #[test]
    fn scanner_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Scanner>();
    }

    #[test]
    fn secret_spans_agree_with_scan_str() {
        let scanner = Scanner::global();
        let token = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";
        for text in [
            String::new(),
            "alice@example.com".to_owned(),
            format!("sess.{token}"),
            format!("mail alice@example.com the key {token} and AKIAQWERTYUIOPASDFGHJ now"),
            format!("https://bob:{token}@github.com/x"),
        ] {
            let expected: Vec<(Range<usize>, Kind)> = scanner
                .scan_str(&text)
                .into_iter()
                .filter(|f| f.category == Category::Secret)
                .map(|f| (f.start..f.end, f.kind))
                .collect();
            assert_eq!(scanner.secret_spans(&text), expected, "{text}");
        }
        assert_eq!(scanner.secret_spans(&format!("sess.{token}")).len(), 1);
    }

    #[test]
    fn preview_masks() {
        assert_eq!(preview(Kind::AwsAccessKeyId, "AKIAIOSFODNN7EXAMPLE"), "AKIA****");
        assert_eq!(preview(Kind::Email, "bob@example.com"), "bo****");
        assert_eq!(preview(Kind::Jwt, "abc"), "****");
    }
}
