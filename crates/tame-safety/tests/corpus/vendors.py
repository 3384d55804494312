#!/usr/bin/env python3
"""Writes vendors.jsonl: labelled samples of the vendor credentials agents
hold (LLM providers, package registries, cloud and SaaS tokens) and their
hard negatives (look-alike prose, identifiers, hashes, UUIDs, base64 blobs).

Every key is synthesized here from the vendor's documented *format* (prefix,
charset, length, fixed markers such as OpenAI's `T3BlbkFJ`), as listed by
gitleaks' rule set (MIT) and the vendors' docs: no real key, no copied text.
Deterministic (fixed seed). Each line: {"text", "kinds", "note"}.
Run: python3 vendors.py > vendors.jsonl
"""

import base64
import json
import random
import string

rng = random.Random(20261122)
LOWER = string.ascii_lowercase
LETTERS = string.ascii_letters
ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l".upper()
samples = []


def add(text, kinds, note):
    samples.append({"text": text, "kinds": sorted(set(kinds)), "note": note})


def rand(chars, n):
    return "".join(rng.choice(chars) for _ in range(n))


def b64_bytes(n):
    return base64.b64encode(bytes(rng.randrange(256) for _ in range(n))).decode()


# Where keys turn up in agents' tool calls: bare, in prose, in env files,
# JSON, headers, command lines, YAML.
CONTEXTS = [
    "{key}",
    "here is the value: {key}",
    "Please use {key} for the deploy.",
    "export {env}={key}",
    '{{"{env_lower}": "{key}"}}',
    "curl -H 'Authorization: Bearer {key}' https://api.internal.example/v1/models",
    "config:\n  token: {key}\n  region: eu-west-1",
    "Log 2026-11-20T10:00:00Z worker=7 using credential {key} (rotating soon)",
    "{env}=\"{key}\"",
    "client = Client(api_key='{key}')",
]


def positives(kind, env, make, n, note):
    for _ in range(n):
        key = make()
        text = rng.choice(CONTEXTS).format(key=key, env=env, env_lower=env.lower())
        add(text, [kind], note)


# ---------------- OpenAI ----------------
def openai_project(prefix, side):
    return prefix + rand(B64URL, side) + "T3BlbkFJ" + rand(B64URL, side)


positives("openai_api_key", "OPENAI_API_KEY", lambda: openai_project("sk-proj-", 74), 8, "openai project key")
positives("openai_api_key", "OPENAI_API_KEY", lambda: openai_project("sk-svcacct-", 74), 4, "openai service account key")
positives("openai_api_key", "OPENAI_ADMIN_KEY", lambda: openai_project("sk-admin-", 58), 4, "openai admin key")
positives("openai_api_key", "OPENAI_API_KEY", lambda: openai_project("sk-None-", 74), 2, "openai user key")
positives("openai_api_key", "OPENAI_API_KEY", lambda: "sk-" + rand(ALNUM, 20) + "T3BlbkFJ" + rand(ALNUM, 20), 6, "openai legacy key")
positives("openai_api_key", "DEEPSEEK_API_KEY", lambda: "sk-" + rand(HEX, 32), 4, "openai-compatible sk- key")
for t in [
    "Use the sk- prefix to tell secret keys from publishable ones.",
    "Update the task-list and the risk-assessment before Friday.",
    "pip install scikit-learn && python -m sk-learn-demo",
    "disk-usage-report-2026-11-q3-final-summary-for-ops.pdf",
    "sk-" + rand(LOWER, 34),
    "sk-" + rand(string.digits, 36),
    "sk-" + "0" * 48,
    "OPENAI_API_KEY=sk-proj-your-api-key-here",
    "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "OPENAI_API_KEY=sk-...",
    "openai.api_key = os.environ['OPENAI_API_KEY']",
    "ask-" + rand(ALNUM, 40),
    "sk-" + rand(ALNUM, 20),
    "the desk-" + rand(LOWER, 40) + " layout",
]:
    add(t, [], "openai hard negative")

