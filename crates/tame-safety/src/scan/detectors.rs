//! The detector table: one regex per detector (all compiled into one multi-pattern
//! automaton) and the confirmation step that validates each candidate.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::checks;

/// Whether a finding is a credential or personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Credentials: keys, tokens, passwords.
    Secret,
    /// Personal data: contact details, identifiers, financial numbers.
    Pii,
}

impl Category {
    /// The serialized name (`secret` or `pii`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Secret => "secret",
            Category::Pii => "pii",
        }
    }
}

/// What a detector found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// AWS access key id (`AKIA…`, `ASIA…`).
    AwsAccessKeyId,
    /// AWS secret access key (40 characters, next to an AWS secret key name).
    AwsSecretAccessKey,
    /// GitHub token (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`).
    GithubToken,
    /// GitLab token (`glpat-`, `gldt-`, `glrt-`, `glptt-`).
    GitlabToken,
    /// Slack token (`xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xapp-`).
    SlackToken,
    /// Slack incoming webhook URL.
    SlackWebhook,
    /// Stripe secret or restricted key, or webhook signing secret.
    StripeKey,
    /// Google API key (`AIza…`).
    GoogleApiKey,
    /// PEM/OpenSSH/PGP private key block.
    PrivateKey,
    /// JSON Web Token.
    Jwt,
    /// Password inside a URL (`scheme://user:pass@host`).
    UrlPassword,
    /// High-entropy value assigned to a secret-looking name.
    GenericSecret,
    /// E-mail address.
    Email,
    /// Phone number (international `+…` or North American with separators).
    Phone,
    /// Payment card number (issuer prefix and Luhn checked).
    CreditCard,
    /// US Social Security number (unissued ranges excluded).
    UsSsn,
    /// IBAN (country length and mod-97 checked).
    Iban,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 17] = [
        Kind::AwsAccessKeyId,
        Kind::AwsSecretAccessKey,
        Kind::GithubToken,
        Kind::GitlabToken,
        Kind::SlackToken,
        Kind::SlackWebhook,
        Kind::StripeKey,
        Kind::GoogleApiKey,
        Kind::PrivateKey,
        Kind::Jwt,
        Kind::UrlPassword,
        Kind::GenericSecret,
        Kind::Email,
        Kind::Phone,
        Kind::CreditCard,
        Kind::UsSsn,
        Kind::Iban,
    ];

    /// The serialized name, e.g. `aws_access_key_id`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AwsAccessKeyId => "aws_access_key_id",
            Kind::AwsSecretAccessKey => "aws_secret_access_key",
            Kind::GithubToken => "github_token",
            Kind::GitlabToken => "gitlab_token",
            Kind::SlackToken => "slack_token",
            Kind::SlackWebhook => "slack_webhook",
            Kind::StripeKey => "stripe_key",
            Kind::GoogleApiKey => "google_api_key",
            Kind::PrivateKey => "private_key",
            Kind::Jwt => "jwt",
            Kind::UrlPassword => "url_password",
            Kind::GenericSecret => "generic_secret",
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::CreditCard => "credit_card",
            Kind::UsSsn => "us_ssn",
            Kind::Iban => "iban",
        }
    }

    /// Parses a serialized name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Secret or personal data.
    #[must_use]
    pub fn category(self) -> Category {
        match self {
            Kind::Email | Kind::Phone | Kind::CreditCard | Kind::UsSsn | Kind::Iban => Category::Pii,
            _ => Category::Secret,
        }
    }

    /// The data tag this kind implies (used by tool contracts): secrets map to
    /// `secret.<kind>`, personal data to `personal.pii.*` or `personal.financial.*`.
    #[must_use]
    pub fn data_tag(self) -> &'static str {
        match self {
            Kind::Email => "personal.pii.email",
            Kind::Phone => "personal.pii.phone",
            Kind::UsSsn => "personal.pii.ssn",
            Kind::CreditCard => "personal.financial.card",
            Kind::Iban => "personal.financial.iban",
            Kind::AwsAccessKeyId => "secret.aws_access_key_id",
            Kind::AwsSecretAccessKey => "secret.aws_secret_access_key",
            Kind::GithubToken => "secret.github_token",
            Kind::GitlabToken => "secret.gitlab_token",
            Kind::SlackToken => "secret.slack_token",
            Kind::SlackWebhook => "secret.slack_webhook",
            Kind::StripeKey => "secret.stripe_key",
            Kind::GoogleApiKey => "secret.google_api_key",
            Kind::PrivateKey => "secret.private_key",
            Kind::Jwt => "secret.jwt",
            Kind::UrlPassword => "secret.url_password",
            Kind::GenericSecret => "secret.generic",
        }
    }

    /// True for the catch-all detector that yields to any specific one.
    pub(crate) fn is_generic(self) -> bool {
        self == Kind::GenericSecret
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which confirmation a pattern needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    PrivateKey,
    AwsKeyId,
    AwsSecret,
    Token(Kind),
    Slack,
    Jwt,
    UrlPassword,
    Assignment,
    Email,
    Iban,
    Card,
    Ssn,
    PhoneIntl,
    PhoneNanp,
}

