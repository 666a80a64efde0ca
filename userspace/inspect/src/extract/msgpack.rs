//! MessagePack binary messages (rmpv): every string value, map key and UTF-8 `bin` or `ext`
//! payload.

use rmpv::Value;

/// Nesting accepted (deeper input is invalid MessagePack for our purposes).
pub const MAX_DEPTH: usize = 64;

/// Decodes `bytes` as exactly one MessagePack value and calls `visit` for each string.
/// Returns `false` if the bytes are not one MessagePack value (trailing bytes included: plain
/// ASCII text would otherwise pass as a run of positive fixints).
pub fn visit_strings(mut bytes: &[u8], visit: &mut dyn FnMut(&str)) -> bool {
    match rmpv::decode::read_value_with_max_depth(&mut bytes, MAX_DEPTH) {
        Ok(value) if bytes.is_empty() => {
            walk(&value, visit);
            true
        }
        _ => false,
    }
}

fn walk(value: &Value, visit: &mut dyn FnMut(&str)) {
    match value {
        Value::String(s) => match s.as_str() {
            Some(text) => visit(text),
            None => {
                super::binary::visit_text(s.as_bytes(), visit);
            }
        },
        // Extension payloads are application-defined bytes; text in them is scanned like `bin`.
        Value::Binary(b) | Value::Ext(_, b) => {
            super::binary::visit_text(b, visit);
        }
        Value::Array(items) => items.iter().for_each(|v| walk(v, visit)),
        Value::Map(entries) => entries.iter().for_each(|(k, v)| {
            walk(k, visit);
            walk(v, visit);
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).unwrap();
        out
    }

    #[test]
    fn strings_and_keys() {
        let value = Value::Map(vec![
            (Value::from("type"), Value::from("chat")),
            (
                Value::from("body"),
                Value::Array(vec![Value::from(1), Value::from("<script>")]),
            ),
            (Value::from("raw"), Value::Binary(b"bin text".to_vec())),
            (Value::from("ext"), Value::Ext(1, b"ext text".to_vec())),
        ]);
        let mut seen = Vec::new();
        assert!(visit_strings(&encode(&value), &mut |s| seen.push(s.to_owned())));
        assert_eq!(
            seen,
            ["type", "chat", "body", "<script>", "raw", "bin text", "ext", "ext text"]
        );
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        let mut bytes = encode(&Value::from("hello world"));
        bytes.pop();
        assert!(!visit_strings(&bytes, &mut |_| {}));
        assert!(!visit_strings(b"plain text", &mut |_| {}), "trailing bytes");
        assert!(
            !visit_strings(&[0x92, 0x01], &mut |_| {}),
            "array of two with one element"
        );
        assert!(!visit_strings(&[], &mut |_| {}));
        // An array header claiming 2^32-1 elements with no data must fail fast, not allocate.
        assert!(!visit_strings(&[0xdd, 0xff, 0xff, 0xff, 0xff], &mut |_| {}));
        let deep: Vec<u8> = std::iter::repeat_n(0x91, 10_000).chain([0xc0]).collect();
        assert!(!visit_strings(&deep, &mut |_| {}));
    }
}
