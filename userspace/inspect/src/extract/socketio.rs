//! socket.io packets carried in engine.io message packets over WebSocket:
//! `4` (engine.io message) + `<type>[<attachments>-][/<namespace>,][<ack id>][<json>]`.

/// socket.io packet types that carry binary attachments.
const BINARY_EVENT: u8 = b'5';
const BINARY_ACK: u8 = b'6';
/// More attachments than this on one packet are not tracked (the counter saturates).
pub const MAX_ATTACHMENTS: u32 = 64;

#[derive(Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub namespace: Option<&'a str>,
    /// Binary frames that follow this packet and belong to it.
    pub attachments: u32,
    /// JSON payload (event name and arguments), possibly empty.
    pub payload: &'a str,
}

/// An engine.io v3 message packet carrying binary data in base64 (`b4` + base64: what a
/// client without binary support sends in place of a binary frame): the data.
pub fn engineio_base64_message(text: &str) -> Option<Vec<u8>> {
    crate::decode::base64::decode(text.strip_prefix("b4")?).filter(|data| !data.is_empty())
}

/// Parses `text` as an engine.io message carrying a socket.io packet; `None` if it is not one.
pub fn parse(text: &str) -> Option<Packet<'_>> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'4') || !matches!(bytes.get(1), Some(b'0'..=b'6')) {
        return None;
    }
    let kind = bytes[1];
    let mut pos = 2;
    let mut attachments = 0;
    if kind == BINARY_EVENT || kind == BINARY_ACK {
        let digits = bytes[pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || bytes.get(pos + digits) != Some(&b'-') {
            return None;
        }
        attachments = text[pos..pos + digits]
            .parse::<u32>()
            .unwrap_or(u32::MAX)
            .min(MAX_ATTACHMENTS);
        pos += digits + 1;
    }
    let mut namespace = None;
    if bytes.get(pos) == Some(&b'/') {
        let end = text[pos..].find(',').map_or(text.len(), |c| pos + c);
        namespace = Some(&text[pos..end]);
        pos = (end + 1).min(text.len());
    }
    pos += bytes[pos..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let payload = &text[pos..];
    if !(payload.is_empty() || payload.starts_with('[') || payload.starts_with('{')) {
        return None;
    }
    Some(Packet {
        namespace,
        attachments,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_namespace_ack_and_binary() {
        assert_eq!(
            parse(r#"42["chat","hi"]"#),
            Some(Packet {
                namespace: None,
                attachments: 0,
                payload: r#"["chat","hi"]"#
            })
        );
        assert_eq!(
            parse(r#"42/ns,17["ev",1]"#),
            Some(Packet {
                namespace: Some("/ns"),
                attachments: 0,
                payload: r#"["ev",1]"#
            })
        );
        assert_eq!(
            parse(r#"451-["upload",{"_placeholder":true,"num":0}]"#).map(|p| p.attachments),
            Some(1)
        );
        assert_eq!(parse("40/admin").map(|p| p.namespace), Some(Some("/admin")));
        assert_eq!(
            parse("4599999999999-[]").map(|p| p.attachments),
            Some(MAX_ATTACHMENTS)
        );
    }

    #[test]
    fn engineio_v3_base64_messages_are_decoded() {
        assert_eq!(
            engineio_base64_message("b4PHNjcmlwdD4=").as_deref(),
            Some(&b"<script>"[..])
        );
        assert_eq!(engineio_base64_message("b4 lunch?"), None);
        assert_eq!(engineio_base64_message("b4"), None);
        assert_eq!(engineio_base64_message("4PHNjcmlwdD4="), None);
    }

    #[test]
    fn chat_that_looks_numeric_is_not_socketio() {
        assert_eq!(parse("42 is the answer"), None);
        assert_eq!(parse("451 items"), None);
        assert_eq!(parse("4"), None);
        assert_eq!(parse("hello"), None);
    }
}
