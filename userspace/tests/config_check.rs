//! `frameguard check FILE`: diagnostics as `FILE:LINE:COL: error: MESSAGE`, exit 1 on errors and
//! 0 otherwise, for every config fixture and for configs of these tests.

mod support;

use std::path::Path;
use std::process::Command;

struct Checked {
    code: Option<i32>,
    output: String,
}

fn check(file: &Path) -> Checked {
    let out = Command::new(env!("CARGO_BIN_EXE_frameguard"))
        .arg("check")
        .arg(file)
        .output()
        .expect("run frameguard check");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Checked {
        code: out.status.code(),
        output,
    }
}

/// The (line, column) of each `FILE:LINE:COL: error:` line of `output`.
fn error_positions(output: &str, file: &str) -> Vec<(usize, usize)> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix(file)?.strip_prefix(':'))
        .filter_map(|rest| {
            let (line, rest) = rest.split_once(':')?;
            let (column, rest) = rest.split_once(':')?;
            rest.starts_with(" error: ")
                .then(|| Some((line.parse().ok()?, column.parse().ok()?)))?
        })
        .collect()
}

#[test]
fn every_fixture_checks_with_exit_code_matching_its_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tests/fixtures");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    fixtures.retain(|p| p.extension().is_some_and(|e| e == "kdl"));
    fixtures.sort();
    println!("{} fixtures in {}", fixtures.len(), dir.display());
    for fixture in &fixtures {
        let shown = fixture.display().to_string();
        let checked = check(fixture);
        let errors = error_positions(&checked.output, &shown);
        let text = std::fs::read_to_string(fixture).expect("fixture text");
        let lines: Vec<&str> = text.lines().collect();
        for &(line, column) in &errors {
            let Some(source_line) = lines.get(line.wrapping_sub(1)) else {
                panic!(
                    "{shown}: error on line {line} of {}: {}",
                    lines.len(),
                    checked.output
                );
            };
            assert!(
                (1..=source_line.chars().count() + 1).contains(&column),
                "{shown}:{line}: column {column} is outside the line: {}",
                checked.output
            );
        }
        match checked.code {
            Some(0) => assert!(
                errors.is_empty(),
                "{shown}: exit 0 with errors: {}",
                checked.output
            ),
            Some(1) => assert!(
                !errors.is_empty(),
                "{shown}: exit 1 without FILE:LINE:COL errors: {}",
                checked.output
            ),
            other => panic!("{shown}: exit code {other:?}: {}", checked.output),
        }
        let name = fixture
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("bad-") {
            assert_eq!(
                checked.code,
                Some(1),
                "{shown} is a bad config: {}",
                checked.output
            );
        }
        if shown.ends_with("-fixed.kdl") {
            assert_eq!(
                checked.code,
                Some(0),
                "{shown} is a corrected config: {}",
                checked.output
            );
        }
        println!("{shown}: exit {:?}, {} errors", checked.code, errors.len());
    }
}

fn write_config(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn wrong_value_types_are_reported_at_their_exact_positions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = r#"listeners { listener "http" { address "127.0.0.1:8080"; protocol "http" } }
routes {
    route "ws" {
        priority "high"
        matches { path "/ws" }
        upstream "backend"
        websocket { enabled #true; max-message-size "12XB" }
    }
}
upstreams { upstream "backend" { target "127.0.0.1:3000" } }
"#;
    let path = write_config(&dir, "bad.kdl", text);
    let checked = check(&path);
    assert_eq!(checked.code, Some(1), "{}", checked.output);
    let shown = path.display().to_string();
    // `"high"` starts at line 4 column 18, `"12XB"` at line 7 column 53.
    let errors = error_positions(&checked.output, &shown);
    assert_eq!(
        errors,
        [(4, 18), (7, 53)],
        "every error, each at its value: {}",
        checked.output
    );
}

#[test]
fn unclosed_block_is_a_syntax_error_with_a_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(
        &dir,
        "unclosed.kdl",
        "routes {\n    route \"ws\" {\n        priority 1\n",
    );
    let checked = check(&path);
    assert_eq!(checked.code, Some(1), "{}", checked.output);
    let errors = error_positions(&checked.output, &path.display().to_string());
    assert!(
        !errors.is_empty(),
        "no FILE:LINE:COL error: {}",
        checked.output
    );
}

#[test]
fn the_proxy_config_of_these_tests_checks_clean() {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = support::proxy::free_addr();
    let path = write_config(
        &dir,
        "standard.kdl",
        &support::proxy::standard_config(addr, addr),
    );
    let checked = check(&path);
    assert_eq!(checked.code, Some(0), "{}", checked.output);
    assert!(error_positions(&checked.output, &path.display().to_string()).is_empty());
}
