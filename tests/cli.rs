//! `authflow check` and `authflow gateway` on good and bad config files.

mod support;

use std::process::Command;
use support::*;

fn run(args: &[&str], config: &std::path::Path) -> std::process::Output {
    Command::new(authflow_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run authflow")
}

#[test]
fn check_accepts_the_shipped_example_config() {
    let out = run(&["check"], std::path::Path::new("conf/gateway.toml"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn check_names_file_line_and_key_of_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string("conf/gateway.toml")
        .expect("example")
        .replace("upstream = \"app\"", "upstream = \"ghost\"")
        .replace("threads = 2", "threads = 0\nthreads_typo = 1");
    let path = write_temp(dir.path(), "bad.toml", &text);
    let out = run(&["check"], &path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .position(|l| l.contains("threads_typo"))
        .map(|i| i + 1)
        .expect("line");
    assert!(
        err.contains(&format!(
            "bad.toml:{line}: threads_typo: unknown field `threads_typo`"
        )),
        "{err}"
    );

    // Fix the syntax-level problem: the semantic ones are reported together.
    let text = text.replace("threads_typo = 1\n", "");
    std::fs::write(&path, &text).expect("write");
    let out = run(&["check"], &path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let ghost = text
        .lines()
        .position(|l| l.contains("ghost"))
        .map(|i| i + 1)
        .expect("line");
    assert!(
        err.contains(&format!(
            "bad.toml:{ghost}: routes[0].upstream: no [[upstreams]] entry is named \"ghost\""
        )),
        "{err}"
    );
    assert!(err.contains("threads: must be between 1 and 256"), "{err}");
}

#[test]
fn gateway_refuses_to_start_on_a_bad_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string("conf/gateway.toml")
        .expect("example")
        .replace("\"1h\"", "\"an hour\"");
    let path = write_temp(dir.path(), "bad.toml", &text);
    let out = run(&["gateway"], &path);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("session.idle_timeout: invalid duration"));
}

#[test]
fn missing_config_file_is_reported() {
    let out = run(&["check"], std::path::Path::new("/nonexistent/gw.toml"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("/nonexistent/gw.toml: cannot read config file"));
}
