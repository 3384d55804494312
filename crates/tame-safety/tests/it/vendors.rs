//! The vendor credentials agents hold: each format is found under its own
//! stable kind name, its look-alikes are not, and redaction labels use the name.
//! Keys are assembled from their documented shape (prefix, charset, length);
//! none is a real key. Kinds are compared by name so these tests also run
//! against older detector tables (where they fail).

use serde_json::json;
use tame_safety::{Kind, Scanner};

fn names(text: &str) -> Vec<&'static str> {
    Scanner::global()
        .scan_str(text)
        .iter()
        .map(|f| f.kind.as_str())
        .collect()
}

#[track_caller]
fn assert_only(text: &str, name: &str) {
    assert_eq!(names(text), vec![name], "in {text:?}");
}

#[track_caller]
fn assert_clean(text: &str) {
    assert!(
        names(text).is_empty(),
        "expected nothing in {text:?}, got {:?}",
        names(text)
    );
}

/// `n` characters drawn from `alphabet` by a linear congruential generator
/// seeded with `seed` (deterministic, well mixed).
fn body(alphabet: &str, n: usize, seed: u64) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            chars[((state >> 33) % chars.len() as u64) as usize]
        })
        .collect()
}

const ALNUM: &str = "aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uVwXyZ";
const B64URL: &str = "aB3-cD4_eF5gH6iJ7kL8mN9oP0qR1sT2uVwXyZ";
const HEX: &str = "0123456789abcdef";
const LETTERS: &str = "aBcDeFgHiJkLmNoPqRsTuVwXyZ";

#[test]
fn llm_provider_keys() {
    let proj = format!("sk-proj-{}T3BlbkFJ{}", body(B64URL, 74, 1), body(B64URL, 74, 2));
    assert_only(&proj, "openai_api_key");
    assert_only(&format!("export OPENAI_API_KEY={proj}"), "openai_api_key");
    let admin = format!("sk-admin-{}T3BlbkFJ{}", body(B64URL, 58, 3), body(B64URL, 58, 4));
    assert_only(&format!("key: {admin}"), "openai_api_key");
    let legacy = format!("sk-{}T3BlbkFJ{}", body(ALNUM, 20, 5), body(ALNUM, 20, 6));
    assert_only(&format!("here it is {legacy} thanks"), "openai_api_key");
    assert_only(&format!("sk-{}", body(HEX, 32, 7)), "openai_api_key");

    let ant = format!("sk-ant-api03-{}AA", body(B64URL, 93, 8));
    assert_only(&format!("ANTHROPIC_API_KEY=\"{ant}\""), "anthropic_api_key");
    assert_only(
        &format!("sk-ant-admin01-{}AA", body(B64URL, 93, 9)),
        "anthropic_api_key",
    );
    assert_only(&format!("sk-or-v1-{}", body(HEX, 64, 10)), "openrouter_api_key");
    assert_only(&format!("token hf_{} ok", body(LETTERS, 34, 11)), "huggingface_token");
    assert_only(&format!("gsk_{}", body(ALNUM, 52, 12)), "groq_api_key");
    assert_only(&format!("xai-{}", body(ALNUM, 80, 13)), "xai_api_key");
    assert_only(&format!("pplx-{}", body(ALNUM, 48, 14)), "perplexity_api_key");
    assert_only(&format!("r8_{}", body(ALNUM, 37, 15)), "replicate_api_token");
    assert_only(
        &format!("lsv2_pt_{}_{}", body(HEX, 32, 16), body(HEX, 10, 17)),
        "langsmith_api_key",
    );
    assert_only(&format!("key=AIza{}", body(B64URL, 35, 18)), "google_api_key");
}

#[test]
fn llm_key_look_alikes_stay_clean() {
    for text in [
        "Use the sk- prefix for secret keys; see the task-list and risk-assessment.",
        "pip install scikit-learn",
        "sk-abcdefghijklmnopqrstuvwxyzabcdefgh",
        "sk-123456789012345678901234567890123456",
        "sk-000000000000000000000000000000000000000000000000",
        "OPENAI_API_KEY=sk-proj-your-api-key-here",
        "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "sk-ant-api03-short",
        "hf_model_dir = cache / 'hub'",
        "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",
        "HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "AIzaSyShort and AIza is how browser keys start",
        "request 3f2b8c1e-9d4a-4e2b-8f1a-2c3d4e5f6a7b sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ] {
        assert_clean(text);
    }
}

