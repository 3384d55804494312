#!/usr/bin/env python3
"""Writes realistic.jsonl: hand-written snippets in the shapes secrets and
personal data take in real tool calls (config files, shell history, logs,
e-mail signatures, code). Written without tuning to the detectors; labels
say what a careful reviewer would flag. Run: python3 realistic.py > realistic.jsonl
"""
import base64, json

def b64url(d):
    return base64.urlsafe_b64encode(json.dumps(d, separators=(",", ":")).encode()).decode().rstrip("=")

jwt = b64url({"alg": "RS256", "kid": "1"}) + "." + b64url({"iss": "https://idp.example.com", "sub": "42"}) + ".c2lnbmF0dXJlLWJ5dGVz"
S = []
def add(text, kinds):
    S.append({"text": text, "kinds": sorted(set(kinds)), "note": "realistic"})

add("export AWS_ACCESS_KEY_ID=AKIAZ3MHXQ5D7EXAMPL2", ["aws_access_key_id"])
add("[default]\naws_access_key_id = AKIAJ7Q2NRF5T3VWXY4Z\naws_secret_access_key = 9drTJvcXLB89EXAMPLEKEYwJalrXUtnFEMIK7MDG", ["aws_access_key_id", "aws_secret_access_key"])
add("git remote set-url origin https://x-access-token:ghs_16C7e42F292c6912E7710c838347Ae178B4a@github.com/org/repo.git", ["github_token", "url_password"])
add('curl -H "Authorization: token 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" https://api.github.com/user', ["github_token"])
add("SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T024BE7LD/B01AB2CD3EF/sL8d9Kq2XyZ1aBcDeFgHiJkL", ["slack_webhook"])
add('stripe.api_key = "sk_live_51MxQwErTyUiOpAsDfGhJkLzXcVbNm1234567890abcdEFGH"', ["stripe_key"])
add('<script src="https://maps.googleapis.com/maps/api/js?key=AIzaSyB1x2y3z4A5B6C7D8E9F0g1h2i3j4k5l6m&callback=initMap"></script>', ["google_api_key"])
add("Best,\nMaría José\nmaria.jose@empresa.es | +34 612 345 678", ["email", "phone"])
add("Please call our support line at 1-800-555-0199", ["phone"])
add("Customer SSN on file: 318-42-7716", ["us_ssn"])
add("Card ending 4242, expires 04/27", [])
add("Charge 5500 0000 0000 0004 for $20", ["credit_card"])
add('{"level":"info","msg":"login ok","user":"bob@corp.example.com","ip":"203.0.113.7"}', ["email"])
add("Wire EUR 1,200 to IBAN FR76 3000 6000 0112 3456 7890 189 (BNP)", ["iban"])
add("jdbc:postgresql://db.prod:5432/app?user=admin&password=Xk9!mQ2#vL8p", ["generic_secret"])
add("mongodb+srv://svc:Pa55w0rd-2026@cluster0.ab1cd.mongodb.net/test", ["url_password"])
add("SSH_KEY=\"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\\nQyNTUxOQAAACDm3Yp9kTqR4nLw8vX2sJ0aHcE1fGbYtUoPzQrS5dVwAAAAJi\\n-----END OPENSSH PRIVATE KEY-----\"", ["private_key"])
add("apiVersion: v1\nkind: Secret\ndata:\n  password: cGFzc3dvcmQxMjM0NTY3OA==", ["generic_secret"])
add("The meeting ID is 845 2231 9876 and the room is 4B", [])
add("Tracking number 1Z999AA10123456784", [])
add("ISBN 978-0-596-52068-7", [])
add("Version 2.14.0-rc.1+build.5678", [])
add("lat/long 37.7749,-122.4194", [])
add("Invoice INV-2026-000123 amount 1,234.00", [])
add('openai.api_key = os.getenv("OPENAI_API_KEY")', [])
add('headers = {"Authorization": f"Bearer {token}"}', [])
add("Reach me on WhatsApp +44 7911 123456", ["phone"])
add("Fax: (212) 555-0123", ["phone"])
add('"email": "noreply@github.com"', ["email"])
add("Send to ops+alerts@example.co.uk", ["email"])
add("id_token: " + jwt, ["jwt"])
add("password: '{{ .Values.db.password }}'", [])
add("AWS account 123456789012 in us-east-1", [])
add("Phone numbers 555-0100 through 555-0199 are reserved for fiction", [])
add("Contact: john.smith(at)example.com", [])
add("SSN 078-05-1120 is the famous Woolworth wallet card", [])
add("build 20261121.4 finished in 00:12:31, 4,521 tests", [])
add("SELECT * FROM payments WHERE card_last4 = '1111' AND amount > 100.00", [])
add("transfer ref DE-2026-11-21-0007 confirmed", [])
add("Kontonummer DE44 5001 0517 5407 3249 31 bei der ING", ["iban"])
add("xoxp-2210535565-2210535567-2231438712337-8c1d4f2b5e6a7c9d0e1f2a3b4c5d6e7f", ["slack_token"])
add("GITLAB_TOKEN=glpat-9Vx3kR7qLm2Tz8Yw4Bn1", ["gitlab_token"])
add("Visa 4000 0566 5566 5556 (debit test card)", ["credit_card"])
add("mail from <alerts@status.example.io> at 2026-11-21 06:00:00 +0000", ["email"])
for s in S:
    print(json.dumps(s, ensure_ascii=False))