# ---------------- Anthropic ----------------
positives("anthropic_api_key", "ANTHROPIC_API_KEY", lambda: "sk-ant-api03-" + rand(B64URL, 93) + "AA", 8, "anthropic api key")
positives("anthropic_api_key", "ANTHROPIC_ADMIN_KEY", lambda: "sk-ant-admin01-" + rand(B64URL, 93) + "AA", 3, "anthropic admin key")
positives("anthropic_api_key", "CLAUDE_CODE_OAUTH_TOKEN", lambda: "sk-ant-oat01-" + rand(B64URL, 95), 3, "anthropic oauth token")
for t in [
    "sk-ant-api03-abc",
    "ANTHROPIC_API_KEY=sk-ant-api03-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "Anthropic keys start with sk-ant- and are shown once.",
    "sk-ant-" + rand(ALNUM, 60),
]:
    add(t, [], "anthropic hard negative")

# ---------------- OpenRouter, Groq, xAI, Perplexity, Replicate, LangSmith ----------------
positives("openrouter_api_key", "OPENROUTER_API_KEY", lambda: "sk-or-v1-" + rand(HEX, 64), 4, "openrouter key")
positives("groq_api_key", "GROQ_API_KEY", lambda: "gsk_" + rand(ALNUM, 52), 4, "groq key")
positives("xai_api_key", "XAI_API_KEY", lambda: "xai-" + rand(ALNUM, 80), 3, "xai key")
positives("perplexity_api_key", "PERPLEXITY_API_KEY", lambda: "pplx-" + rand(ALNUM, 48), 3, "perplexity key")
positives("replicate_api_token", "REPLICATE_API_TOKEN", lambda: "r8_" + rand(ALNUM, 37), 3, "replicate token")
positives("langsmith_api_key", "LANGSMITH_API_KEY", lambda: "lsv2_pt_" + rand(HEX, 32) + "_" + rand(HEX, 10), 3, "langsmith key")
for t in [
    "sk-or-v1-" + rand(HEX, 20),
    "GROQ_API_KEY=gsk_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "the xai-sdk and xai-grok-client packages",
    "pplx-api docs, model pplx-70b-online",
    "r8_ prefixed tokens come from replicate.com/account",
    "ls__" + rand(HEX, 32),
]:
    add(t, [], "llm provider hard negative")

# ---------------- Hugging Face ----------------
positives("huggingface_token", "HF_TOKEN", lambda: "hf_" + rand(LETTERS, 34), 8, "hugging face token")
add("huggingface-cli login --token hf_" + rand(LETTERS, 34), ["huggingface_token"], "hugging face cli login")
add("api_org_" + rand(LETTERS, 34), ["huggingface_token"], "hugging face org token")
for t in [
    "hf_model_dir = os.path.join(cache, 'models')",
    "from huggingface_hub import hf_hub_download; hf_hub_download(repo_id='gpt2')",
    "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",
    "self.hf_requiredCharacteristicTypesForDisplayMetadata = []",
    "HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "You should see a token hf_xxxxx (old tokens are api_XXXXXXXX)",
    "rhf_SponsoredProductsRemoteRHFSearchEXPSubsK2ClickPagination",
    "hf_" + rand(LETTERS, 20),
]:
    add(t, [], "hugging face hard negative")

# ---------------- Google ----------------
positives("google_api_key", "GEMINI_API_KEY", lambda: "AIza" + rand(ALNUM + "_-", 35), 4, "google api key")
positives("google_oauth", "GOOGLE_CLIENT_SECRET", lambda: "GOCSPX-" + rand(B64URL, 28), 3, "google oauth client secret")
positives("google_oauth", "GOOGLE_ACCESS_TOKEN", lambda: "ya29." + rand(B64URL, 150), 3, "google oauth access token")
for t in [
    "AIzaSyShort",
    "AIza" + rand(ALNUM, 30),
    "browser keys usually start with AIzaSy",
    "ya29.token",
    "GOCSPX-" + rand(ALNUM, 10),
]:
    add(t, [], "google hard negative")
