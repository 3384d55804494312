//! Tool argument schemas (seed 002): a `tools:` list of `{name, description,
//! input_schema}` compiled into JSON-Schema validators (draft 2020-12 unless
//! the schema's `$schema` says otherwise), and [`ToolSchemas::validate_args`]
//! naming the JSON path of the first failure.
//!
//! Choices:
//! - `format` is asserted (`"format": "email"` rejects `"not-an-email"`),
//!   unknown formats are ignored.
//! - `pattern` uses the linear-time `regex` engine, never a backtracking one.
//! - References are resolved offline only: a `$ref` to a remote document is a
//!   load error, no network access ever happens.
//! - A tool without a declared schema is not validated (`validate_args`
//!   returns `Ok`); use [`ToolSchemas::has_schema`] to require one.
//! - Messages pass through the secret scanner, so a violation never repeats a
//!   detected secret from the arguments in clear.

use indexmap::IndexMap;
use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use jsonschema::{Draft, PatternOptions, Validator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scan::{Scanner, Segment, format_path};
use std::borrow::Cow;

/// One tool as declared in the `tools:` section (seed 002's schema format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolSpec {
    /// Unique tool name.
    pub name: String,
    /// What the tool does (for people and LLMs).
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments; must describe an object.
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub input_schema: Value,
    /// Seed 002's approval flag, kept for the engine (`None` when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_approval: Option<bool>,
}

/// Why a `tools:` section could not be loaded; one entry per problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("invalid `tools` section: {}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct SchemaLoadError {
    /// Every problem found, in file order.
    pub errors: Vec<ToolSchemaError>,
}

/// One problem with one tool's declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("tool `{tool}` (tools[{index}]): {message}")]
pub struct ToolSchemaError {
    /// The tool's name (empty when the name itself is missing).
    pub tool: String,
    /// Position in the `tools:` list.
    pub index: usize,
    /// What is wrong.
    pub message: String,
}

/// Arguments that fail their tool's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("arguments of `{tool}` fail its input_schema at {json_path}: {message}")]
pub struct SchemaViolation {
    /// The tool whose schema failed.
    pub tool: String,
    /// Where in the arguments, e.g. `$.profile.age` (for a missing required
    /// property: the path the property would have).
    pub json_path: String,
    /// What is wrong, lowercase.
    pub message: String,
    /// The schema keyword that failed, e.g. `type`, `required`.
    pub keyword: String,
    /// Where in the schema, as a JSON pointer, e.g. `/properties/profile/properties/age/type`.
    pub schema_path: String,
}

struct Compiled {
    spec: ToolSpec,
    validator: Validator,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Compiled validators for every declared tool. `Send + Sync`; compile once.
#[derive(Debug, Default)]
pub struct ToolSchemas {
    tools: IndexMap<String, Compiled>,
}

impl ToolSchemas {
    /// No tools declared: every call passes.
    #[must_use]
    pub fn empty() -> ToolSchemas {
        ToolSchemas::default()
    }

    /// Compiles a list of tool declarations, collecting every error.
    pub fn from_specs(specs: Vec<ToolSpec>) -> Result<ToolSchemas, SchemaLoadError> {
        let mut errors = Vec::new();
        let mut tools = IndexMap::new();
        for (index, spec) in specs.into_iter().enumerate() {
            let err = |message: String| ToolSchemaError {
                tool: spec.name.clone(),
                index,
                message,
            };
            if spec.name.trim().is_empty() {
                errors.push(err("`name` must not be empty".to_owned()));
                continue;
            }
            if tools.contains_key(&spec.name) {
                errors.push(err(format!("duplicate tool name `{}`", spec.name)));
                continue;
            }
            match compile(&spec.input_schema) {
                Ok(validator) => {
                    tools.insert(spec.name.clone(), Compiled { spec, validator });
                }
                Err(message) => errors.push(err(message)),
            }
        }
        if errors.is_empty() {
            Ok(ToolSchemas { tools })
        } else {
            Err(SchemaLoadError { errors })
        }
    }

