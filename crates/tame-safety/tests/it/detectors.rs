//! Each detector's true positives and hard negatives, JSON paths and byte ranges.

use serde_json::json;
use tame_safety::{Category, Kind, Location, Scanner};

fn kinds(text: &str) -> Vec<Kind> {
    Scanner::global().scan_str(text).iter().map(|f| f.kind).collect()
}

fn assert_finds(text: &str, kind: Kind) {
    assert!(
        kinds(text).contains(&kind),
        "expected {kind} in {text:?}, got {:?}",
        kinds(text)
    );
}

fn assert_clean(text: &str) {
    assert!(
        kinds(text).is_empty(),
        "expected nothing in {text:?}, got {:?}",
        kinds(text)
    );
}

#[test]
fn aws_keys() {
    assert_finds("AKIAIOSFODNN7EXAMPLE", Kind::AwsAccessKeyId);
    assert_finds("id=ASIAY34FZKBOKMUTVV7A,", Kind::AwsAccessKeyId);
    assert_clean("AKIAIOSFODNN7EXAMPLEX");
    assert_clean("AKIAiosfodnn7example");
    assert_finds(
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        Kind::AwsSecretAccessKey,
    );
    assert_clean("aws_secret_access_key = ${AWS_SECRET_ACCESS_KEY}");
    // A 40-character hex digest with no AWS context is not a key.
    assert_clean("commit 9fceb02d0ae598e95dc970b74767f19372d61af8 merged");
}

#[test]
fn aws_secret_by_member_name() {
    let v = json!({"credentials": {"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}});
    let f = Scanner::global().scan(&v);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, Kind::AwsSecretAccessKey);
    assert_eq!(f[0].path, "$.credentials.aws_secret_access_key");
    assert_eq!((f[0].start, f[0].end), (0, 40));
}

#[test]
fn vendor_tokens() {
    assert_finds("token ghp_R7c2Xw9Lk3Pq8Zt1Vb6Nm4Hs0Jd5Fg2Ya8Qe", Kind::GithubToken);
    assert_finds(
        "github_pat_11ABCDEFG0123456789abc_0123456789abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGHI",
        Kind::GithubToken,
    );
    assert_clean("ghp_tooShort123");
    assert_clean("ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_finds("glpat-Ab3dE6gH9jK2mN5pQ8sT", Kind::GitlabToken);
    assert_clean("glpat-short");
    assert_finds(
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        Kind::SlackToken,
    );
    assert_clean("xoxb-your-token-here");
    assert_finds(
        "post to https://hooks.slack.com/services/T0ABCDEFG/B0ABCDEFGHI/Zx8Yw7Vu6Ts5Rq4Po3Nm2Lk1",
        Kind::SlackWebhook,
    );
    assert_clean("see https://api.slack.com/messaging/webhooks");
    assert_finds("sk_live_51HqLyjWDarjtT1zdp7dcAbCdEf", Kind::StripeKey);
    assert_finds("rk_test_4eC39HqLyjWDarjtT1zdp7dc", Kind::StripeKey);
    assert_finds("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Kind::StripeKey);
    assert_clean("pk_live_51HqLyjWDarjtT1zdp7dcAbCdEf");
    assert_finds("key=AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI", Kind::GoogleApiKey);
    assert_clean("AIzaShort");
}

#[test]
fn private_key_block_covers_body() {
    let body = "MIIEowIBAAKCAQEA7bq98Xp2Qw1zR4s6T8u0V2w4Y6a8c0e2g4i6k8m0o2q4s6u8w0y2";
    let pem = format!("-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----");
    let text = format!("key:\n{pem}\nthanks");
    let f = Scanner::global().scan_str(&text);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].kind, Kind::PrivateKey);
    assert_eq!(&text[f[0].start..f[0].end], pem);
    assert_clean("-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----");
    assert_clean("Files start with -----BEGIN RSA PRIVATE KEY----- and a body.");
}

#[test]
fn jwt_needs_json_header() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    assert_finds(&format!("Authorization: Bearer {jwt}"), Kind::Jwt);
    // Not two generic findings on top: the JWT wins over `Bearer`.
    assert_eq!(kinds(&format!("Authorization: Bearer {jwt}")), vec![Kind::Jwt]);
    assert_clean("eyJnotjson0000.eyJnotjson0000.abcdefabcdef");
}

#[test]
fn url_password_range_is_the_password() {
    let text = "DATABASE_URL=postgres://app:Tr0ub4dor3xQ@db.internal:5432/app";
    let f = Scanner::global().scan_str(text);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].kind, Kind::UrlPassword);
    assert_eq!(&text[f[0].start..f[0].end], "Tr0ub4dor3xQ");
    assert_clean("https://user@example.com/path");
    assert_clean("https://user:password@host.example.net");
    assert_clean("https://example.com:8443/api");
}

#[test]
fn generic_assignments() {
    let text = "config: password=Zq8#kL2!pW9xV4m";
    let f = Scanner::global().scan_str(text);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, Kind::GenericSecret);
    assert_eq!(&text[f[0].start..f[0].end], "Zq8#kL2!pW9xV4m");
    assert_clean("password=changeme");
    assert_clean("api_key=${API_KEY}");
    assert_clean("password: ********");
    assert_clean("secret=true");
    // A specific detector beats the generic one.
    assert_eq!(
        kinds("api_key=sk_live_51HqLyjWDarjtT1zdp7dcAbCdEf"),
        vec![Kind::StripeKey]
    );
}