#[test]
fn registry_cloud_and_saas_tokens() {
    let cases = [
        (format!("npm_{}", body(ALNUM, 36, 20)), "npm_token"),
        (format!("pypi-AgEIcHlwaS5vcmc{}", body(B64URL, 80, 21)), "pypi_token"),
        (format!("dckr_pat_{}", body(B64URL, 27, 22)), "docker_hub_token"),
        (
            format!("glcbt-{}_{}", body(ALNUM, 5, 23), body(ALNUM, 20, 24)),
            "gitlab_token",
        ),
        (format!("SK{}", body(HEX, 32, 25)), "twilio_api_key"),
        (
            format!("SG.{}.{}", body(B64URL, 22, 26), body(B64URL, 43, 27)),
            "sendgrid_api_key",
        ),
        (format!("MAILGUN_API_KEY=key-{}", body(HEX, 32, 28)), "mailgun_api_key"),
        (format!("shpat_{}", body(HEX, 32, 29)), "shopify_token"),
        (format!("dop_v1_{}", body(HEX, 64, 30)), "digitalocean_token"),
        (format!("dapi{}", body(HEX, 32, 31)), "databricks_token"),
        (
            format!("client_secret={}8Q~{}", body(ALNUM, 3, 32), body(ALNUM, 34, 33)),
            "azure_client_secret",
        ),
        (
            format!("PMAK-{}-{}", body(HEX, 24, 34), body(HEX, 34, 35)),
            "postman_api_key",
        ),
        (format!("dp.pt.{}", body(ALNUM, 43, 36)), "doppler_token"),
        (format!("lin_api_{}", body(ALNUM, 40, 37)), "linear_api_key"),
        (
            format!("glsa_{}_{}", body(ALNUM, 32, 38), body(HEX, 8, 39)),
            "grafana_token",
        ),
        (format!("sntryu_{}", body(HEX, 64, 40)), "sentry_token"),
        (
            format!("ntn_{}{}", body("0123456789", 11, 41), body(ALNUM, 35, 42)),
            "notion_token",
        ),
        (format!("HRKU-AA{}", body(B64URL, 58, 43)), "heroku_api_key"),
        (format!("hvs.{}", body(B64URL, 95, 44)), "vault_token"),
        (
            format!("tskey-auth-k{}CNTRL-{}", body(ALNUM, 10, 45), body(ALNUM, 30, 46)),
            "tailscale_key",
        ),
        (format!("pul-{}", body(HEX, 40, 47)), "pulumi_token"),
        (format!("GOCSPX-{}", body(B64URL, 28, 48)), "google_oauth"),
        (format!("ya29.{}", body(B64URL, 120, 49)), "google_oauth"),
        (format!("xoxe-1-{}", body(ALNUM, 146, 50)), "slack_token"),
        (format!("sk_prod_{}", body(ALNUM, 24, 51)), "stripe_key"),
        (
            format!("AGE-SECRET-KEY-1{}", body("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58, 52)),
            "age_secret_key",
        ),
    ];
    for (text, name) in &cases {
        assert_only(text, name);
    }
}

#[test]
fn saas_look_alikes_stay_clean() {
    for text in [
        "npm_config_registry=https://registry.npmjs.org/ npm_package_version",
        "cache key-5d41402abc4b2a76b9719d911017c592 evicted",
        "SK00000000000000000000000000000000",
        "Lorem ipsum dolor sit amet, donec dapibus pretium.",
        "MSG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq",
        "static void GLC_CreateLightmapTextureArray(void);",
        "https://cdn.example.net/6a9e704af49b4380bb686f0c96d33b81~tplv-k3u1fbpfcp-watermark.image",
        "Nabcdefghijklmnopqrstuvw.abcdef.ghijklmnopqrstuvwxyz0123456789AB",
        "clm12345678:AgencyIdentificationCodeContentType",
        "AccountKey=YOUR_KEY_HERE;EndpointSuffix=core.windows.net",
    ] {
        assert_clean(text);
    }
}

#[test]
fn azure_connection_string_range_is_the_key() {
    let key = format!("{}==", body("aB3+cD4/eF5gH6iJ7kL8mN9oP0qR1sT2uVwXyZ", 86, 60));
    let text =
        format!("DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={key};EndpointSuffix=core.windows.net");
    let f = Scanner::global().scan_str(&text);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].kind.as_str(), "azure_storage_key");
    assert_eq!(&text[f[0].start..f[0].end], key);
}

