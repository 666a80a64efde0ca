//! Prints the verdict of the default policy for each stdin line (one inbound text message
//! per line): `ALLOW` or `<tag> <rule id> | <excerpt>`. For tuning rules against a corpus:
//! `cargo run --release -p frameguard-inspect --example verdicts < lines.txt`.

use std::io::BufRead;
use std::time::Instant;

use frameguard_inspect::{
    Engine, InspectionPolicy, MessageDirection, MessageKind, MessageRef, Verdict,
};

fn main() {
    let engine =
        Engine::new(&[("default".to_owned(), InspectionPolicy::default())]).expect("engine");
    let policy = engine.policy("default").expect("policy");
    let mut scratch = engine.alloc_scratch().expect("scratch");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let mut conn = engine.new_connection(policy, None, 0);
        let message = MessageRef {
            direction: MessageDirection::Inbound,
            kind: MessageKind::Text,
            compressed: false,
            payload: line.as_bytes(),
            largest_frame: line.len(),
        };
        match engine.inspect(&mut conn, &mut scratch, Instant::now(), message) {
            Verdict::Allow => println!("ALLOW\t{line}"),
            Verdict::Block { detection, .. } | Verdict::DetectOnly(detection) => {
                println!(
                    "{}\t{}\t{}\t| {}",
                    detection.tag, detection.rule_id, line, detection.excerpt
                )
            }
        }
    }
}