/// Patterns, in priority order (when two candidates start at the same byte,
/// the earlier pattern wins). Syntax is ASCII-only (Unicode disabled), so the
/// lazy DFA never has to give up on non-ASCII text.
pub(crate) const PATTERNS: &[(Rule, &str)] = &[
    (
        Rule::PrivateKey,
        r"-----BEGIN (?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?-----",
    ),
    (Rule::AwsKeyId, r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"),
    (
        Rule::AwsSecret,
        r#"(?i:aws)[A-Za-z0-9_.-]{0,24}(?i:secret)[A-Za-z0-9_.-]{0,24}["']?[ \t]*[:=][ \t]*["']?[A-Za-z0-9/+]{40}"#,
    ),
    (
        Rule::Token(Kind::GithubToken),
        r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
    ),
    (
        Rule::Token(Kind::GitlabToken),
        r"gl(?:pat|dt|rt|ptt)-[A-Za-z0-9_-]{20,}",
    ),
    (
        Rule::Token(Kind::SlackWebhook),
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+-]{20,}",
    ),
    (
        Rule::Slack,
        r"(?:xox[baprs]|xapp)-[0-9A-Za-z]{1,40}(?:-[0-9A-Za-z]{1,64}){1,5}",
    ),
    (
        Rule::Token(Kind::StripeKey),
        r"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}|whsec_[0-9A-Za-z]{24,}",
    ),
    (Rule::Token(Kind::GoogleApiKey), r"AIza[0-9A-Za-z_-]{35}"),
    (Rule::Jwt, r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    (
        Rule::UrlPassword,
        r"[A-Za-z][A-Za-z0-9+.-]{1,15}://[A-Za-z0-9._~%!$&'()*+,;=-]{0,64}:[A-Za-z0-9._~%!$&'()*+,;=-]{1,128}@[A-Za-z0-9.-]+",
    ),
    (
        Rule::Assignment,
        r#"(?i:password|passwd|secret|api[_-]?key|apikey|access[_-]?token|auth[_-]?token|api[_-]?token|refresh[_-]?token|client[_-]?secret|private[_-]?key|secret[_-]?key)["']?[ \t]*[:=][ \t]*["']?|(?i:bearer)[ \t]+"#,
    ),
    (
        Rule::Email,
        r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}",
    ),
    (
        Rule::Iban,
        r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?",
    ),
    (Rule::Ssn, r"[0-9]{3}-[0-9]{2}-[0-9]{4}"),
    (Rule::Card, r"[0-9](?:[ -]?[0-9]){12,18}"),
    (
        Rule::PhoneIntl,
        r"\+[1-9][0-9]{0,3}(?:[ .-]?(?:\([0-9]{1,5}\)|[0-9]{1,5})){1,6}",
    ),
    (
        Rule::PhoneNanp,
        r"(?:1[-. ])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[-. ])[2-9][0-9]{2}[-. ][0-9]{4}",
    ),
];

/// Names whose string value is a secret when it has high entropy
/// (`"db_password": "…"`, `"apiKey": "…"`). Matched against the end of the key.
pub(crate) const SECRET_KEY_NAME: &str = r"(?i)(?:password|passwd|secret|api[_-]?key|apikey|access[_-]?token|auth[_-]?token|api[_-]?token|refresh[_-]?token|client[_-]?secret|private[_-]?key|secret[_-]?key|secret[_-]?access[_-]?key)$";