#[test]
fn chat_bot_tokens() {
    // A Discord bot token starts with the base64 of the bot's numeric id.
    let discord = format!(
        "MTIzNDU2Nzg5MDEyMzQ1Njc4.{}.{}",
        body(B64URL, 6, 61),
        body(B64URL, 38, 62)
    );
    assert_only(&format!("DISCORD_TOKEN={discord}"), "discord_token");
    assert_only(
        &format!(
            "https://discord.com/api/webhooks/123456789012345678/{}",
            body(B64URL, 68, 63)
        ),
        "discord_webhook",
    );
    let telegram = format!("123456789:AA{}", body(B64URL, 33, 64));
    assert_only(&format!("TELEGRAM_BOT_TOKEN={telegram}"), "telegram_bot_token");
    let url = format!("https://api.telegram.org/bot{telegram}/getMe");
    assert_only(&url, "telegram_bot_token");
    let (redacted, _) = Scanner::global().redact_str(&url);
    assert_eq!(
        redacted,
        "https://api.telegram.org/bot[REDACTED:telegram_bot_token]/getMe"
    );
}

#[test]
fn gcp_service_account_private_key_is_found() {
    let pem_body: String = (0..6)
        .map(|i| body("aB3+cD4/eF5gH6iJ7kL8mN9oP0qR1sT2uVwXyZ", 64, i) + "\n")
        .collect();
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{pem_body}-----END PRIVATE KEY-----\n");
    // As a JSON document held in a string (a file's text: `\n` escaped) ...
    let file = json!({"type": "service_account", "private_key": pem, "project_id": "demo"}).to_string();
    assert!(names(&file).contains(&"private_key"), "{:?}", names(&file));
    // ... and as a parsed payload.
    let mut args = json!({"credentials": {"type": "service_account", "private_key": pem}});
    let found = Scanner::global().redact(&mut args);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind.as_str(), "private_key");
    assert!(
        args["credentials"]["private_key"]
            .as_str()
            .unwrap()
            .starts_with("[REDACTED:private_key]")
    );
}

#[test]
fn redaction_labels_name_the_vendor() {
    let ant = format!("sk-ant-api03-{}AA", body(B64URL, 93, 70));
    let hf = format!("hf_{}", body(LETTERS, 34, 71));
    let mut args = json!({"env": {"ANTHROPIC_API_KEY": ant, "HF_TOKEN": hf}});
    Scanner::global().redact(&mut args);
    assert_eq!(args["env"]["ANTHROPIC_API_KEY"], "[REDACTED:anthropic_api_key]");
    assert_eq!(args["env"]["HF_TOKEN"], "[REDACTED:huggingface_token]");
    let f = Scanner::global().scan(&json!({"k": format!("npm_{}", body(ALNUM, 36, 72))}));
    assert_eq!(
        tame_safety::labels(&f),
        vec!["secret".to_owned(), "secret.npm_token".to_owned()]
    );
}

/// The names are the public contract (redaction labels, findings, session
/// tags): unique, snake_case, serialized as themselves, tags derived from them.
#[test]
fn kind_names_are_stable_and_consistent() {
    let mut seen = std::collections::BTreeSet::new();
    for kind in Kind::ALL {
        let name = kind.as_str();
        assert!(seen.insert(name), "duplicate kind name {name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}"
        );
        assert_eq!(serde_json::to_value(kind).unwrap(), name);
        assert_eq!(serde_json::from_value::<Kind>(json!(name)).unwrap(), kind);
        assert_eq!(Kind::from_name(name), Some(kind));
        if kind.category() == tame_safety::Category::Secret && kind != Kind::GenericSecret {
            assert_eq!(kind.data_tag(), format!("secret.{name}"));
        }
    }
    // Names that shipped before the vendor detectors keep their spelling.
    for old in [
        "aws_access_key_id",
        "aws_secret_access_key",
        "github_token",
        "gitlab_token",
        "slack_token",
        "slack_webhook",
        "stripe_key",
        "google_api_key",
        "private_key",
        "jwt",
        "url_password",
        "generic_secret",
        "email",
        "phone",
        "credit_card",
        "us_ssn",
        "iban",
    ] {
        assert!(Kind::from_name(old).is_some(), "{old}");
    }
    assert_eq!(Kind::GenericSecret.data_tag(), "secret.generic");
}