#[test]
fn generic_secret_by_member_name() {
    let v = json!({"db": {"password": "Zq8#kL2!pW9xV4m", "password_hint": "first pet", "user": "Zq8#kL2!pW9xV4m"}});
    let f = Scanner::global().scan(&v);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].path, "$.db.password");
    assert_eq!(f[0].kind, Kind::GenericSecret);
    let low = json!({"password": "aaaaaaaaaa", "api_key": "${KEY}"});
    assert!(Scanner::global().scan(&low).is_empty());
}

#[test]
fn personal_data() {
    assert_finds("mail jane.doe+billing@mail.example.org today", Kind::Email);
    assert_clean("icon@2x.png");
    assert_clean("user@localhost");
    assert_clean("git@github.com:org/repo.git");
    assert_finds("+44 20 7946 0958", Kind::Phone);
    assert_finds("call (415) 555-2671", Kind::Phone);
    assert_finds("415.555.2671", Kind::Phone);
    assert_clean("2024-01-15 192.168.1.1 v10.15.7");
    assert_clean("123-456-7890");
    assert_clean("415-555.2671");
    assert_finds("card 4111 1111 1111 1111 exp 12/29", Kind::CreditCard);
    assert_finds("378282246310005", Kind::CreditCard);
    assert_clean("4111 1111 1111 1112");
    assert_clean("1732170000000");
    assert_finds("SSN 536-22-1234", Kind::UsSsn);
    for bad in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "536-00-1234",
        "536-22-0000",
        "078-05-1120",
    ] {
        assert_clean(bad);
    }
    assert_finds("IBAN DE89 3704 0044 0532 0130 00.", Kind::Iban);
    assert_finds("GB82WEST12345698765432", Kind::Iban);
    assert_clean("DE89 3704 0044 0532 0130 01");
    assert_clean("XX12345678901234567890");
}

#[test]
fn card_followed_by_other_numbers() {
    let text = "4111 1111 1111 1111 2029";
    let f = Scanner::global().scan_str(text);
    assert_eq!(f.len(), 1);
    assert_eq!(&text[f[0].start..f[0].end], "4111 1111 1111 1111");
}

#[test]
fn paths_keys_and_categories() {
    let v = json!({
        "body": {"to": ["a@example.com", "b@example.com", "carol@example.com"]},
        "odd key": ["+1 415 555 2671"],
        "bob@example.com": "hello",
    });
    let f = Scanner::global().scan(&v);
    let got: Vec<(&str, &str, Location)> = f
        .iter()
        .map(|f| (f.kind.as_str(), f.path.as_str(), f.location))
        .collect();
    assert_eq!(
        got,
        vec![
            ("email", "$['[REDACTED:email]']", Location::Key),
            ("email", "$.body.to[0]", Location::Value),
            ("email", "$.body.to[1]", Location::Value),
            ("email", "$.body.to[2]", Location::Value),
            ("phone", "$['odd key'][0]", Location::Value),
        ]
    );
    assert!(f.iter().all(|f| f.category == Category::Pii));
    assert!(Scanner::global().has_pii(&v));
    assert!(!Scanner::global().has_secret(&v));
    assert!(Scanner::global().secrets(&v).is_empty());
}

#[test]
fn previews_never_show_the_whole_value() {
    let f = Scanner::global().scan_str("AKIAIOSFODNN7EXAMPLE and jane.doe@example.com");
    assert_eq!(f.len(), 2);
    for finding in &f {
        assert!(finding.preview.ends_with("****"));
        assert!(finding.preview.len() <= 8, "{}", finding.preview);
    }
    assert!(!f[1].preview.contains("example.com"));
}

#[test]
fn findings_serialize_with_snake_case_names() {
    let f = Scanner::global().scan(&json!({"k": "AKIAIOSFODNN7EXAMPLE"}));
    let v = serde_json::to_value(&f[0]).unwrap();
    assert_eq!(v["kind"], "aws_access_key_id");
    assert_eq!(v["category"], "secret");
    assert_eq!(v["path"], "$.k");
    assert_eq!(v["location"], "value");
    assert_eq!(v["start"], 0);
    assert_eq!(v["end"], 20);
}

#[test]
fn non_ascii_text_is_scanned() {
    let text = "Grüße aus München — 日本語 テスト, Kontakt: jürgen@example.com oder +49 30 901820";
    let k = kinds(text);
    assert!(k.contains(&Kind::Phone), "{k:?}");
    // The local part "jürgen" is not ASCII; the address is found from its ASCII tail.
    assert!(k.contains(&Kind::Email), "{k:?}");
}

#[test]
fn token_used_as_url_password_is_named_and_redacted_once() {
    let text = "https://x-access-token:ghs_16C7e42F292c6912E7710c838347Ae178B4a@github.com/org/repo.git";
    let mut k = kinds(text);
    k.sort();
    assert_eq!(k, vec![Kind::GithubToken, Kind::UrlPassword]);
    let (redacted, _) = Scanner::global().redact_str(text);
    assert_eq!(
        redacted,
        "https://x-access-token:[REDACTED:github_token]@github.com/org/repo.git"
    );
}

#[test]
fn trunk_prefixed_and_escaped_forms() {
    assert_finds("call 1-800-555-0199 now", Kind::Phone);
    assert_clean("call 21-800-555-0199 now");
    let escaped = "KEY=\"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\\n-----END OPENSSH PRIVATE KEY-----\"";
    let f = Scanner::global().scan_str(escaped);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, Kind::PrivateKey);
    assert!(escaped[f[0].start..f[0].end].ends_with("-----END OPENSSH PRIVATE KEY-----"));
}
