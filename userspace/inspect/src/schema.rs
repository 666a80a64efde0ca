//! Draft-07 JSON Schema loading and validation (jsonschema crate).

use std::path::Path;

use crate::{Finding, Tag, MAX_EXCERPT};

/// Reads and compiles the schema at `path`.
pub fn load(path: &Path) -> Result<jsonschema::Validator, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read JSON schema {}: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("JSON schema {} is not JSON: {e}", path.display()))?;
    jsonschema::draft7::new(&value)
        .map_err(|e| format!("JSON schema {} is invalid: {e}", path.display()))
}

/// Validates `document`; `None` when it conforms.
pub fn validate(
    validator: &jsonschema::Validator,
    document: Option<&serde_json::Value>,
) -> Option<Finding> {
    let Some(document) = document else {
        return Some(Finding {
            tag: Tag::SchemaInvalid,
            rule_id: "schema.too-deep".into(),
            excerpt: "document nests too deeply to validate".into(),
        });
    };
    let error = validator.iter_errors(document).next()?;
    let mut excerpt = format!("{}: {}", error.instance_path, error);
    truncate_on_char_boundary(&mut excerpt, MAX_EXCERPT);
    Some(Finding {
        tag: Tag::SchemaInvalid,
        rule_id: "schema.json-schema".into(),
        excerpt,
    })
}

pub(crate) fn truncate_on_char_boundary(text: &mut String, max: usize) {
    if text.len() > max {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
    }
}
