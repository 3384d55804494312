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

/// Declares [`Kind`] from one table: variant, stable name (the redaction
/// label and the serialized form), category and data tag.
macro_rules! kinds {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $name:literal, $category:ident, $tag:literal; )+) => {
        /// What a detector found. The names ([`Kind::as_str`]) are stable: they
        /// appear in `[REDACTED:<name>]`, in findings and in session labels.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Kind {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: [Kind; [$($name),+].len()] = [$(Kind::$variant),+];

            /// The stable name, e.g. `aws_access_key_id`.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)+
                }
            }

            /// Secret or personal data.
            #[must_use]
            pub fn category(self) -> Category {
                match self {
                    $(Kind::$variant => Category::$category,)+
                }
            }

            /// The data tag this kind implies (used by tool contracts): secrets map to
            /// `secret.<kind>`, personal data to `personal.pii.*` or `personal.financial.*`.
            #[must_use]
            pub fn data_tag(self) -> &'static str {
                match self {
                    $(Kind::$variant => $tag,)+
                }
            }
        }
    };
}

kinds! {
    /// AWS access key id (`AKIA…`, `ASIA…`, `ABIA…`, `ACCA…`, `A3T…`).
    AwsAccessKeyId = "aws_access_key_id", Secret, "secret.aws_access_key_id";
    /// AWS secret access key (40 characters, next to an AWS secret key name).
    AwsSecretAccessKey = "aws_secret_access_key", Secret, "secret.aws_secret_access_key";
    /// GitHub token (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`).
    GithubToken = "github_token", Secret, "secret.github_token";
    /// GitLab token (`glpat-`, `gldt-`, `glrt-`, `glptt-`, `glcbt-`, `glft-`, … and runner registration `GR1348941…`).
    GitlabToken = "gitlab_token", Secret, "secret.gitlab_token";
    /// Slack token (`xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xapp-`, configuration `xoxe.xoxp-`, refresh `xoxe-`).
    SlackToken = "slack_token", Secret, "secret.slack_token";
    /// Slack incoming webhook URL.
    SlackWebhook = "slack_webhook", Secret, "secret.slack_webhook";
    /// Stripe secret or restricted key, or webhook signing secret.
    StripeKey = "stripe_key", Secret, "secret.stripe_key";
    /// Google API key (`AIza…`).
    GoogleApiKey = "google_api_key", Secret, "secret.google_api_key";
    /// Google OAuth client secret (`GOCSPX-…`) or access token (`ya29.…`).
    GoogleOauth = "google_oauth", Secret, "secret.google_oauth";
    /// OpenAI API key (`sk-proj-`, `sk-svcacct-`, `sk-admin-`, `sk-None-`, legacy `sk-…`; also the `sk-…` keys of OpenAI-compatible providers).
    OpenaiApiKey = "openai_api_key", Secret, "secret.openai_api_key";
    /// Anthropic API, admin or OAuth key (`sk-ant-api03-`, `sk-ant-admin01-`, `sk-ant-oat01-`, `sk-ant-ort01-`).
    AnthropicApiKey = "anthropic_api_key", Secret, "secret.anthropic_api_key";
    /// OpenRouter API key (`sk-or-v1-…`).
    OpenrouterApiKey = "openrouter_api_key", Secret, "secret.openrouter_api_key";
    /// Hugging Face access token (`hf_…`) or organization token (`api_org_…`).
    HuggingfaceToken = "huggingface_token", Secret, "secret.huggingface_token";
    /// Groq API key (`gsk_…`).
    GroqApiKey = "groq_api_key", Secret, "secret.groq_api_key";
    /// xAI API key (`xai-…`).
    XaiApiKey = "xai_api_key", Secret, "secret.xai_api_key";
    /// Perplexity API key (`pplx-…`).
    PerplexityApiKey = "perplexity_api_key", Secret, "secret.perplexity_api_key";
    /// Replicate API token (`r8_…`).
    ReplicateApiToken = "replicate_api_token", Secret, "secret.replicate_api_token";
    /// LangSmith API key (`lsv2_pt_…`, `lsv2_sk_…`).
    LangsmithApiKey = "langsmith_api_key", Secret, "secret.langsmith_api_key";
    /// npm access token (`npm_…`).
    NpmToken = "npm_token", Secret, "secret.npm_token";
    /// PyPI upload token (`pypi-AgEIcHlwaS5vcmc…`).
    PypiToken = "pypi_token", Secret, "secret.pypi_token";
    /// Docker Hub personal access token (`dckr_pat_…`).
    DockerHubToken = "docker_hub_token", Secret, "secret.docker_hub_token";
    /// Twilio API key (`SK` + 32 hex).
    TwilioApiKey = "twilio_api_key", Secret, "secret.twilio_api_key";
    /// SendGrid API key (`SG.….…`).
    SendgridApiKey = "sendgrid_api_key", Secret, "secret.sendgrid_api_key";
    /// Mailgun private API key (`key-` + 32 hex, with `mailgun` shortly before).
    MailgunApiKey = "mailgun_api_key", Secret, "secret.mailgun_api_key";
    /// Shopify access token or shared secret (`shpat_`, `shpca_`, `shppa_`, `shpss_`).
    ShopifyToken = "shopify_token", Secret, "secret.shopify_token";
    /// DigitalOcean token (`dop_v1_`, `doo_v1_`, `dor_v1_`).
    DigitaloceanToken = "digitalocean_token", Secret, "secret.digitalocean_token";
    /// Databricks access token (`dapi…`).
    DatabricksToken = "databricks_token", Secret, "secret.databricks_token";
    /// Azure storage account key or shared access key in a connection string (`AccountKey=…`, `SharedAccessKey=…`).
    AzureStorageKey = "azure_storage_key", Secret, "secret.azure_storage_key";
    /// Azure AD (Entra ID) client secret (`…8Q~…`).
    AzureClientSecret = "azure_client_secret", Secret, "secret.azure_client_secret";
    /// Discord bot token.
    DiscordToken = "discord_token", Secret, "secret.discord_token";
    /// Discord webhook URL.
    DiscordWebhook = "discord_webhook", Secret, "secret.discord_webhook";
    /// Telegram bot token (`123456789:AA…`).
    TelegramBotToken = "telegram_bot_token", Secret, "secret.telegram_bot_token";
    /// Postman API key (`PMAK-…`).
    PostmanApiKey = "postman_api_key", Secret, "secret.postman_api_key";
    /// Doppler token (`dp.pt.`, `dp.st.`, `dp.ct.`, `dp.sa.`, `dp.scim.`, `dp.audit.`).
    DopplerToken = "doppler_token", Secret, "secret.doppler_token";
    /// Linear API key or OAuth token (`lin_api_`, `lin_oauth_`).
    LinearApiKey = "linear_api_key", Secret, "secret.linear_api_key";
    /// Grafana token (cloud `glc_`, service account `glsa_`, legacy API key `eyJrIjoi…`).
    GrafanaToken = "grafana_token", Secret, "secret.grafana_token";
    /// Sentry token (`sntryu_`, `sntrys_`).
    SentryToken = "sentry_token", Secret, "secret.sentry_token";
    /// Notion integration token (`ntn_…`).
    NotionToken = "notion_token", Secret, "secret.notion_token";
    /// Atlassian API token (`ATATT3…`).
    AtlassianApiToken = "atlassian_api_token", Secret, "secret.atlassian_api_token";
    /// Heroku API key (`HRKU-AA…`).
    HerokuApiKey = "heroku_api_key", Secret, "secret.heroku_api_key";
    /// HashiCorp Vault token (`hvs.`, `hvb.`).
    VaultToken = "vault_token", Secret, "secret.vault_token";
    /// Tailscale key (`tskey-api-`, `tskey-auth-`, `tskey-client-`, `tskey-scim-`, `tskey-webhook-`).
    TailscaleKey = "tailscale_key", Secret, "secret.tailscale_key";
    /// Pulumi access token (`pul-…`).
    PulumiToken = "pulumi_token", Secret, "secret.pulumi_token";
    /// 1Password service account token (`ops_eyJ…`).
    OnepasswordToken = "onepassword_token", Secret, "secret.onepassword_token";
    /// age secret key (`AGE-SECRET-KEY-1…`).
    AgeSecretKey = "age_secret_key", Secret, "secret.age_secret_key";
    /// PEM/OpenSSH/PGP private key block (also the `private_key` of a GCP service account file).
    PrivateKey = "private_key", Secret, "secret.private_key";
    /// JSON Web Token.
    Jwt = "jwt", Secret, "secret.jwt";
    /// Password inside a URL (`scheme://user:pass@host`).
    UrlPassword = "url_password", Secret, "secret.url_password";
    /// High-entropy value assigned to a secret-looking name.
    GenericSecret = "generic_secret", Secret, "secret.generic";
    /// E-mail address.
    Email = "email", Pii, "personal.pii.email";
    /// Phone number (international `+…` or North American with separators).
    Phone = "phone", Pii, "personal.pii.phone";
    /// Payment card number (issuer prefix and Luhn checked).
    CreditCard = "credit_card", Pii, "personal.financial.card";
    /// US Social Security number (unissued ranges excluded).
    UsSsn = "us_ssn", Pii, "personal.pii.ssn";
    /// IBAN (country length and mod-97 checked).
    Iban = "iban", Pii, "personal.financial.iban";
}

