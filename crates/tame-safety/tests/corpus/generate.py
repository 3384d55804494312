#!/usr/bin/env python3
"""Generates detectors.jsonl: a labelled corpus for tame-safety's detectors.

Every sample is synthesized here from the documented *formats* of each
credential or identifier (token prefixes and lengths, Luhn, mod-97, SSA
ranges), plus a few well-known documentation examples (AWS's
AKIAIOSFODNN7EXAMPLE, card-network test numbers, IBAN registry examples).
No file of any other project is copied. Deterministic (fixed seed).

Each line: {"text": str, "kinds": [expected kinds], "note": str}.
Run: python3 generate.py > detectors.jsonl
"""

import base64
import json
import random
import string

rng = random.Random(20261121)
ALNUM = string.ascii_letters + string.digits
UPPER_NUM = string.ascii_uppercase + string.digits
B64 = string.ascii_letters + string.digits + "+/"
B64URL = string.ascii_letters + string.digits + "-_"
samples = []


def add(text, kinds, note):
    samples.append({"text": text, "kinds": sorted(set(kinds)), "note": note})


def rand(chars, n):
    return "".join(rng.choice(chars) for _ in range(n))


CONTEXTS = [
    "{}",
    "here is the value: {}",
    "export VALUE={}",
    "curl -H 'X-Key: {}' https://api.internal/v1",
    "Log line 2026-11-20T10:00:00Z user=42 token {} accepted",
    "Please use {} for the deploy.",
    "config:\n  key: {}\n  region: eu-west-1",
]


def ctx(value):
    return rng.choice(CONTEXTS).format(value)


# ---------------- AWS access key ids ----------------
add("AKIAIOSFODNN7EXAMPLE", ["aws_access_key_id"], "aws documented example")
for _ in range(20):
    prefix = rng.choice(["AKIA", "AKIA", "ASIA"])
    add(ctx(prefix + rand(string.ascii_uppercase + "234567", 16)), ["aws_access_key_id"], "aws key id")
for t in [
    "AKIA" + rand(string.ascii_uppercase, 12),
    "AKIA" + rand(string.ascii_lowercase, 16),
    "XAKIA" + rand(string.ascii_uppercase, 16),
    "AKIA" + rand(string.ascii_uppercase, 20),
    "The AKIA prefix marks long-term access keys; ASIA marks temporary ones.",
    "arn:aws:iam::123456789012:user/deploy-bot",
    "AIDA" + rand(string.ascii_uppercase, 16) + " is a user unique id, not a key",
]:
    add(t, [], "aws key id hard negative")