    /// Loads the `tools:` section from JSON: a list of `{name, description, input_schema}`.
    pub fn from_json(section: &Value) -> Result<ToolSchemas, SchemaLoadError> {
        let Value::Array(items) = section else {
            return Err(single_error(format!(
                "`tools` must be a list of {{name, description, input_schema}}, found {}",
                type_name(section)
            )));
        };
        let mut specs = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match ToolSpec::deserialize(item) {
                Ok(spec) => specs.push(spec),
                Err(e) => errors.push(ToolSchemaError {
                    tool: item.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    index,
                    message: e.to_string(),
                }),
            }
        }
        match ToolSchemas::from_specs(specs) {
            Ok(schemas) if errors.is_empty() => Ok(schemas),
            Ok(_) => Err(SchemaLoadError { errors }),
            Err(mut more) => {
                errors.append(&mut more.errors);
                errors.sort_by_key(|e| e.index);
                Err(SchemaLoadError { errors })
            }
        }
    }

    /// Loads from YAML text: either the list itself or a document with a `tools:` key.
    pub fn from_yaml(source: &str) -> Result<ToolSchemas, SchemaLoadError> {
        let doc: Value = serde_yaml::from_str(source).map_err(|e| single_error(format!("invalid YAML: {e}")))?;
        match doc.get("tools") {
            Some(section) => ToolSchemas::from_json(section),
            None => ToolSchemas::from_json(&doc),
        }
    }

    /// True when `tool` has a declared schema.
    #[must_use]
    pub fn has_schema(&self, tool: &str) -> bool {
        self.tools.contains_key(tool)
    }

    /// The declaration of `tool`, if any.
    #[must_use]
    pub fn spec(&self, tool: &str) -> Option<&ToolSpec> {
        self.tools.get(tool).map(|c| &c.spec)
    }

    /// Declared tools, in file order.
    pub fn specs(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.values().map(|c| &c.spec)
    }

    /// Number of declared tools.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// True when no tool is declared.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Checks `args` against `tool`'s schema. Tools without a schema pass.
    pub fn validate_args(&self, tool: &str, args: &Value) -> Result<(), SchemaViolation> {
        let Some(compiled) = self.tools.get(tool) else {
            return Ok(());
        };
        let Err(error) = compiled.validator.validate(args) else {
            return Ok(());
        };
        let mut segments: Vec<Segment<'_>> = error
            .instance_path()
            .iter()
            .map(|seg| match seg {
                LocationSegment::Property(name) => Segment::Key(Cow::Owned(name.into_owned())),
                LocationSegment::Index(i) => Segment::Index(i),
            })
            .collect();
        let kind = error.kind();
        let message = match kind {
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().map_or_else(|| property.to_string(), str::to_owned);
                let message = format!("missing required property `{name}`");
                segments.push(Segment::Key(Cow::Owned(name)));
                message
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let message = format!(
                    "unexpected propert{} {}",
                    if unexpected.len() == 1 { "y" } else { "ies" },
                    unexpected
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                if let Some(first) = unexpected.first() {
                    segments.push(Segment::Key(Cow::Owned(first.clone())));
                }
                message
            }
            _ => error.to_string(),
        };
        let (message, _) = Scanner::global().redact_str(&message);
        Err(SchemaViolation {
            tool: tool.to_owned(),
            json_path: format_path(&segments),
            message,
            keyword: kind.keyword().to_owned(),
            schema_path: error.schema_path().as_str().to_owned(),
        })
    }
}

fn single_error(message: String) -> SchemaLoadError {
    SchemaLoadError {
        errors: vec![ToolSchemaError {
            tool: String::new(),
            index: 0,
            message,
        }],
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn compile(schema: &Value) -> Result<Validator, String> {
    let Value::Object(map) = schema else {
        return Err(format!(
            "`input_schema` must be a JSON Schema object, found {}",
            type_name(schema)
        ));
    };
    if let Some(ty) = map.get("type") {
        let is_object = ty.as_str() == Some("object")
            || ty
                .as_array()
                .is_some_and(|a| a.iter().any(|t| t.as_str() == Some("object")));
        if !is_object {
            return Err(format!("`input_schema.type` must be \"object\", found {ty}"));
        }
    }
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(true)
        .with_pattern_options(PatternOptions::regex())
        .build(schema)
        .map_err(|e| {
            let at = e.instance_path().as_str();
            if at.is_empty() {
                format!("invalid input_schema: {e}")
            } else {
                format!("invalid input_schema at `{at}`: {e}")
            }
        })
}
