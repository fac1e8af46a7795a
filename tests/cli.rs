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

fn check(files: &[&std::path::Path]) -> std::process::Output {
    Command::new(authflow_bin())
        .arg("check")
        .args(files)
        .output()
        .expect("run authflow")
}

#[test]
fn shipped_gateway_and_auth_configs_agree() {
    for (gw, auth) in [
        ("conf/gateway.toml", "conf/auth.toml"),
        ("conf/dev/gateway.toml", "conf/dev/auth.toml"),
    ] {
        let out = check(&[gw.as_ref(), auth.as_ref()]);
        assert!(
            out.status.success(),
            "{gw} + {auth}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("agree on [session]"));
    }
}

/// 1-based line of the first line of `text` that starts with `prefix`.
fn line_starting(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .map(|i| i + 1)
        .expect("line")
}

#[test]
fn check_of_two_files_reports_every_disagreement_with_both_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw_text = std::fs::read_to_string("conf/gateway.toml").expect("example");
    let auth_text = std::fs::read_to_string("conf/auth.toml")
        .expect("example")
        .replace(
            "cookie_name = \"__Host-authflow_session\"",
            "cookie_name = \"__Host-other\"",
        )
        .replace("idle_timeout = \"1h\"", "idle_timeout = \"30m\"")
        .replace(
            "components = [\"ip\", \"user_agent\"]",
            "components = [\"ip\"]",
        );
    let gw = write_temp(dir.path(), "gateway.toml", &gw_text);
    let auth = write_temp(dir.path(), "auth.toml", &auth_text);
    // Either order: the kinds are told from the files' keys.
    for files in [[&gw, &auth], [&auth, &gw]] {
        let out = check(&[files[0], files[1]]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let (g, a) = (gw.display(), auth.display());
        let expect = [
            format!(
                "session.cookie_name differs: gateway \"__Host-authflow_session\" ({g}:{}), auth \"__Host-other\" ({a}:{})",
                line_starting(&gw_text, "cookie_name"),
                line_starting(&auth_text, "cookie_name")
            ),
            format!(
                "session.idle_timeout differs: gateway \"3600s\" ({g}:{}), auth \"1800s\" ({a}:{})",
                line_starting(&gw_text, "idle_timeout"),
                line_starting(&auth_text, "idle_timeout")
            ),
            "session.fingerprint.components differs:".to_owned(),
        ];
        for e in &expect {
            assert!(err.contains(e.as_str()), "missing {e:?} in:\n{err}");
        }
        assert_eq!(err.lines().count(), 3, "{err}");
    }
}

#[test]
fn a_setting_left_to_its_default_is_named_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw_text = std::fs::read_to_string("conf/dev/gateway.toml")
        .expect("example")
        .replace("cookie_secure = false\n", "");
    let gw = write_temp(dir.path(), "gateway.toml", &gw_text);
    let out = check(&[&gw, "conf/dev/auth.toml".as_ref()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "session.cookie_secure differs: gateway true ({}, default), auth false (conf/dev/auth.toml:",
            gw.display()
        )),
        "{err}"
    );
}

#[test]
fn two_configs_of_the_same_kind_cannot_be_compared() {
    let out = check(&[
        "conf/gateway.toml".as_ref(),
        "conf/dev/gateway.toml".as_ref(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("one gateway config and one auth config"));
}

#[test]
fn a_problem_in_a_value_from_the_environment_names_the_variable() {
    let out = Command::new(authflow_bin())
        .args(["check", "conf/auth.toml"])
        .env("AUTHFLOW_DATABASE_URL", "mysql://nope")
        .output()
        .expect("run authflow");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("conf/auth.toml: database.url: must start with sqlite: or postgres:// (set by environment variable AUTHFLOW_DATABASE_URL)"),
        "{err}"
    );
}

#[test]
fn check_print_shows_the_effective_config_with_secrets_redacted() {
    let out = Command::new(authflow_bin())
        .args(["check", "--print", "conf/gateway.toml", "conf/auth.toml"])
        .env("AUTHFLOW_REDIS_PASSWORD", "hunter2-secret")
        .env("AUTHFLOW_REDIS_URL", "redis://:url-secret@redis:6379")
        .output()
        .expect("run authflow");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("hunter2-secret") && !text.contains("url-secret"),
        "{text}"
    );
    // Defaults that neither file names are filled in, and what the environment set shows.
    for line in [
        "max_clients = 100000",
        "log_format = \"text\"",
        "password = \"<redacted>\"",
        "url = \"redis://:***@redis:6379\"",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    // What it prints is a config the binary accepts again.
    let gateway_part = text
        .split("# conf/gateway.toml: effective configuration")
        .nth(1)
        .and_then(|rest| rest.split("\n# conf/auth.toml").next())
        .expect("gateway part");
    let body = gateway_part.split_once('\n').map_or("", |(_, b)| b);
    let parsed: Result<authflow_gateway::GatewayConfig, _> = toml::from_str(body);
    assert!(parsed.is_ok(), "{parsed:?}");
}

#[test]
fn check_refuses_roles_on_a_public_route_and_bad_role_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = std::fs::read_to_string("conf/gateway.toml").expect("example");
    text.push_str(
        "\n[[routes]]\nprefix = \"/open/\"\nupstream = \"app\"\nauth = \"public\"\nroles = [\"admin\"]\n\
         \n[[routes]]\nprefix = \"/ops/\"\nupstream = \"app\"\nauth = \"required\"\nroles_all = [\"ops\", \"bad role\"]\n",
    );
    let path = write_temp(dir.path(), "roles.toml", &text);
    let out = run(&["check"], &path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("roles_all[1]") && err.contains("bad role"),
        "{err}"
    );
    assert!(
        err.contains(".roles:") && err.contains("a public route checks no session"),
        "{err}"
    );
}

#[test]
fn check_refuses_a_second_factor_on_a_public_route_and_a_max_age_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = std::fs::read_to_string("conf/gateway.toml").expect("example");
    text.push_str(
        "\n[[routes]]\nprefix = \"/open/\"\nupstream = \"app\"\nauth = \"public\"\nmfa = true\n\
         \n[[routes]]\nprefix = \"/half/\"\nupstream = \"app\"\nauth = \"required\"\nmfa_max_age = \"15m\"\n\
         \n[[routes]]\nprefix = \"/fine/\"\nupstream = \"app\"\nauth = \"required\"\nmfa = true\nmfa_max_age = \"15m\"\n",
    );
    let path = write_temp(dir.path(), "mfa.toml", &text);
    let out = run(&["check"], &path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    // Each problem names the file, the line of the key, and the key.
    let public = line_starting(&text, "mfa = true");
    assert!(
        err.contains(&format!("{file}:{public}: routes["))
            && err.contains("].mfa: a public route checks no session"),
        "{err}"
    );
    let half = line_starting(&text, "mfa_max_age");
    assert!(
        err.contains(&format!("{file}:{half}: routes["))
            && err.contains("].mfa_max_age: needs mfa = true"),
        "{err}"
    );
    let problems = err
        .lines()
        .filter(|l| l.starts_with(&format!("error: {file}:")))
        .count();
    assert_eq!(problems, 2, "only the two bad routes: {err}");
}
