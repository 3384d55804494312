#!/usr/bin/env python3
"""Writes heldout.jsonl: snippets written after the detectors were tuned and
never used to tune them (a held-out check). Run: python3 heldout.py > heldout.jsonl
"""
import json
S = []
def add(text, kinds):
    S.append({"text": text, "kinds": sorted(set(kinds)), "note": "held-out"})

add("Hi team, the new contractor is reachable at priya.natarajan@contractor-mail.net or +91-22-4012-3456.", ["email", "phone"])
add("terraform.tfvars:\naccess_key = \"AKIA4XJ7QW2ZP3LMN5RT\"\nsecret_key = \"kP9vXq2Lm7Rt4Wz8Yb3Nc6Hd1Fg5Js0Ae2Uo7Ii\"", ["aws_access_key_id", "generic_secret"])
add("HEROKU_API_KEY=3f8a9b2c-7d4e-4f1a-9b6c-2e5d8a7f0c1b", ["generic_secret"])
add("Remember: the office wifi password is on the whiteboard.", [])
add("Refund issued to card 3782 822463 10005 (Amex) on 2026-11-02", ["credit_card"])
add("please update billing: 6011 0009 9013 9424", ["credit_card"])
add("order total 1234 5678 9012 3456 units", [])
add("Patient DOB 1984-07-12, MRN 00482913, SSN 521-44-9087", ["us_ssn"])
add("Beneficiary: ACME GmbH, IBAN AT61 1904 3002 3457 3201, BIC BKAUATWW", ["iban"])
add("NL02ABNA0123456789 is the wrong format for this form", ["iban"])
add("ssh -i ~/.ssh/id_ed25519 deploy@10.20.30.40", [])
add("redis-cli -u redis://default:7hG2kPq9XmV4@cache.internal:6379 PING", ["url_password"])
add("https://grafana.example.com/d/abc123/overview?orgId=1&from=now-6h", [])
add("token=eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYWRtaW4ifQ.dGVzdC1zaWduYXR1cmUtdmFsdWU", ["jwt"])
add("The JWT spec is RFC 7519; tokens look like xxxxx.yyyyy.zzzzz", [])
add("Slack: xoxb-4821093752-5012938475612-qW8eR4tY6uI2oP0aS9dF3gH7", ["slack_token"])
add("gho_abcdefghijklmnopqrstuvwxyz0123456789 was revoked", ["github_token"])
add("ping me on +1 646 555 0143 or mobile 646-555-0178", ["phone"])
add("Temperature sensor reading 415-555 units", [])
add("Config: {\"apiKey\": \"AIzaSyC4mX9fT2qW8rL5vN1bK7hJ3dG6sE0aPzY\", \"projectId\": \"demo-123\"}", ["google_api_key"])
add("rk_live_51Ho2x3Y4z5A6b7C8d9E0fGhIjKlMn is a restricted key", ["stripe_key"])
add("client_secret: a9F3kL0pQ7wE2rT5yU8iO1", ["generic_secret"])
add("Dear customer, your account 12345678 has been credited with EUR 25.00", [])
add("Our VAT number is DE123456789", [])
add("call center: 0800 123 4567 (free from UK landlines)", ["phone"])
for s in S:
    print(json.dumps(s, ensure_ascii=False))