impl Kind {
    /// Parses a stable name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
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
    /// A vendor credential: a fixed prefix and an exact charset and length.
    Token(Kind, Check),
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

/// What a vendor token must satisfy besides its pattern. Every token must
/// also not continue a longer word on the left (nor on the right, except
/// [`Check::Url`]) and not be a placeholder (`xxxx`, `your_…`, `…_here`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// The shape alone (a distinctive prefix and an exact length).
    Shape,
    /// A URL whose path may go on (`…/services/T…/B…/…`).
    Url,
    /// The part after the first `n` bytes mixes letters and digits and has
    /// at least 3 bits of entropy per byte (a short or common prefix: `sk-`, `SK`).
    Random(u8),
    /// Letters only by format: at least six upper- and six lowercase letters
    /// (so `hf_` + a camel-case identifier is not a token).
    MixedCase,
    /// Stands alone (start, end, whitespace, quotes or `=:,()<>` around it)
    /// and mixes letters and digits (Azure client secrets, which have no prefix).
    Isolated,
    /// Only with the word (ASCII, any case) in the 64 bytes before it.
    Near(&'static str),
    /// The secret is what follows the first `=` (`AccountKey=…`).
    AfterEquals,
    /// Telegram: may follow `bot` (`https://api.telegram.org/bot<token>/…`).
    TelegramBot,
    /// Discord: the first segment is the base64 of a numeric user id.
    DiscordBot,
}

/// Patterns, in priority order (when two candidates start at the same byte,
/// the earlier pattern wins). Syntax is ASCII-only (Unicode disabled), so the
/// lazy DFA never has to give up on non-ASCII text. Vendor formats follow the
/// public rule set of gitleaks (MIT) and the vendors' documentation.
pub(crate) const PATTERNS: &[(Rule, &str)] = &[
    (
        Rule::PrivateKey,
        r"-----BEGIN (?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?-----",
    ),
    (Rule::AwsKeyId, r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}"),
    (
        Rule::AwsSecret,
        r#"(?i:aws)[A-Za-z0-9_.-]{0,24}(?i:secret)[A-Za-z0-9_.-]{0,24}["']?[ \t]*[:=][ \t]*["']?[A-Za-z0-9/+]{40}"#,
    ),
    (
        Rule::Token(Kind::GithubToken, Check::Shape),
        r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
    ),
    (
        Rule::Token(Kind::GitlabToken, Check::Shape),
        r"gl(?:pat|dt|rt|ptt|cbt|ffct|ft|imt|agent|oas|soat)-[A-Za-z0-9_-]{20,}(?:\.[0-9a-z]{9})?|GR1348941[A-Za-z0-9_-]{20}",
    ),
    (
        Rule::Token(Kind::SlackWebhook, Check::Url),
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+-]{20,}",
    ),
    (
        Rule::Token(Kind::SlackToken, Check::Shape),
        r"xoxe\.xox[bp]-[0-9]-[A-Za-z0-9]{163,166}|xoxe-[0-9]-[A-Za-z0-9]{146}",
    ),
    (
        Rule::Slack,
        r"(?:xox[baprs]|xapp)-[0-9A-Za-z]{1,40}(?:-[0-9A-Za-z]{1,64}){1,5}",
    ),
    (
        Rule::Token(Kind::StripeKey, Check::Shape),
        r"(?:sk|rk)_(?:live|test|prod)_[0-9A-Za-z]{16,}|whsec_[0-9A-Za-z]{24,}",
    ),
    (Rule::Token(Kind::GoogleApiKey, Check::Shape), r"AIza[0-9A-Za-z_-]{35}"),
    (
        Rule::Token(Kind::GoogleOauth, Check::Shape),
        r"GOCSPX-[0-9A-Za-z_-]{28}",
    ),
    (
        Rule::Token(Kind::GoogleOauth, Check::Random(5)),
        r"ya29\.[0-9A-Za-z_-]{30,}",
    ),
    (
        Rule::Token(Kind::AnthropicApiKey, Check::Shape),
        r"sk-ant-(?:api|admin|oat|ort)[0-9]{2}-[A-Za-z0-9_-]{40,}",
    ),
    (
        Rule::Token(Kind::OpenrouterApiKey, Check::Shape),
        r"sk-or-v1-[0-9a-f]{64}",
    ),
    (
        Rule::Token(Kind::OpenaiApiKey, Check::Random(7)),
        r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{40,}",
    ),
    (
        Rule::Token(Kind::OpenaiApiKey, Check::Random(3)),
        r"sk-[A-Za-z0-9]{32,}",
    ),
    (
        Rule::Token(Kind::HuggingfaceToken, Check::MixedCase),
        r"hf_[A-Za-z]{34}|api_org_[A-Za-z]{34}",
    ),
    (Rule::Token(Kind::GroqApiKey, Check::Shape), r"gsk_[A-Za-z0-9]{48,52}"),
    (Rule::Token(Kind::XaiApiKey, Check::Shape), r"xai-[A-Za-z0-9]{80}"),
    (
        Rule::Token(Kind::PerplexityApiKey, Check::Shape),
        r"pplx-[A-Za-z0-9]{48}",
    ),
    (
        Rule::Token(Kind::ReplicateApiToken, Check::Random(3)),
        r"r8_[A-Za-z0-9]{37}",
    ),
    (
        Rule::Token(Kind::LangsmithApiKey, Check::Shape),
        r"lsv2_(?:pt|sk)_[0-9a-f]{32}_[0-9a-f]{10}",
    ),
    (Rule::Token(Kind::NpmToken, Check::Shape), r"npm_[A-Za-z0-9]{36}"),
    (
        Rule::Token(Kind::PypiToken, Check::Shape),
        r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}",
    ),
    (
        Rule::Token(Kind::DockerHubToken, Check::Shape),
        r"dckr_pat_[A-Za-z0-9_-]{27}",
    ),
    (Rule::Token(Kind::TwilioApiKey, Check::Random(2)), r"SK[0-9a-f]{32}"),
    (
        Rule::Token(Kind::SendgridApiKey, Check::Shape),
        r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
    ),
    (
        Rule::Token(Kind::MailgunApiKey, Check::Near("mailgun")),
        r"key-[0-9a-f]{32}",
    ),
    (
        Rule::Token(Kind::ShopifyToken, Check::Shape),
        r"shp(?:at|ca|pa|ss)_[0-9a-fA-F]{32}",
    ),
    (
        Rule::Token(Kind::DigitaloceanToken, Check::Shape),
        r"do[opr]_v1_[0-9a-f]{64}",
    ),
    (
        Rule::Token(Kind::DatabricksToken, Check::Random(4)),
        r"dapi[0-9a-f]{32}(?:-[0-9])?",
    ),
    (
        Rule::Token(Kind::AzureStorageKey, Check::AfterEquals),
        r"AccountKey=[A-Za-z0-9+/]{86}==|SharedAccessKey=[A-Za-z0-9+/]{43}=",
    ),
    (
        Rule::Token(Kind::AzureClientSecret, Check::Isolated),
        r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}",
    ),
    (
        Rule::Token(Kind::DiscordWebhook, Check::Shape),
        r"https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,68}",
    ),
    (
        Rule::Token(Kind::DiscordToken, Check::DiscordBot),
        r"[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}",
    ),
    (
        Rule::Token(Kind::TelegramBotToken, Check::TelegramBot),
        r"[0-9]{8,10}:AA[A-Za-z0-9_-]{33}",
    ),
    (
        Rule::Token(Kind::PostmanApiKey, Check::Shape),
        r"PMAK-[0-9a-fA-F]{24}-[0-9a-fA-F]{34}",
    ),
    (
        Rule::Token(Kind::DopplerToken, Check::Shape),
        r"dp\.(?:pt|st|ct|sa|scim|audit)\.[A-Za-z0-9]{40,44}|dp\.st\.[a-z0-9_-]{2,35}\.[A-Za-z0-9]{40,44}",
    ),
    (
        Rule::Token(Kind::LinearApiKey, Check::Shape),
        r"lin_api_[A-Za-z0-9]{40}|lin_oauth_[0-9a-f]{64}",
    ),
    (
        Rule::Token(Kind::GrafanaToken, Check::Shape),
        r"glc_[A-Za-z0-9+/]{32,400}={0,2}|glsa_[A-Za-z0-9]{32}_[0-9a-fA-F]{8}|eyJrIjoi[A-Za-z0-9]{70,400}={0,2}",
    ),
    (
        Rule::Token(Kind::SentryToken, Check::Shape),
        r"sntryu_[0-9a-f]{64}|sntrys_eyJ[A-Za-z0-9+/=]{20,}_[A-Za-z0-9+/]{43}",
    ),
    (
        Rule::Token(Kind::NotionToken, Check::Shape),
        r"ntn_[0-9]{11}[A-Za-z0-9]{35}",
    ),
    (
        Rule::Token(Kind::AtlassianApiToken, Check::Shape),
        r"ATATT3[A-Za-z0-9_=-]{186}",
    ),
    (
        Rule::Token(Kind::HerokuApiKey, Check::Shape),
        r"HRKU-AA[0-9A-Za-z_-]{58}",
    ),
    (
        Rule::Token(Kind::VaultToken, Check::Shape),
        r"hvs\.[A-Za-z0-9_-]{90,120}|hvb\.[A-Za-z0-9_-]{138,300}",
    ),
    (
        Rule::Token(Kind::TailscaleKey, Check::Shape),
        r"tskey-(?:api|auth|client|scim|webhook)-[A-Za-z0-9]{6,}-[A-Za-z0-9]{16,}",
    ),
    (Rule::Token(Kind::PulumiToken, Check::Shape), r"pul-[0-9a-f]{40}"),
    (
        Rule::Token(Kind::OnepasswordToken, Check::Shape),
        r"ops_eyJ[A-Za-z0-9+/]{250,}={0,3}",
    ),
    (
        Rule::Token(Kind::AgeSecretKey, Check::Shape),
        r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
    ),
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
        Rule::Token(kind, check) => confirm_token(kind, check, s, m),
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