sa_key = "-----BEGIN PRIVATE KEY-----\\n" + "\\n".join(rand(B64, 64) for _ in range(8)) + "\\n" + rand(B64, 40) + "=\\n-----END PRIVATE KEY-----\\n"
add(
    '{"type": "service_account", "project_id": "demo-491", "private_key_id": "' + rand(HEX, 40) + '", "private_key": "' + sa_key
    + '", "client_email": "runner@demo-491.iam.gserviceaccount.com"}',
    ["private_key", "email"],
    "gcp service account file",
)

# ---------------- Slack, Discord, Telegram ----------------
positives("slack_token", "SLACK_CONFIG_TOKEN", lambda: "xoxe.xoxp-1-" + rand(ALNUM, 163), 2, "slack configuration token")
positives("slack_token", "SLACK_REFRESH_TOKEN", lambda: "xoxe-1-" + rand(ALNUM, 146), 2, "slack configuration refresh token")


def discord_token():
    user_id = str(rng.randint(10**17, 10**19 - 1)).encode()
    return base64.b64encode(user_id).decode().rstrip("=") + "." + rand(B64URL, 6) + "." + rand(B64URL, 38)


positives("discord_token", "DISCORD_BOT_TOKEN", discord_token, 6, "discord bot token")
for _ in range(3):
    add(
        "https://discord.com/api/webhooks/" + str(rng.randint(10**17, 10**19 - 1)) + "/" + rand(B64URL, 68),
        ["discord_webhook"],
        "discord webhook",
    )
positives("telegram_bot_token", "TELEGRAM_BOT_TOKEN", lambda: str(rng.randint(10**8, 10**10 - 1)) + ":AA" + rand(B64URL, 33), 6, "telegram bot token")
add("curl https://api.telegram.org/bot" + str(rng.randint(10**8, 10**9)) + ":AA" + rand(B64URL, 33) + "/getMe", ["telegram_bot_token"], "telegram bot api url")
for t in [
    "xoxe-1-xxx",
    "xoxe.xoxp-1-RANDOMSTRINGHERE",
    "Nabcdefghijklmnopqrstuvw.abcdef.ghijklmnopqrstuvwxyz0123456789AB",
    "MyApplication.Services.Authentication.Handler",
    "https://discord.com/api/webhooks/ID/TOKEN",
    "meeting at 12:30:45, ticket 1234567890:closed",
    '<xsd:element name="AgencyIdentificationCode" type="clm12345678:AgencyIdentificationCodeContentType"/>',
    "12345678:AA" + rand(B64URL, 10),
]:
    add(t, [], "chat hard negative")

# ---------------- package registries, CI ----------------
positives("npm_token", "NPM_TOKEN", lambda: "npm_" + rand(ALNUM, 36), 4, "npm token")
positives("pypi_token", "PYPI_TOKEN", lambda: "pypi-AgEIcHlwaS5vcmc" + rand(B64URL, rng.randint(60, 160)), 4, "pypi token")
positives("docker_hub_token", "DOCKER_PASSWORD", lambda: "dckr_pat_" + rand(B64URL, 27), 3, "docker hub token")
positives("gitlab_token", "CI_JOB_TOKEN", lambda: "glcbt-" + rand(ALNUM, 5) + "_" + rand(ALNUM, 20), 2, "gitlab ci job token")
positives("gitlab_token", "GITLAB_TOKEN", lambda: "glpat-" + rand(B64URL, 27) + "." + "01" + rand(LOWER + string.digits, 7), 2, "gitlab routable pat")
positives("gitlab_token", "GITLAB_OAUTH_SECRET", lambda: "gloas-" + rand(ALNUM, 64), 2, "gitlab oauth app secret")
positives("gitlab_token", "RUNNER_TOKEN", lambda: "GR1348941" + rand(ALNUM, 20), 2, "gitlab runner registration token")
for t in [
    "npm_config_registry=https://registry.npmjs.org/",
    "echo $npm_package_version",
    "npm_" + rand(LOWER, 12),
    "pypi-AgEIcHlwaS5vcmc",
    "twine upload -u __token__ -p pypi-... dist/*",
    "DOCKER_TOKEN=dckr_pat_xxxxx",
    "glpat-xxxxxxxx-xxxxxxxxxxxxxxxxxx.xxxxxxxxx",
    "GR1348941XXXXXXXXXXXXXXXXXXXX",
]:
    add(t, [], "registry hard negative")

