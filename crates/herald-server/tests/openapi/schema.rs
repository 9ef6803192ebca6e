//! A small JSON-schema checker for the OpenAPI document: enough of the
//! vocabulary (`$ref`, `type`, `properties`, `required`, `items`, `oneOf`,
//! `enum`, `const`, bounds, date-time) to hold real answers against it.

use super::*;

pub(crate) fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// (METHOD, path) of every operation the document lists.
pub(crate) fn documented_routes(spec: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (key, _) in item.as_object().unwrap() {
            if METHODS.contains(&key.as_str()) {
                routes.insert((key.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

pub(crate) fn code_routes() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect()
}

/// Follows `{"$ref": "#/..."}` (repeatedly) within the document.
pub(crate) fn resolve<'a>(spec: &'a Value, mut node: &'a Value) -> &'a Value {
    while let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references: {reference}"));
        node = spec
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling reference {reference}"));
    }
    node
}

pub(crate) fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        other => panic!("unknown schema type {other}"),
    }
}

/// Checks `value` against `schema`, recording every mismatch with its
/// JSON path: undeclared keys, missing required keys, wrong types, values
/// outside an `enum`, unparsable `date-time`s.
pub(crate) fn validate(
    spec: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    errors: &mut Vec<String>,
) {
    let schema = resolve(spec, schema);
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = alternatives
            .iter()
            .filter(|alternative| {
                let mut inner = Vec::new();
                validate(spec, alternative, value, at, &mut inner);
                inner.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!(
                "{at}: matches {matching} of the oneOf alternatives: {value}"
            ));
        }
        return;
    }
    if let Some(kind) = schema.get("type") {
        let allowed: Vec<&str> = match kind {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().map(|t| t.as_str().unwrap()).collect(),
            other => panic!("bad type in schema: {other}"),
        };
        if !allowed.iter().any(|t| type_matches(t, value)) {
            errors.push(format!("{at}: {value} is not of type {allowed:?}"));
            return;
        }
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        errors.push(format!("{at}: {value} is not {constant}"));
    }
    let number = value.as_f64();
    if let (Some(minimum), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), number)
        && n < minimum
    {
        errors.push(format!("{at}: {n} is below the minimum {minimum}"));
    }
    if let (Some(maximum), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), number)
        && n > maximum
    {
        errors.push(format!("{at}: {n} is above the maximum {maximum}"));
    }
    if let Some(choices) = schema.get("enum").and_then(Value::as_array)
        && !choices.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {choices:?}"));
    }
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && let Some(text) = value.as_str()
        && time::OffsetDateTime::parse(text, rfc3339).is_err()
    {
        errors.push(format!("{at}: {text:?} is not an RFC 3339 date-time"));
    }
    match value {
        Value::Object(object) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = required.as_str().unwrap();
                if !object.contains_key(key) {
                    errors.push(format!("{at}: required key {key:?} missing"));
                }
            }
            for (key, item) in object {
                let path = format!("{at}.{key}");
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(property), _) => validate(spec, property, item, &path, errors),
                    (None, Some(additional)) => validate(spec, additional, item, &path, errors),
                    (None, None) => errors.push(format!("{path}: key not declared in the schema")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(spec, item_schema, item, &format!("{at}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// Collects what real answers looked like and checks each against the
/// document: status documented for the operation, content type documented
/// for that status, body valid against its schema.
pub(crate) struct Conformance {
    spec: Value,
    pub(crate) checked: BTreeSet<(String, String)>,
    statuses: BTreeSet<(String, String, u16)>,
}

impl Conformance {
    pub(crate) fn new() -> Self {
        Self {
            spec: spec(),
            checked: BTreeSet::new(),
            statuses: BTreeSet::new(),
        }
    }

    #[track_caller]
    pub(crate) fn check(&mut self, method: &str, template: &str, answer: &Answer) {
        let (status, body, headers) = answer;
        let context = format!("{method} {template} → {status}");
        let operation = &self.spec["paths"][template][method.to_lowercase()];
        assert!(operation.is_object(), "{context}: operation not documented");
        let responses = &operation["responses"];
        let response = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .unwrap_or_else(|| panic!("{context}: status not documented; body {body:#}"));
        let response = resolve(&self.spec, response);
        let content_type = header(headers, "content-type")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_owned();
        let content = response["content"]
            .get(&content_type)
            .unwrap_or_else(|| panic!("{context}: content type {content_type:?} not documented"));
        let mut errors = Vec::new();
        validate(&self.spec, &content["schema"], body, "$", &mut errors);
        // Documented response headers: present when required, and of
        // their schema (a header's text read as a number where the schema
        // wants an integer).
        for (name, declared) in response
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let declared = resolve(&self.spec, declared);
            match header(headers, name) {
                None if declared["required"] == true => {
                    errors.push(format!("header {name}: missing"))
                }
                None => {}
                Some(text) => {
                    let schema = resolve(&self.spec, &declared["schema"]);
                    let value = match schema["type"].as_str() {
                        Some("integer") => text
                            .parse::<i64>()
                            .map_or_else(|_| json!(text), |n| json!(n)),
                        _ => json!(text),
                    };
                    validate(
                        &self.spec,
                        schema,
                        &value,
                        &format!("header {name}"),
                        &mut errors,
                    );
                }
            }
        }
        assert!(
            errors.is_empty(),
            "{context}: body does not match the document:\n{}\nbody: {body:#}",
            errors.join("\n")
        );
        self.checked
            .insert((method.to_owned(), template.to_owned()));
        self.statuses
            .insert((method.to_owned(), template.to_owned(), *status));
    }
}
