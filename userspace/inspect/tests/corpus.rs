//! Detection quality on the shared corpus (../../../shared/corpus relative to this crate):
//! >= 99% of each attack file blocked, <= 0.1% of each benign file blocked.

use std::path::PathBuf;

use frameguard_inspect::eval::{blocked_share, EvalResult};
use frameguard_inspect::{Engine, InspectionPolicy};

fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    assert!(
        dir.is_dir(),
        "corpus folder {} is missing: the shared/ folder must sit next to the repository",
        dir.display()
    );
    dir
}

fn evaluate(file: &str) -> (EvalResult, Vec<String>) {
    let path = corpus_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let engine = Engine::new(&[("default".to_owned(), InspectionPolicy::default())]).unwrap();
    let policy = engine.policy("default").unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let result = blocked_share(&engine, policy, lines.iter().cloned());
    (result, lines)
}

/// Lines whose verdict differs from `expect_blocked`, for the failure message.
fn misses(lines: &[String], expect_blocked: bool) -> Vec<String> {
    let engine = Engine::new(&[("default".to_owned(), InspectionPolicy::default())]).unwrap();
    let policy = engine.policy("default").unwrap();
    lines
        .iter()
        .filter(|line| {
            let blocked =
                blocked_share(&engine, policy, std::iter::once((*line).clone())).blocked == 1;
            blocked != expect_blocked
        })
        .take(40)
        .cloned()
        .collect()
}

fn check_attack(file: &str) {
    let (result, lines) = evaluate(file);
    println!(
        "{file}: {}/{} blocked ({:.2}%)",
        result.blocked,
        result.total,
        result.share() * 100.0
    );
    assert!(result.total > 0, "{file} is empty");
    assert!(
        result.share() >= 0.99,
        "{file}: only {:.2}% blocked; missed e.g. {:#?}",
        result.share() * 100.0,
        misses(&lines, true)
    );
}

fn check_benign(file: &str) {
    let (result, lines) = evaluate(file);
    println!(
        "{file}: {}/{} blocked ({:.3}%)",
        result.blocked,
        result.total,
        result.share() * 100.0
    );
    assert!(result.total > 0, "{file} is empty");
    assert!(
        result.share() <= 0.001,
        "{file}: {:.3}% blocked, e.g. {:#?}",
        result.share() * 100.0,
        misses(&lines, false)
    );
}

#[test]
fn xss_corpus_is_blocked() {
    check_attack("xss.txt");
}

#[test]
fn sqli_corpus_is_blocked() {
    check_attack("sqli.txt");
}

#[test]
fn cmdi_corpus_is_blocked() {
    check_attack("cmdi.txt");
}

#[test]
fn benign_chat_passes() {
    check_benign("benign-chat.txt");
}

#[test]
fn benign_json_passes() {
    check_benign("benign-json.txt");
}