# ---------------- messaging and e-commerce SaaS ----------------
positives("twilio_api_key", "TWILIO_API_KEY", lambda: "SK" + rand(HEX, 32), 4, "twilio api key")
positives("sendgrid_api_key", "SENDGRID_API_KEY", lambda: "SG." + rand(B64URL, 22) + "." + rand(B64URL, 43), 4, "sendgrid key")
for _ in range(3):
    context = rng.choice(
        [
            "MAILGUN_API_KEY=key-{}",
            "mailgun:\n  api_key: key-{}",
            "requests.post('https://api.mailgun.net/v3/mg.example.org/messages', auth=('api', 'key-{}'))",
        ]
    )
    add(context.format(rand(HEX, 32)), ["mailgun_api_key"], "mailgun key")
positives("shopify_token", "SHOPIFY_ACCESS_TOKEN", lambda: rng.choice(["shpat_", "shpca_", "shppa_", "shpss_"]) + rand(HEX, 32), 4, "shopify token")
positives("postman_api_key", "POSTMAN_API_KEY", lambda: "PMAK-" + rand(HEX, 24) + "-" + rand(HEX, 34), 3, "postman key")
for t in [
    "cache key-" + rand(HEX, 32) + " evicted after 300 s",
    "SKIPPED 12 tests, SK1234 flaky",
    "SK" + "0" * 32,
    "MSG." + rand(B64URL, 22) + "." + rand(B64URL, 43),
    "SG.example",
    "shpat_" + rand(HEX, 10),
    "PMAK-" + rand(HEX, 8),
]:
    add(t, [], "saas hard negative")

# ---------------- cloud ----------------
positives("digitalocean_token", "DIGITALOCEAN_TOKEN", lambda: rng.choice(["dop_v1_", "doo_v1_", "dor_v1_"]) + rand(HEX, 64), 4, "digitalocean token")
positives("databricks_token", "DATABRICKS_TOKEN", lambda: "dapi" + rand(HEX, 32), 4, "databricks token")
for _ in range(3):
    add(
        "DefaultEndpointsProtocol=https;AccountName=acme" + rand(LOWER, 5) + ";AccountKey=" + b64_bytes(64) + ";EndpointSuffix=core.windows.net",
        ["azure_storage_key"],
        "azure storage connection string",
    )
for _ in range(2):
    add(
        "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=" + b64_bytes(32),
        ["azure_storage_key"],
        "azure service bus connection string",
    )
for _ in range(4):
    secret = rand(ALNUM + "_~.", 3) + str(rng.randint(0, 9)) + "Q~" + rand(ALNUM + "_~.-", 34)
    add(rng.choice(["client_secret={}", "AZURE_CLIENT_SECRET=\"{}\"", "-ClientSecret '{}'", "{}"]).format(secret), ["azure_client_secret"], "azure ad client secret")
positives("vault_token", "VAULT_TOKEN", lambda: "hvs." + rand(B64URL, 95), 3, "vault service token")
positives("tailscale_key", "TS_AUTHKEY", lambda: "tskey-auth-k" + rand(ALNUM, 10) + "CNTRL-" + rand(ALNUM, 30), 3, "tailscale auth key")
positives("pulumi_token", "PULUMI_ACCESS_TOKEN", lambda: "pul-" + rand(HEX, 40), 2, "pulumi token")
positives("heroku_api_key", "HEROKU_API_KEY", lambda: "HRKU-AA" + rand(B64URL, 58), 2, "heroku key")
for t in [
    "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=YOUR_KEY_HERE;EndpointSuffix=core.windows.net",
    "AccountKey=${storageAccount.listKeys().keys[0].value}",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Donec dapibus, nisl vel dapibus pretium.",
    "dapi" + rand(HEX, 12),
    "https://p3.example-cdn.net/tos-cn-i/6a9e704af49b4380bb686f0c96d33b81~tplv-k3u1fbpfcp-watermark.image",
    "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~",
    "CloudFront-Signature: Ixn4bF1LLrLcB8XG-t5bZbIB0vfwSF2s4gkef~PcNBdx73MVvZD3v8DZ5Gzcq",
    "hvs.xxxxxxxxxxxxxxxx",
    "tskey-auth-XXXXXX",
    "dop_v1_" + rand(HEX, 20),
]:
    add(t, [], "cloud hard negative")