# ---------------- AWS secret access keys ----------------
add("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ["aws_secret_access_key"], "aws documented example")
for _ in range(15):
    name = rng.choice(["aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "awsSecretKey", "aws.secret.key"])
    sep = rng.choice([" = ", "=", ": ", '": "'])
    add(name + sep + rand(B64, 40), ["aws_secret_access_key"], "aws secret key assignment")
for t in [
    "aws_secret_access_key = ${AWS_SECRET_ACCESS_KEY}",
    "aws_secret_access_key = " + "A" * 40,
    "aws_secret_access_key = " + rand(B64, 30),
    "commit " + rand("0123456789abcdef", 40) + " fixed the build",
    "sha1: " + rand("0123456789abcdef", 40),
    "set AWS_SECRET_ACCESS_KEY in your environment before running",
]:
    add(t, [], "aws secret hard negative")

# ---------------- GitHub ----------------
for p in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]:
    for _ in range(4):
        add(ctx(p + rand(ALNUM, 36)), ["github_token"], "github " + p)
for _ in range(4):
    add(ctx("github_pat_" + rand(ALNUM, 22) + "_" + rand(ALNUM, 59)), ["github_token"], "github fine-grained pat")
for t in [
    "ghp_" + rand(ALNUM, 20),
    "ghp_" + "x" * 36,
    "ghx_" + rand(ALNUM, 36),
    "github_pat_" + rand(ALNUM, 10),
    "set GITHUB_TOKEN=ghp_... in CI",
    "xghp_" + rand(ALNUM, 36),
]:
    add(t, [], "github hard negative")

# ---------------- GitLab ----------------
for _ in range(10):
    p = rng.choice(["glpat-", "glpat-", "gldt-", "glrt-"])
    add(ctx(p + rand(ALNUM + "_-", 20)), ["gitlab_token"], "gitlab token")
for t in ["glpat-" + rand(ALNUM, 8), "glpat-xxxxxxxxxxxxxxxxxxxx", "gitlab personal access tokens start with glpat-", "glpat_" + rand(ALNUM, 20)]:
    add(t, [], "gitlab hard negative")

# ---------------- Slack ----------------
for _ in range(6):
    add(ctx("xoxb-" + rand(string.digits, 12) + "-" + rand(string.digits, 13) + "-" + rand(ALNUM, 24)), ["slack_token"], "slack bot token")
for _ in range(4):
    add(ctx("xoxp-" + "-".join(rand(string.digits, 12) for _ in range(3)) + "-" + rand("0123456789abcdef", 32)), ["slack_token"], "slack user token")
for _ in range(2):
    add(ctx("xapp-1-A" + rand(UPPER_NUM, 10) + "-" + rand(string.digits, 13) + "-" + rand("0123456789abcdef", 64)), ["slack_token"], "slack app token")
for _ in range(6):
    url = "https://hooks.slack.com/services/T" + rand(UPPER_NUM, 8) + "/B" + rand(UPPER_NUM, 10) + "/" + rand(ALNUM, 24)
    add(ctx(url), ["slack_webhook"], "slack webhook")
for t in [
    "xoxb-your-token-here",
    "xoxo-hugs-and-kisses-from-grandma",
    "xoxb-123",
    "https://hooks.slack.com/",
    "https://hooks.slack.com/services/XXX/YYY/ZZZ",
    "https://api.slack.com/messaging/webhooks",
    "Slack bot tokens look like xoxb-<team>-<bot>-<secret>",
]:
    add(t, [], "slack hard negative")

# ---------------- Stripe ----------------
for p in ["sk_live_", "sk_live_", "rk_live_", "sk_test_", "rk_test_"]:
    for _ in range(3):
        add(ctx(p + rand(ALNUM, rng.choice([24, 32, 99]))), ["stripe_key"], "stripe " + p)
for _ in range(3):
    add(ctx("whsec_" + rand(ALNUM, 32)), ["stripe_key"], "stripe webhook secret")
for t in [
    "pk_live_" + rand(ALNUM, 24),
    "pk_test_" + rand(ALNUM, 24),
    "sk_live_" + rand(ALNUM, 6),
    "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
    "use your sk_live_ key only on the server",
    "ask_live_" + rand(ALNUM, 24),
]:
    add(t, [], "stripe hard negative")

# ---------------- Google API keys ----------------
for _ in range(10):
    add(ctx("AIza" + rand(ALNUM + "_-", 35)), ["google_api_key"], "google api key")
for t in ["AIza" + rand(ALNUM, 20), "AIzaSy is the usual start of a browser key", "XAIza" + rand(ALNUM, 35)]:
    add(t, [], "google hard negative")

# ---------------- Private keys ----------------
def pem_body(lines):
    return "\n".join(rand(B64, 64) for _ in range(lines)) + "\n" + rand(B64, 20) + "=="


for label in ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY"]:
    for _ in range(2):
        block = "-----BEGIN %s-----\n%s\n-----END %s-----" % (label, pem_body(rng.randint(3, 8)), label)
        add(rng.choice(["{}", "key file contents:\n{}\n", "ssh_key: |\n{}"]).format(block), ["private_key"], "pem " + label)
add("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n" + pem_body(6) + "\n-----END PGP PRIVATE KEY BLOCK-----", ["private_key"], "pgp private key")
add("-----BEGIN RSA PRIVATE KEY-----\n" + pem_body(4) + "\n(truncated)", ["private_key"], "pem without footer")
for t in [
    "-----BEGIN PUBLIC KEY-----\n" + pem_body(4) + "\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\n" + pem_body(10) + "\n-----END CERTIFICATE-----",
    "The file must start with -----BEGIN RSA PRIVATE KEY----- and nothing else.",
    "ssh-rsa " + rand(B64, 200) + " user@laptop",
]:
    add(t, [], "private key hard negative")


# ---------------- JWT ----------------
def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


for _ in range(12):
    header = {"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}
    if rng.random() < 0.3:
        header["kid"] = rand(ALNUM, 8)
    payload = {"sub": str(rng.randint(1, 10**6)), "iat": 1763700000 + rng.randint(0, 10**6), "name": rng.choice(["Jane", "Omar", "Li"])}
    token = b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + b64url(json.dumps(payload).encode()) + "." + rand(B64URL, 43)
    add(rng.choice(["{}", "Authorization: Bearer {}", "id_token={}&state=xyz", "cookie session={}; Path=/"]).format(token), ["jwt"], "jwt")
for t in [
    "eyJ" + rand(B64URL, 30) + "." + rand(B64URL, 30) + "." + rand(B64URL, 30),
    "eyJ" + rand(B64URL, 30) + "." + rand(B64URL, 30),
    "version 1.22.333 of the library",
    "a.b.c",
    "eyJhbGciOi is how a JWT header starts",
]:
    add(t, [], "jwt hard negative")

# ---------------- URL passwords ----------------
for _ in range(12):
    scheme = rng.choice(["postgres", "mysql", "https", "redis", "amqp", "mongodb+srv", "ftp"])
    user = rng.choice(["admin", "app", "svc_user", "deploy", ""])
    pw = rand(ALNUM + "!_~", rng.randint(10, 24))
    host = rng.choice(["db.internal", "10.0.3.7", "cache.prod.example.net", "mq.corp.local"])
    add(ctx("%s://%s:%s@%s:5432/app" % (scheme, user, pw, host)), ["url_password"], "url with password")
for t in [
    "https://user@example.com/path",
    "https://example.com:8443/api/v1",
    "postgres://app:${DB_PASSWORD}@db.internal/app",
    "https://user:password@host.example.net",
    "https://admin:****@db.internal",
    "git@github.com:org/repo.git",
    "ssh://git@gitlab.com/group/project.git",
    "see https://docs.example.net/auth#user:pass for the format",
]:
    add(t, [], "url password hard negative")

# ---------------- generic assignments ----------------
for _ in range(16):
    name = rng.choice(["password", "DB_PASSWORD", "api_key", "apiKey", "client_secret", "secret", "auth_token", "access_token", "X-API-KEY", "passwd"])
    sep = rng.choice(["=", ": ", " = ", '": "', "='"])
    val = rand(ALNUM + "!@#%^-_", rng.randint(12, 40))
    add(name + sep + val, ["generic_secret"], "generic assignment")
for _ in range(4):
    add("Authorization: Bearer " + rand(ALNUM, rng.randint(32, 48)), ["generic_secret"], "bearer token")
for t in ["password=P@ssw0rd!2026", "DB_PASSWORD='hunter2hunter2-Q9'", "passphrase: correcthorsebatterystaple"]:
    add(t, ["generic_secret"] if "passphrase" not in t else [], "generic assignment, human-made value")
for t in [
    "password=",
    "password: ********",
    "api_key=${API_KEY}",
    "password=changeme",
    "secret=true",
    "token_type=bearer",
    "Please enter your password: ",
    "password_reset=enabled",
    "secret=aaaaaaaaaaaa",
    "api_key: <your-api-key>",
    "password = os.environ['DB_PASSWORD']",
    "client_secret: [REDACTED:generic_secret]",
    "The password must be at least 12 characters long.",
    "Bearer realm",
    "const password = getPassword();",
    "password = self.password",
    "secret_key=os.urandom(32)",
    "password: {{ vault_password }}",
    "if (password == confirmPassword) {",
    "api_key: str = Field(default=None)",
]:
    add(t, [], "generic hard negative")

# ---------------- e-mail ----------------
FIRST = ["alice", "bob", "carol", "dmitri", "eve", "fatima", "gustavo", "hana", "ivan", "jose"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.co.uk", "startup.io", "uni.example.edu", "xn--bcher-kva.example"]
for _ in range(20):
    local = rng.choice(FIRST) + rng.choice(["", ".smith", "_99", "+invoices", "-ops"])
    add(rng.choice(["{}", "Contact: {}", "<{}>", "send to {}, thanks", "mailto:{}"]).format(local + "@" + rng.choice(DOMAINS)), ["email"], "email")
for t in [
    "icon@2x.png",
    "user@localhost",
    "follow @jane_doe on social",
    "foo@bar",
    "a@b.c",
    "name (at) example (dot) com",
    "npm install left-pad@1.3.0",
    "git reflog HEAD@{1}",
    "logo@3x.webp",
]:
    add(t, [], "email hard negative")

# ---------------- phone ----------------
PHONES = [
    "+1 415 555 2671", "+14155552671", "+44 20 7946 0958", "+49 30 901820", "+33 1 23 45 67 89",
    "+91 98765 43210", "+81 3-1234-5678", "+61 2 9876 5432", "+1 (212) 555-0147", "+55 11 91234-5678",
    "(415) 555-2671", "415-555-2671", "415.555.2671", "(212) 555-0199", "650-253-0000",
]
for p in PHONES:
    add(rng.choice(["{}", "call me at {}", "Phone: {}.", "tel {} (mobile)"]).format(p), ["phone"], "phone")
for t in [
    "2024-01-15", "192.168.1.1", "version 10.15.7", "+1", "up +20% this week", "ext. 1234",
    "123-456-7890", "555-1234", "ISBN 978-3-16-148410-0", "1.234.567,89", "12:30:45",
    "3.14159265358979", "order 20261121-0042", "+5 points", "latency p99=1234567 ns",
]:
    add(t, [], "phone hard negative")

# ---------------- credit cards ----------------
def luhn_ok(d):
    total = 0
    for i, c in enumerate(reversed(d)):
        v = int(c)
        if i % 2 == 1:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return total % 10 == 0


def luhn_complete(prefix, length):
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for c in string.digits:
        if luhn_ok(body + c):
            return body + c
    raise AssertionError


def group(d, sizes, sep):
    out, i = [], 0
    for s in sizes:
        out.append(d[i:i + s])
        i += s
    return sep.join(out)


KNOWN_TEST_CARDS = ["4111111111111111", "4242424242424242", "5555555555554444", "5105105105105100", "378282246310005", "371449635398431", "6011111111111117", "3530111333300000", "30569309025904", "2223003122003222"]
for d in KNOWN_TEST_CARDS:
    sizes = [4, 6, 5] if len(d) == 15 else ([4, 6, 4] if len(d) == 14 else [4, 4, 4, 4])
    add(rng.choice(["card {}", "{}", "pay with {} exp 12/29"]).format(group(d, sizes, rng.choice(["", " ", "-"]))), ["credit_card"], "network test card")
for _ in range(12):
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("34", 15), ("37", 15), ("6011", 16), ("2221", 16)])
    d = luhn_complete(prefix, length)
    sizes = [4, 6, 5] if length == 15 else [4, 4, 4, 4]
    add(ctx(group(d, sizes, rng.choice(["", " ", "-"]))), ["credit_card"], "generated luhn card")
for d in KNOWN_TEST_CARDS[:6]:
    bad = d[:-1] + str((int(d[-1]) + 1) % 10)
    add("card " + bad, [], "luhn-invalid card")
for t in [
    "1732170000000",
    "order id 9" + rand(string.digits, 15),
    "0000 0000 0000 0000",
    "tracking 1Z" + rand(UPPER_NUM, 16),
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14",
    "ids: 1234, 5678, 9012, 3456",
]:
    add(t, [], "card hard negative")

# ---------------- US SSN ----------------
for _ in range(15):
    area = rng.choice([rng.randint(1, 665), rng.randint(667, 899)])
    add(rng.choice(["SSN {}", "{}", "social security number: {}"]).format("%03d-%02d-%04d" % (area, rng.randint(1, 99), rng.randint(1, 9999))), ["us_ssn"], "ssn")
for t in [
    "000-12-3456", "666-12-3456", "900-12-3456", "987-65-4321", "536-00-4567", "536-45-0000",
    "078-05-1120", "123-45-6789", "123-45-67890", "2024-11-21", "ref 12-345-6789",
]:
    add(t, [], "ssn hard negative")

# ---------------- IBAN ----------------
IBAN_FORMATS = {"DE": (18, "n"), "GB": (18, "gb"), "FR": (23, "n"), "NL": (14, "nl"), "ES": (20, "n"), "IT": (23, "it"), "CH": (17, "n"), "BE": (12, "n"), "NO": (11, "n"), "PL": (24, "n")}


def iban_check(country, bban):
    rearranged = bban + country + "00"
    num = "".join(str(int(c, 36)) for c in rearranged)
    return "%02d" % (98 - int(num) % 97)


def make_bban(kind, n):
    if kind == "gb":
        return rand(string.ascii_uppercase, 4) + rand(string.digits, n - 4)
    if kind == "nl":
        return rand(string.ascii_uppercase, 4) + rand(string.digits, n - 4)
    if kind == "it":
        return rand(string.ascii_uppercase, 1) + rand(string.digits, n - 1)
    return rand(string.digits, n)


for known in ["DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606", "NL91ABNA0417164300"]:
    add("IBAN " + known, ["iban"], "registry example iban")
for _ in range(16):
    c = rng.choice(sorted(IBAN_FORMATS))
    n, kind = IBAN_FORMATS[c]
    bban = make_bban(kind, n)
    iban = c + iban_check(c, bban) + bban
    if rng.random() < 0.5:
        iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    add(rng.choice(["{}", "IBAN: {}", "wire to {} by Friday"]).format(iban), ["iban"], "generated iban")
for t in [
    "DE89370400440532013001",
    "DE88 3704 0044 0532 0130 00",
    "XX12345678901234567890",
    "DE8937040044053201",
    "part no. AB12CDEF34567890",
    "GB82WEST1234569876543",
]:
    add(t, [], "iban hard negative")

# ---------------- plain text, nothing to find ----------------
for t in [
    "The quick brown fox jumps over the lazy dog.",
    "SELECT id, name FROM users WHERE created_at > '2026-01-01' LIMIT 100;",
    "fn main() { println!(\"hello\"); }",
    "Meeting moved to 14:30 in room 4B; bring the Q3 numbers (up 12.5%).",
    "Invoice #20261121 total $1,234.56 due 2026-12-01",
    "uuid 3f2b8c1e-9d4a-4e2b-8f1a-2c3d4e5f6a7b",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "docker pull ghcr.io/org/app:v1.2.3",
    "https://example.com/search?q=rust+regex&page=2",
    "coordinates 52.5200, 13.4050",
    "Temperature dropped to -12.5C at 06:00",
    "Base64 image data: iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
]:
    add(t, [], "plain text")

# ---------------- mixed ----------------
add("Contact carol@example.com or +44 20 7946 0958; card 4111 1111 1111 1111", ["email", "phone", "credit_card"], "mixed pii")
add("deploy with AKIAIOSFODNN7EXAMPLE and ghp_" + rand(ALNUM, 36), ["aws_access_key_id", "github_token"], "mixed secrets")
add("api_key=sk_live_" + rand(ALNUM, 24), ["stripe_key"], "specific beats generic")
add("DATABASE_URL=postgres://app:" + rand(ALNUM, 16) + "@db.internal/app owner=dmitri@example.org", ["url_password", "email"], "url and email")

for s in samples:
    print(json.dumps(s, ensure_ascii=False))
