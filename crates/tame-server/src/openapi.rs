//! The OpenAPI 3.1 document, generated from the route table the router is
//! built from, so the two cannot drift apart.

use serde_json::{Map, Value, json};

use crate::auth::Role;

/// One documented operation.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub role: Role,
    pub summary: &'static str,
}

const fn r(method: &'static str, path: &'static str, role: Role, summary: &'static str) -> RouteDoc {
    RouteDoc {
        method,
        path,
        role,
        summary,
    }
}

/// Every route of the server, in router order (one entry per method).
pub const ROUTES: &[RouteDoc] = &[
    r(
        "post",
        "/api/v1/enforce",
        Role::Agent,
        "Decide a tool call (allow, deny or approve) and log it",
    ),
    r(
        "post",
        "/api/v1/enforce/{session_id}/result",
        Role::Agent,
        "Record a tool's result for a logged call (query: log_id); answers status, log_id, safe_response and stripped_fields (the `result` member, or the body, filtered by the tool's contract) and the session labels the result added",
    ),
    r(
        "post",
        "/api/v1/tools/run",
        Role::Agent,
        "Run a tool registered in the server's tools file (tool protocol v1): decided like enforce, run only on allow, its result recorded; answers the run report (200 whatever the decision; 404 for an unknown tool or without a tools file)",
    ),
    r(
        "get",
        "/api/v1/sessions",
        Role::Admin,
        "List sessions (query: page, page_size, agent_id, user_id)",
    ),
    r(
        "get",
        "/api/v1/sessions/{session_id}",
        Role::Admin,
        "A session's log entries",
    ),
    r(
        "get",
        "/api/v1/sessions/{session_id}/summary",
        Role::Admin,
        "A session's summary",
    ),
    r(
        "post",
        "/api/v1/sessions/{session_id}/inputs",
        Role::Input,
        "Record what the user asked in a session (body: text), for `from_input` and `session.inputs`; needs an input (or admin) key, which an agent key is not; answers 201 with recorded, session_id and input_id",
    ),
    r(
        "get",
        "/api/v1/policy/current",
        Role::Agent,
        "The running policy: version, hash, rules",
    ),
    r(
        "post",
        "/api/v1/policy/validate",
        Role::Agent,
        "Check a policy text without loading it",
    ),
    r(
        "post",
        "/api/v1/policy/reload",
        Role::Admin,
        "Reload the policy from its file, or from policy_content",
    ),
    r(
        "get",
        "/api/v1/policy/test",
        Role::Agent,
        "Dry-run a call (query: tool_name, tool_args as JSON, session_id, agent_id, user_id, metadata)",
    ),
    r(
        "post",
        "/api/v1/policy/test",
        Role::Agent,
        "Dry-run a call given as an enforce body",
    ),
    r(
        "get",
        "/api/v1/policy/versions",
        Role::Admin,
        "Every loaded policy version with its hash",
    ),
    r(
        "get",
        "/api/v1/approvals",
        Role::Admin,
        "List approvals (query: state = pending|approved|rejected|expired|all)",
    ),
    r("get", "/api/v1/approvals/{approval_id}", Role::Agent, "One approval"),
    r(
        "post",
        "/api/v1/approvals/{approval_id}/approve",
        Role::Admin,
        "Approve a pending call (body: reason, by)",
    ),
    r(
        "post",
        "/api/v1/approvals/{approval_id}/reject",
        Role::Admin,
        "Reject a pending call (body: reason, by)",
    ),
    r(
        "get",
        "/api/v1/approvals/{approval_id}/wait",
        Role::Agent,
        "Long poll until the approval is decided (query: timeout seconds, at most 50)",
    ),
    r(
        "get",
        "/api/v1/audit/verify",
        Role::Admin,
        "Check the hash chain of the audit log",
    ),
    r(
        "get",
        "/api/v1/audit/export",
        Role::Admin,
        "The audit log as JSON lines",
    ),
    r("get", "/health", Role::Public, "Liveness"),
    r(
        "get",
        "/ready",
        Role::Public,
        "Readiness: 200 when the store answers a read and a policy is loaded, else 503; the body's `checks` say each check's result and `failed` names the failed ones",
    ),
    r("get", "/metrics", Role::Public, "Prometheus metrics"),
    r("get", "/openapi.json", Role::Public, "This document"),
];