/// Key names that hold an AWS secret access key.
pub(crate) const AWS_SECRET_KEY_NAME: &str = r"(?i)(?:aws.{0,24}secret|secret[_-]?access[_-]?key)";

/// Minimum length and entropy (bits per byte) of a generic secret value.
pub(crate) const GENERIC_MIN_LEN: usize = 8;
pub(crate) const GENERIC_MAX_LEN: usize = 512;
pub(crate) const GENERIC_MIN_ENTROPY: f64 = 3.0;

/// Longest private key block body that is followed to its END line.
const MAX_KEY_BLOCK: usize = 64 * 1024;

fn byte_at(s: &str, i: usize) -> Option<u8> {
    s.as_bytes().get(i).copied()
}

fn byte_before(s: &str, i: usize) -> Option<u8> {
    i.checked_sub(1).and_then(|j| byte_at(s, j))
}

fn is_word(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_token_char(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_base64_char(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'+' || b == b'=')
}

/// Digit-ish neighbours that mean a number continues (so the candidate is a
/// fragment of a longer number).
fn continues_number(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'_'))
}

fn continues_number_after(s: &str, end: usize) -> bool {
    match byte_at(s, end) {
        None => false,
        Some(b) if b.is_ascii_alphanumeric() || b == b'_' => true,
        // "1234-" or "1234." followed by a digit: part of a longer number.
        Some(b'-' | b'.' | b'/' | b',') => byte_at(s, end + 1).is_some_and(|c| c.is_ascii_digit()),
        Some(_) => false,
    }
}