# ---------------- developer SaaS ----------------
positives("doppler_token", "DOPPLER_TOKEN", lambda: rng.choice(["dp.pt.", "dp.st.prd.", "dp.sa."]) + rand(ALNUM, 43), 4, "doppler token")
positives("linear_api_key", "LINEAR_API_KEY", lambda: "lin_api_" + rand(ALNUM, 40), 3, "linear key")
positives("grafana_token", "GRAFANA_TOKEN", lambda: "glsa_" + rand(ALNUM, 32) + "_" + rand(HEX, 8), 2, "grafana service account token")
positives("grafana_token", "GRAFANA_CLOUD_TOKEN", lambda: "glc_" + b64_bytes(rng.randint(60, 120)), 2, "grafana cloud token")
positives("sentry_token", "SENTRY_AUTH_TOKEN", lambda: "sntryu_" + rand(HEX, 64), 3, "sentry user token")
positives("notion_token", "NOTION_TOKEN", lambda: "ntn_" + rand(string.digits, 11) + rand(ALNUM, 35), 3, "notion token")
positives("atlassian_api_token", "JIRA_API_TOKEN", lambda: "ATATT3" + rand(ALNUM + "_-", 178) + "=" + rand(HEX.upper(), 7), 2, "atlassian token")
positives("onepassword_token", "OP_SERVICE_ACCOUNT_TOKEN", lambda: "ops_eyJ" + b64_bytes(rng.randint(240, 300)).rstrip("="), 2, "1password service account token")
positives("age_secret_key", "SOPS_AGE_KEY", lambda: "AGE-SECRET-KEY-1" + rand(BECH32, 58), 2, "age key")
for t in [
    "dp.pt.short",
    "lin_api_" + rand(LOWER, 10),
    "static void GLC_CreateLightmapTextureArray(void);",
    "glc_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "sntryu_your_token_here",
    "ntn_12345678901",
    "ops_eyJzaWduSW5BZGRyZXNzIjoiaHR0cHM6...",
    "AGE-SECRET-KEY-1" + rand(LOWER, 58),
    "export OP_SERVICE_ACCOUNT_TOKEN=<token>",
]:
    add(t, [], "developer saas hard negative")

# ---------------- look-alikes with no credential at all ----------------
for t in [
    "request id 3f2b8c1e-9d4a-4e2b-8f1a-2c3d4e5f6a7b",
    "sha256:" + rand(HEX, 64),
    "md5 " + rand(HEX, 32) + "  dist/app.tar.gz",
    "commit " + rand(HEX, 40) + " fixes the flaky test",
    "blob: " + b64_bytes(300),
    "data:image/png;base64," + b64_bytes(120),
    "/api/v1/sk-" + rand(LOWER, 8) + "/items?page=2",
    "k8s secret name: sk-" + rand(LOWER, 6) + "-" + rand(LOWER, 6),
    "Set OPENAI_API_KEY, ANTHROPIC_API_KEY and HF_TOKEN in your environment before running the agent.",
    "The key is in 1Password under 'prod / openai'; ask #platform for access.",
]:
    add(t, [], "look-alike")

# ---------------- several in one call ----------------
k1 = openai_project("sk-proj-", 74)
k2 = "sk-ant-api03-" + rand(B64URL, 93) + "AA"
k3 = "hf_" + rand(LETTERS, 34)
add("OPENAI_API_KEY=" + k1 + "\nANTHROPIC_API_KEY=" + k2 + "\nHF_TOKEN=" + k3 + "\n", ["openai_api_key", "anthropic_api_key", "huggingface_token"], ".env with three llm keys")
add("git clone https://oauth2:glpat-" + rand(ALNUM, 20) + "@gitlab.example.com/team/repo.git", ["gitlab_token", "url_password"], "token as url password")

for s in samples:
    print(json.dumps(s, ensure_ascii=False))