fn request_body(path: &str, method: &str) -> Option<Value> {
    let schema = match (method, path) {
        ("post", "/api/v1/enforce") | ("post", "/api/v1/policy/test") => {
            json!({"$ref": "#/components/schemas/EnforceRequest"})
        }
        ("post", "/api/v1/enforce/{session_id}/result") => {
            json!({"type": "object", "description": "The tool's result: status, duration_ms, error_message are read; other keys are kept; `result` (else the whole body) is the tool's response filtered by its contract"})
        }
        ("post", "/api/v1/sessions/{session_id}/inputs") => {
            json!({"type": "object", "required": ["text"], "additionalProperties": false, "properties": {"text": {"type": "string", "minLength": 1, "maxLength": tame_enforce::MAX_INPUT_TEXT, "description": "The user's words, as typed (at most 256 KiB)"}}})
        }
        ("post", "/api/v1/tools/run") => {
            json!({"type": "object", "required": ["tool_name"], "properties": {"tool_name": {"type": "string"}, "payload": {"type": "object", "description": "The tool's payload (`tool_args` is accepted too)"}, "session_id": {"type": "string"}, "agent_id": {"type": "string"}, "user_id": {"type": "string"}, "metadata": {"type": "object"}, "trace_id": {"type": "string"}}})
        }
        ("post", "/api/v1/policy/validate") => {
            json!({"type": "object", "required": ["policy_content"], "properties": {"policy_content": {"type": "string"}, "description": {"type": "string"}}})
        }
        ("post", "/api/v1/policy/reload") => {
            json!({"type": "object", "properties": {"policy_content": {"type": "string"}}})
        }
        ("post", p) if p.ends_with("/approve") || p.ends_with("/reject") => {
            json!({"type": "object", "properties": {"reason": {"type": "string"}, "by": {"type": "string"}}})
        }
        _ => return None,
    };
    Some(
        json!({"required": method == "post" && !path.ends_with("/reload") && !path.ends_with("/approve") && !path.ends_with("/reject"), "content": {"application/json": {"schema": schema}}}),
    )
}

fn parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

/// The 429 of every route that needs a key: its client made too many
/// failed authentications (see the `ratelimit` module); the answer comes
/// whatever key is sent, until the client's budget refills.
fn too_many_failed_authentications() -> Value {
    json!({
        "description": "Too many failed authentications from this client address: every key is refused until `Retry-After` seconds have passed",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before trying again (at least 1)",
                "required": true,
                "schema": {"type": "integer", "minimum": 1},
            },
        },
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TooManyFailedAuthentications"}}},
    })
}

/// What the edge (`edge.rs`, `tame_edge`) answers before `route` runs:
/// 421 for a Host that is not the server's, 403 for a cross-site Origin
/// (or a key without the route's role), 415 for a body of a POST route
/// that is not declared JSON.
fn edge_refusals(route: &RouteDoc, responses: &mut Map<String, Value>) {
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
    responses.insert(
        "421".into(),
        json!({
            "description": "Misdirected request: the `Host` (or `X-Forwarded-Host`) names a host this server does not answer to (loopback, `localhost`, its listen address and `allowed_hosts` only), as a DNS-rebinding page's request does",
            "content": error,
        }),
    );
    let forbidden = if route.role == Role::Public {
        "Cross-site request: the `Origin` is not this server's own"
    } else {
        "Cross-site request (the `Origin` is not this server's own), or a key without this route's role"
    };
    responses.insert("403".into(), json!({"description": forbidden, "content": error}));
    if route.method != "get" {
        responses.insert(
            "415".into(),
            json!({
                "description": "Unsupported media type: a body not declared `Content-Type: application/json` (a POST without a body and without a `Content-Type` passes)",
                "content": error,
            }),
        );
    }
}