/// Confirms a candidate. Returns the kind and the byte range of the sensitive
/// part (the value only, for assignments and URL passwords), or `None` to reject.
pub(crate) fn confirm(rule: Rule, s: &str, m: Range<usize>) -> Option<(Kind, Range<usize>)> {
    let text = s.get(m.clone())?;
    match rule {
        Rule::PrivateKey => {
            // Extend over the body to the END line (or the end of the base64 run).
            let rest = s.get(m.end..)?;
            let body_len = rest
                .bytes()
                .take(MAX_KEY_BLOCK)
                .take_while(|b| b.is_ascii_alphanumeric() || b"+/=\r\n\t :,.-\\".contains(b))
                .count();
            let body = rest.get(..body_len)?;
            let (end, body_chars) = match body.find("-----END") {
                Some(pos) => {
                    let after = rest.get(pos..)?;
                    let close = after.get(8..)?.find("-----").map(|p| pos + 8 + p + 5);
                    (m.end + close.unwrap_or(body_len), pos)
                }
                None => (m.end + body_len, body_len),
            };
            let base64_chars = body
                .get(..body_chars)?
                .bytes()
                .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
                .count();
            (base64_chars >= 16).then_some((Kind::PrivateKey, m.start..end))
        }
        Rule::AwsKeyId => {
            (!is_word(byte_before(s, m.start)) && !is_word(byte_at(s, m.end))).then_some((Kind::AwsAccessKeyId, m))
        }
        Rule::AwsSecret => {
            if is_base64_char(byte_at(s, m.end)) {
                return None;
            }
            let start = m.end.checked_sub(40)?;
            let value = s.get(start..m.end)?;
            (checks::shannon_entropy(value) >= 3.5 && !checks::is_placeholder(value))
                .then_some((Kind::AwsSecretAccessKey, start..m.end))
        }
        Rule::Token(kind) => {
            let ok = !is_token_char(byte_before(s, m.start))
                && (kind == Kind::SlackWebhook || !is_token_char(byte_at(s, m.end)))
                && !checks::is_placeholder(text);
            ok.then_some((kind, m))
        }
        Rule::Slack => {
            if is_token_char(byte_before(s, m.start)) || is_token_char(byte_at(s, m.end)) {
                return None;
            }
            let has_id = text
                .split('-')
                .skip(1)
                .any(|seg| seg.len() >= 6 && seg.bytes().all(|b| b.is_ascii_digit()));
            (has_id && text.len() >= 24).then_some((Kind::SlackToken, m))
        }
        Rule::Jwt => {
            if is_token_char(byte_before(s, m.start)) || byte_at(s, m.end) == Some(b'.') {
                return None;
            }
            checks::jwt_ok(text).then_some((Kind::Jwt, m))
        }
        Rule::UrlPassword => {
            let scheme_end = text.find("://")?;
            let userinfo_start = scheme_end + 3;
            let at = text.get(userinfo_start..)?.find('@')? + userinfo_start;
            let colon = text.get(userinfo_start..at)?.find(':')? + userinfo_start;
            let password = text.get(colon + 1..at)?;
            let host = text.get(at + 1..)?;
            if checks::is_placeholder(password)
                || host.is_empty()
                || password.chars().all(|c| c == '*' || c == 'x' || c == 'X')
            {
                return None;
            }
            Some((Kind::UrlPassword, m.start + colon + 1..m.start + at))
        }
        Rule::Assignment => {
            let rest = s.get(m.end..)?;
            let len = rest
                .char_indices()
                .take(GENERIC_MAX_LEN + 1)
                .find(|&(_, c)| {
                    c.is_whitespace()
                        || matches!(
                            c,
                            '"' | '\'' | '`' | ',' | ';' | '&' | '(' | ')' | '{' | '}' | '[' | ']' | '<' | '>'
                        )
                })
                .map_or(rest.len(), |(i, _)| i);
            if len > GENERIC_MAX_LEN {
                return None;
            }
            let value = rest.get(..len)?;
            // `password = getPassword()` is code, not a value.
            let is_call = rest.as_bytes().get(len) == Some(&b'(');
            (!is_call && generic_value_ok(value)).then_some((Kind::GenericSecret, m.end..m.end + len))
        }
        Rule::Email => {
            let at = text.find('@')?;
            let local = text.get(..at)?;
            let domain = text.get(at + 1..)?;
            let tld = domain.rsplit('.').next()?.to_ascii_lowercase();
            const FILE_EXTENSIONS: &[&str] = &[
                "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "css", "js", "ts", "json", "yaml", "yml",
                "txt", "md", "html", "py", "rs",
            ];
            let bad = local.starts_with('.')
                || local.ends_with('.')
                || local.contains("..")
                || domain.split('.').any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-'))
                || FILE_EXTENSIONS.contains(&tld.as_str())
                || is_word(byte_at(s, m.end))
                || byte_at(s, m.end) == Some(b'@')
                // URL userinfo ("https://user@host/") and SCP-style remotes
                // ("git@github.com:org/repo") are not addresses.
                || s.get(..m.start).is_some_and(|before| before.ends_with("//"))
                || byte_at(s, m.end) == Some(b'/')
                || (byte_at(s, m.end) == Some(b':')
                    && byte_at(s, m.end + 1).is_some_and(|b| !b.is_ascii_whitespace()));
            (!bad).then_some((Kind::Email, m))
        }
        Rule::Iban => confirm_iban(s, m),
        Rule::Card => confirm_card(s, m),
        Rule::Ssn => {
            if continues_number(byte_before(s, m.start)) || continues_number_after(s, m.end) {
                return None;
            }
            let num = |r: Range<usize>| text.get(r).and_then(|t| t.parse::<u32>().ok());
            let (area, group, serial) = (num(0..3)?, num(4..6)?, num(7..11)?);
            checks::ssn_ok(area, group, serial).then_some((Kind::UsSsn, m))
        }
        Rule::PhoneIntl => {
            // Trim a trailing separator the pattern cannot end with anyway.
            if continues_number(byte_before(s, m.start))
                || byte_before(s, m.start) == Some(b'.')
                || continues_number_after(s, m.end)
            {
                return None;
            }
            let digits = text.bytes().filter(u8::is_ascii_digit).count();
            let opens = text.bytes().filter(|&b| b == b'(').count();
            let closes = text.bytes().filter(|&b| b == b')').count();
            ((8..=15).contains(&digits) && opens == closes && opens <= 1).then_some((Kind::Phone, m))
        }
        Rule::PhoneNanp => {
            let before = byte_before(s, m.start);
            if continues_number(before)
                || matches!(before, Some(b'.' | b'/' | b'$' | b'#'))
                || continues_number_after(s, m.end)
            {
                return None;
            }
            // Optional trunk prefix "1-" / "1 " / "1.".
            let bytes = text.as_bytes();
            let bytes = match bytes.first() {
                Some(b'1') => bytes.get(2..).unwrap_or_default(),
                _ => bytes,
            };
            // "415-555-2671": both separators must agree.
            if bytes.first() != Some(&b'(') && bytes.get(3) != bytes.get(7) {
                return None;
            }
            Some((Kind::Phone, m))
        }
    }
}

