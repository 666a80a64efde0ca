//! JSON via simd-json's tape: every key and string value (escapes such as `\u003c` already
//! decoded), and a `serde_json` copy for schema validation.

use simd_json::{Node, StaticNode};

/// Deepest nesting converted for schema validation (deeper documents fail validation).
pub const MAX_SCHEMA_DEPTH: usize = 128;

/// `text` opens an object or array after JSON's whitespace, so it is worth parsing.
pub fn starts_like_json(text: &str) -> bool {
    let first = text
        .bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    matches!(first, Some(b'{' | b'['))
}

/// Parses `buf` in place; the tape borrows its strings from `buf`.
pub fn parse<'a>(buf: &'a mut [u8], buffers: &mut simd_json::Buffers) -> Option<Vec<Node<'a>>> {
    simd_json::to_tape_with_buffers(buf, buffers)
        .ok()
        .map(|tape| tape.0)
}

/// A tape allocation kept from one document to the next (`parse` allocates one per call).
#[derive(Default)]
pub struct TapeBuffer(Vec<Node<'static>>);

impl TapeBuffer {
    /// Parses `buf` in place into the kept allocation and hands the tape (and `buffers`, for
    /// nested documents) to `read`; `None` if `buf` is not JSON.
    pub fn parse_with<'a, R>(
        &mut self,
        buf: &'a mut [u8],
        buffers: &mut simd_json::Buffers,
        read: impl FnOnce(&[Node<'a>], &mut simd_json::Buffers) -> R,
    ) -> Option<R> {
        let mut tape = simd_json::Tape(recycle(std::mem::take(&mut self.0)));
        let result = simd_json::fill_tape(buf, buffers, &mut tape)
            .ok()
            .map(|()| read(&tape.0, buffers));
        self.0 = recycle(tape.0);
        result
    }
}

/// The allocation of `tape` for nodes borrowing from another document: emptied first, so no
/// node outlives its document, then collected in place (the layout is the same), which keeps
/// the allocation.
fn recycle<'b>(mut tape: Vec<Node<'_>>) -> Vec<Node<'b>> {
    tape.clear();
    tape.into_iter().map(|_| unreachable!("emptied")).collect()
}

/// Every string on the tape: object keys and string values alike.
pub fn strings<'t, 'a>(tape: &'t [Node<'a>]) -> impl Iterator<Item = &'a str> + 't {
    tape.iter().filter_map(|node| match node {
        Node::String(s) => Some(*s),
        _ => None,
    })
}

/// The document as a `serde_json::Value`, or `None` if it nests deeper than
/// [`MAX_SCHEMA_DEPTH`].
pub fn to_serde(tape: &[Node<'_>]) -> Option<serde_json::Value> {
    let mut pos = 0;
    let value = build(tape, &mut pos, 0)?;
    Some(value)
}

fn build(tape: &[Node<'_>], pos: &mut usize, depth: usize) -> Option<serde_json::Value> {
    use serde_json::Value;
    if depth > MAX_SCHEMA_DEPTH {
        return None;
    }
    let node = tape.get(*pos)?;
    *pos += 1;
    Some(match node {
        Node::String(s) => Value::String((*s).to_owned()),
        Node::Static(s) => match s {
            StaticNode::Null => Value::Null,
            StaticNode::Bool(b) => Value::Bool(*b),
            StaticNode::I64(n) => Value::from(*n),
            StaticNode::U64(n) => Value::from(*n),
            StaticNode::F64(n) => {
                serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
        },
        Node::Array { len, .. } => {
            let mut items = Vec::with_capacity((*len).min(tape.len()));
            for _ in 0..*len {
                items.push(build(tape, pos, depth + 1)?);
            }
            Value::Array(items)
        }
        Node::Object { len, .. } => {
            let mut map = serde_json::Map::new();
            for _ in 0..*len {
                let Node::String(key) = tape.get(*pos)? else {
                    return None;
                };
                *pos += 1;
                let value = build(tape, pos, depth + 1)?;
                map.insert((*key).to_owned(), value);
            }
            Value::Object(map)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tape_buffer_parses_document_after_document_in_one_allocation() {
        let mut tape = TapeBuffer::default();
        let mut buffers = simd_json::Buffers::default();
        let strings_of = |tape: &mut TapeBuffer, buffers: &mut simd_json::Buffers, doc: &str| {
            let mut buf = doc.as_bytes().to_vec();
            tape.parse_with(&mut buf, buffers, |t, _| {
                strings(t).map(str::to_owned).collect::<Vec<_>>()
            })
        };
        let first = strings_of(&mut tape, &mut buffers, r#"{"a":["b","c",{"d":1}]}"#);
        assert_eq!(first.unwrap(), ["a", "b", "c", "d"]);
        let capacity = tape.0.capacity();
        assert!(capacity > 0);
        assert_eq!(strings_of(&mut tape, &mut buffers, r#"{"a":"#), None);
        assert_eq!(
            strings_of(&mut tape, &mut buffers, r#"["x"]"#).unwrap(),
            ["x"]
        );
        assert_eq!(tape.0.capacity(), capacity);
    }

    #[test]
    fn keys_and_values_with_unicode_escapes() {
        let mut buf =
            br#"{"msg":"\u003cscript\u003e","\u006eame":["a",{"k":1}],"n":null}"#.to_vec();
        let mut buffers = simd_json::Buffers::default();
        let tape = parse(&mut buf, &mut buffers).unwrap();
        let found: Vec<&str> = strings(&tape).collect();
        assert_eq!(found, ["msg", "<script>", "name", "a", "k", "n"]);
        let value = to_serde(&tape).unwrap();
        assert_eq!(value["name"][1]["k"], 1);
        assert!(value["n"].is_null());
    }

    #[test]
    fn invalid_json_and_deep_nesting() {
        let mut buffers = simd_json::Buffers::default();
        assert!(parse(&mut b"{\"a\":".to_vec(), &mut buffers).is_none());
        assert!(parse(&mut b"hello".to_vec(), &mut buffers).is_none());
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_SCHEMA_DEPTH + 5),
            "]".repeat(MAX_SCHEMA_DEPTH + 5)
        );
        let mut buf = deep.into_bytes();
        let tape = parse(&mut buf, &mut buffers).unwrap();
        assert!(to_serde(&tape).is_none());
    }
}
