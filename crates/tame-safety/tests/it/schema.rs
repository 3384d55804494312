//! Argument schemas (seed 002): loading, nested failure paths, load errors.

use serde_json::json;
use tame_safety::{ToolSchemas, ToolSpec};

const TOOLS: &str = r#"
tools:
  - name: create_user
    description: Create a new user account
    input_schema:
      type: object
      properties:
        username: {type: string, minLength: 3, maxLength: 30}
        email: {type: string, description: Email address, format: email}
        role: {type: string, enum: [user, admin, moderator], default: user}
        permissions: {type: array, items: {type: string}}
        profile:
          type: object
          properties:
            display_name: {type: string}
            age: {type: integer, minimum: 0}
            addresses:
              type: array
              items:
                type: object
                properties:
                  zip: {type: string, pattern: "^[0-9]{5}$"}
                required: [zip]
      required: [username, email]
  - name: query_database
    description: Execute a read-only database query
    input_schema:
      type: object
      properties:
        table: {type: string, enum: [users, orders, products]}
        limit: {type: integer, default: 10, minimum: 1, maximum: 100}
        filters: {type: object}
      required: [table]
      additionalProperties: false
"#;

fn schemas() -> ToolSchemas {
    ToolSchemas::from_yaml(TOOLS).unwrap()
}

#[test]
fn valid_arguments_pass() {
    let s = schemas();
    assert_eq!(s.len(), 2);
    let args = json!({"username": "alice", "email": "alice@example.com", "profile": {"age": 30, "addresses": [{"zip": "12345"}]}});
    assert_eq!(s.validate_args("create_user", &args), Ok(()));
    assert_eq!(
        s.validate_args("query_database", &json!({"table": "users", "limit": 5})),
        Ok(())
    );
}

#[test]
fn unknown_tools_are_not_validated() {
    let s = schemas();
    assert!(!s.has_schema("send_email"));
    assert_eq!(s.validate_args("send_email", &json!(42)), Ok(()));
}

#[test]
fn nested_paths_name_the_failure() {
    let s = schemas();
    let cases = [
        (
            json!({"username": "alice", "email": "a@example.com", "profile": {"age": "old"}}),
            "$.profile.age",
            "type",
        ),
        (
            json!({"username": "alice", "email": "a@example.com", "profile": {"age": -1}}),
            "$.profile.age",
            "minimum",
        ),
        (
            json!({"username": "alice", "email": "a@example.com", "profile": {"addresses": [{"zip": "12345"}, {"zip": "12x"}]}}),
            "$.profile.addresses[1].zip",
            "pattern",
        ),
        (
            json!({"username": "alice", "email": "a@example.com", "profile": {"addresses": [{}]}}),
            "$.profile.addresses[0].zip",
            "required",
        ),
        (
            json!({"username": "alice", "email": "a@example.com", "permissions": ["read", 7]}),
            "$.permissions[1]",
            "type",
        ),
        (
            json!({"username": "al", "email": "a@example.com"}),
            "$.username",
            "minLength",
        ),
        (
            json!({"username": "alice", "email": "not-an-email"}),
            "$.email",
            "format",
        ),
        (
            json!({"username": "alice", "email": "a@example.com", "role": "root"}),
            "$.role",
            "enum",
        ),
        (json!({"email": "a@example.com"}), "$.username", "required"),
    ];
    for (args, path, keyword) in cases {
        let err = s.validate_args("create_user", &args).unwrap_err();
        assert_eq!(err.json_path, path, "{args}: {err}");
        assert_eq!(err.keyword, keyword, "{args}: {err}");
        assert_eq!(err.tool, "create_user");
        assert!(err.to_string().contains(path));
    }
}