/// True when an assignment's value looks like a real, high-entropy secret.
pub(crate) fn generic_value_ok(value: &str) -> bool {
    (GENERIC_MIN_LEN..=GENERIC_MAX_LEN).contains(&value.len())
        && !value.chars().any(char::is_whitespace)
        && !checks::is_placeholder(value)
        && !looks_like_identifier(value)
        && checks::shannon_entropy(value) >= GENERIC_MIN_ENTROPY
}

/// Code rather than a credential: a dotted path of identifiers
/// (`self.password`, `config.api_key`) or a short letters-only word
/// (`getPassword`). Letters-only values of 16 characters or more still count
/// (passphrases).
fn looks_like_identifier(value: &str) -> bool {
    let ident = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let dotted = value.contains('.') && value.split('.').all(ident);
    let short_word = value.len() < 16 && value.bytes().all(|b| b.is_ascii_alphabetic());
    dotted || short_word
}

fn confirm_iban(s: &str, m: Range<usize>) -> Option<(Kind, Range<usize>)> {
    if is_word(byte_before(s, m.start)) {
        return None;
    }
    let text = s.get(m.clone())?;
    let compact: Vec<u8> = text.bytes().filter(|b| *b != b' ').collect();
    let expected = checks::iban_expected_len(&compact)?;
    if compact.len() < expected {
        return None;
    }
    // Find the byte offset in `text` where the expected length ends.
    let mut seen = 0usize;
    let mut end_in_text = text.len();
    for (i, b) in text.bytes().enumerate() {
        if b != b' ' {
            seen += 1;
            if seen == expected {
                end_in_text = i + 1;
                break;
            }
        }
    }
    let end = m.start + end_in_text;
    if is_word(byte_at(s, end)) {
        return None;
    }
    let iban = compact.get(..expected)?;
    checks::iban_mod97(iban).then_some((Kind::Iban, m.start..end))
}

fn confirm_card(s: &str, m: Range<usize>) -> Option<(Kind, Range<usize>)> {
    if continues_number(byte_before(s, m.start)) || byte_before(s, m.start) == Some(b'.') {
        return None;
    }
    let text = s.get(m.clone())?;
    // Candidate ends: every group boundary (longest first), so a trailing
    // unrelated number ("4111 1111 1111 1111 2024") does not hide the card.
    let mut ends: Vec<usize> = text
        .bytes()
        .enumerate()
        .filter(|&(_, b)| b == b' ' || b == b'-')
        .map(|(i, _)| i)
        .collect();
    ends.push(text.len());
    for &end in ends.iter().rev() {
        let cand = text.get(..end)?;
        let digits: Vec<u8> = cand.bytes().filter(u8::is_ascii_digit).collect();
        if !(13..=19).contains(&digits.len()) {
            continue;
        }
        if continues_number_after(s, m.start + end) && end == text.len() {
            continue;
        }
        if !card_groups_ok(cand) {
            continue;
        }
        if checks::card_issuer_ok(&digits) && checks::luhn(&digits) {
            return Some((Kind::CreditCard, m.start..m.start + end));
        }
    }
    None
}

/// Either no separators, or one separator kind between groups of 3 to 6
/// digits with a first group of 4 ("4111 1111 1111 1111", "3782 822463 10005").
fn card_groups_ok(text: &str) -> bool {
    let has_space = text.contains(' ');
    let has_dash = text.contains('-');
    if !has_space && !has_dash {
        return true;
    }
    if has_space && has_dash {
        return false;
    }
    let sep = if has_space { ' ' } else { '-' };
    let mut groups = text.split(sep);
    let first_ok = groups.next().is_some_and(|g| g.len() == 4);
    first_ok && groups.all(|g| (3..=6).contains(&g.len()))
}