/// Confirms a vendor token: delimited, not a placeholder, and its [`Check`].
fn confirm_token(kind: Kind, check: Check, s: &str, m: Range<usize>) -> Option<(Kind, Range<usize>)> {
    let text = s.get(m.clone())?;
    let before = byte_before(s, m.start);
    let after = byte_at(s, m.end);
    let left_ok = match check {
        // `https://api.telegram.org/bot123456789:AA…`
        Check::TelegramBot => !is_token_char(before) || s.get(..m.start).is_some_and(|b| b.ends_with("/bot")),
        Check::Isolated => before.is_none_or(is_delimiter),
        _ => !is_token_char(before),
    };
    let right_ok = match check {
        Check::Url => true,
        Check::Isolated => after.is_none_or(is_delimiter),
        _ => !is_token_char(after),
    };
    if !left_ok || !right_ok || checks::is_placeholder(text) {
        return None;
    }
    let ok = match check {
        Check::Shape | Check::Url | Check::TelegramBot | Check::AfterEquals => true,
        Check::Random(prefix) => text.get(usize::from(prefix)..).is_some_and(checks::looks_random),
        Check::MixedCase => checks::mixed_case(text),
        Check::Isolated => checks::looks_random(text),
        Check::Near(word) => {
            let window = s
                .as_bytes()
                .get(m.start.saturating_sub(64)..m.start)
                .unwrap_or_default();
            window
                .windows(word.len())
                .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
        }
        Check::DiscordBot => text.split('.').next().is_some_and(checks::is_base64_user_id),
    };
    if !ok {
        return None;
    }
    let start = match check {
        Check::AfterEquals => m.start + text.find('=')? + 1,
        _ => m.start,
    };
    Some((kind, start..m.end))
}

/// Around a token that has no prefix of its own: whitespace, quotes and the
/// punctuation of assignments, arguments and markup.
fn is_delimiter(b: u8) -> bool {
    b.is_ascii_whitespace() || b"\\\"'`=:,;()<>[]{}".contains(&b)
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