#[test]
fn missing_and_unexpected_properties() {
    let s = schemas();
    let err = s.validate_args("query_database", &json!({"limit": 5})).unwrap_err();
    assert_eq!(err.json_path, "$.table");
    assert_eq!(err.message, "missing required property `table`");
    let err = s
        .validate_args("query_database", &json!({"table": "users", "drop": true}))
        .unwrap_err();
    assert_eq!(err.json_path, "$.drop");
    assert_eq!(err.keyword, "additionalProperties");
    let err = s
        .validate_args("query_database", &json!({"table": "users", "limit": 1000}))
        .unwrap_err();
    assert_eq!((err.json_path.as_str(), err.keyword.as_str()), ("$.limit", "maximum"));
    let err = s.validate_args("query_database", &json!("users")).unwrap_err();
    assert_eq!(err.json_path, "$");
}

#[test]
fn violation_messages_do_not_repeat_secrets() {
    let s = schemas();
    let err = s
        .validate_args("query_database", &json!({"table": "AKIAIOSFODNN7EXAMPLE"}))
        .unwrap_err();
    assert_eq!(err.keyword, "enum");
    assert!(!err.message.contains("AKIAIOSFODNN7EXAMPLE"), "{}", err.message);
}

#[test]
fn draft_2020_12_keywords_work() {
    let spec = ToolSpec {
        name: "t".into(),
        description: String::new(),
        input_schema: json!({
            "type": "object",
            "$defs": {"pos": {"type": "integer", "exclusiveMinimum": 0}},
            "properties": {
                "n": {"$ref": "#/$defs/pos"},
                "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false},
                "when": {"type": "string", "format": "date-time"},
            },
            "dependentRequired": {"pair": ["n"]},
        }),
        requires_approval: None,
    };
    let s = ToolSchemas::from_specs(vec![spec]).unwrap();
    assert!(
        s.validate_args("t", &json!({"n": 1, "pair": ["a", 2], "when": "2026-11-21T06:00:00Z"}))
            .is_ok()
    );
    assert_eq!(s.validate_args("t", &json!({"n": 0})).unwrap_err().json_path, "$.n");
    assert_eq!(
        s.validate_args("t", &json!({"n": 1, "pair": ["a", "b"]}))
            .unwrap_err()
            .json_path,
        "$.pair[1]"
    );
    assert_eq!(
        s.validate_args("t", &json!({"n": 1, "pair": ["a", 1, 2]}))
            .unwrap_err()
            .json_path,
        "$.pair[2]"
    );
    // `dependentRequired` reports the missing dependency's path.
    let err = s.validate_args("t", &json!({"pair": ["a", 1]})).unwrap_err();
    assert_eq!(err.json_path, "$.n");
    assert!(err.schema_path.contains("dependentRequired"), "{}", err.schema_path);
    assert_eq!(
        s.validate_args("t", &json!({"when": "yesterday"}))
            .unwrap_err()
            .json_path,
        "$.when"
    );
}

#[test]
fn invalid_schemas_are_load_errors_naming_the_tool() {
    let yaml = r#"
tools:
  - name: good
    input_schema: {type: object}
  - name: bad_type
    input_schema: {type: objekt}
  - name: not_object
    input_schema: {type: string}
  - name: good
    input_schema: {type: object}
  - name: bad_min
    input_schema: {type: object, properties: {n: {minimum: "zero"}}}
  - description: no name
    input_schema: {type: object}
  - name: remote_ref
    input_schema: {type: object, properties: {x: {$ref: "https://example.invalid/schema.json"}}}
"#;
    let err = ToolSchemas::from_yaml(yaml).unwrap_err();
    let tools: Vec<&str> = err.errors.iter().map(|e| e.tool.as_str()).collect();
    assert_eq!(
        tools,
        vec!["bad_type", "not_object", "good", "bad_min", "", "remote_ref"],
        "{err}"
    );
    assert!(err.errors[2].message.contains("duplicate"));
    assert!(err.errors[4].message.contains("name"));
    assert!(err.to_string().contains("tool `bad_type` (tools[1])"), "{err}");
    assert!(ToolSchemas::from_yaml("tools: {a: 1}").is_err());
}