/// The OpenAPI document of [`ROUTES`].
pub fn openapi_document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let (code, ok) = match route.path {
            "/api/v1/enforce" => (
                "200",
                json!({"description": "The decision", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EnforceResponse"}}}}),
            ),
            "/api/v1/sessions/{session_id}/inputs" => (
                "201",
                json!({"description": "The input is recorded", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InputRecorded"}}}}),
            ),
            "/ready" => (
                "200",
                json!({"description": "Ready: every check passed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}}),
            ),
            _ => ("200", json!({"description": "OK"})),
        };
        let mut op = Map::new();
        op.insert("summary".into(), json!(route.summary));
        op.insert("x-tame-role".into(), json!(route.role.as_str()));
        op.insert(
            "responses".into(),
            json!({
                "4XX": {"description": "Client error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            }),
        );
        if let Some(Value::Object(responses)) = op.get_mut("responses") {
            responses.insert(code.into(), ok);
            if route.path == "/ready" {
                responses.insert(
                    "503".into(),
                    json!({"description": "Not ready: `failed` names the checks that failed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}}),
                );
            }
            edge_refusals(route, responses);
            if route.role != Role::Public {
                responses.insert("429".into(), too_many_failed_authentications());
            }
        }
        if route.role != Role::Public {
            op.insert("security".into(), json!([{"bearer": []}, {"apiKey": []}]));
        }
        let params = parameters(route.path);
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(body) = request_body(route.path, route.method) {
            op.insert("requestBody".into(), body);
        }
        if let Value::Object(ops) = paths.entry(route.path.to_string()).or_insert_with(|| json!({})) {
            ops.insert(route.method.to_string(), Value::Object(op));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Tame", "version": env!("CARGO_PKG_VERSION"), "description": "Runtime guard between AI agents and their tools"},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}},
                "TooManyFailedAuthentications": {
                    "type": "object",
                    "required": ["detail", "retry_after"],
                    "properties": {
                        "detail": {"type": "string"},
                        "retry_after": {"type": "integer", "minimum": 1, "description": "The `Retry-After` header's seconds"},
                    },
                },
                "EnforceRequest": {
                    "type": "object",
                    "required": ["tool_name"],
                    "properties": {
                        "tool_name": {"type": "string"},
                        "tool_args": {"type": "object"},
                        "session_id": {"type": "string"},
                        "agent_id": {"type": "string"},
                        "user_id": {"type": "string"},
                        "metadata": {"type": "object"},
                        "approval_id": {"type": "string", "description": "Release a call approved earlier"},
                    },
                },
                "Readiness": {
                    "type": "object",
                    "required": ["status", "failed", "checks"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ready", "not ready"]},
                        "failed": {"type": "array", "items": {"type": "string", "enum": ["store", "policy"]}},
                        "checks": {
                            "type": "object",
                            "required": ["store", "policy"],
                            "properties": {
                                "store": {"$ref": "#/components/schemas/ReadinessCheck"},
                                "policy": {"$ref": "#/components/schemas/ReadinessCheck"},
                            },
                        },
                    },
                },
                "ReadinessCheck": {
                    "type": "object",
                    "required": ["ok"],
                    "properties": {
                        "ok": {"type": "boolean"},
                        "error": {"type": "string", "description": "Why the check failed (the cause is in the server's log)"},
                    },
                    "additionalProperties": true,
                },
                "InputRecorded": {
                    "type": "object",
                    "required": ["recorded", "session_id", "input_id"],
                    "properties": {
                        "recorded": {"const": "input"},
                        "session_id": {"type": "string"},
                        "input_id": {"type": "string"},
                    },
                },
                "EnforceResponse": {
                    "type": "object",
                    "required": ["session_id", "decision", "rule_name", "reason", "policy_version", "log_id", "timestamp"],
                    "properties": {
                        "session_id": {"type": "string"},
                        "decision": {"type": "string", "enum": ["allow", "deny", "approve"]},
                        "rule_name": {"type": ["string", "null"]},
                        "reason": {"type": "string"},
                        "policy_version": {"type": "string"},
                        "log_id": {"type": "string"},
                        "timestamp": {"type": "string", "format": "date-time"},
                        "approval_id": {"type": "string"},
                        "sanitized_args": {"type": "object", "description": "With `payload: {secrets|pii: redact}`: the arguments to run the tool with"},
                    },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operation of `route` in `doc`.
    fn op<'a>(doc: &'a Value, route: &RouteDoc) -> &'a Value {
        &doc["paths"][route.path][route.method]
    }

    #[test]
    fn exactly_the_keyed_routes_document_the_429() {
        let doc = openapi_document();
        let mut keyed = 0;
        for route in ROUTES {
            let responses = op(&doc, route)["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{} {} has no responses", route.method, route.path));
            let limited = responses.get("429");
            if route.role == Role::Public {
                assert!(
                    limited.is_none(),
                    "{} {} needs no key: no 429",
                    route.method,
                    route.path
                );
                continue;
            }
            keyed += 1;
            let limited = limited.unwrap_or_else(|| panic!("{} {} lacks its 429", route.method, route.path));
            assert_eq!(limited["headers"]["Retry-After"]["schema"]["type"], "integer");
            assert_eq!(limited["headers"]["Retry-After"]["required"], true);
            let schema = &limited["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(schema, "#/components/schemas/TooManyFailedAuthentications");
        }
        assert!(keyed > 0 && keyed < ROUTES.len());
        let body = &doc["components"]["schemas"]["TooManyFailedAuthentications"];
        assert_eq!(body["required"], json!(["detail", "retry_after"]));
        assert_eq!(body["properties"]["retry_after"]["type"], "integer");
        assert_eq!(body["properties"]["detail"]["type"], "string");
    }

    #[test]
    fn the_edge_refusals_are_documented() {
        let doc = openapi_document();
        for route in ROUTES {
            let responses = &op(&doc, route)["responses"];
            let name = format!("{} {}", route.method, route.path);
            for status in ["421", "403"] {
                let schema = &responses[status]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/Error", "{name}: {status}");
            }
            let json_only = responses.get("415").is_some();
            assert_eq!(
                json_only,
                route.method == "post",
                "{name}: a 415 exactly on POST routes"
            );
        }
    }
}
