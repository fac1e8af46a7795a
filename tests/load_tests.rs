//! The k6 scripts in `load-tests/k6/` cannot run here (k6 is not packaged for Debian), so
//! they are checked the way a reviewer would: they parse as JavaScript modules (`node
//! --check`), and every scenario runs a function the script exports. `load-tests/smoke.sh`
//! drives the same scenarios against a real stack with oha.

use std::path::{Path, PathBuf};
use std::process::Command;

fn k6_scripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("load-tests/k6");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("load-tests/k6")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "js"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty(), "no k6 scripts in {}", dir.display());
    scripts
}

#[test]
fn k6_scripts_parse_as_modules() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for script in k6_scripts() {
        // k6 scripts are ES modules; node needs the .mjs extension to parse them as such.
        let name = script
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let copy = tmp.path().join(format!("{name}.mjs"));
        std::fs::copy(&script, &copy).expect("copy");
        let out = Command::new("node")
            .arg("--check")
            .arg(&copy)
            .output()
            .expect("node not found: run scripts/install-deps.sh");
        assert!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_scenario_runs_an_exported_function() {
    for script in k6_scripts() {
        let text = std::fs::read_to_string(&script).expect("read");
        let execs: Vec<&str> = text
            .split("exec: '")
            .skip(1)
            .filter_map(|rest| rest.split('\'').next())
            .collect();
        for f in &execs {
            assert!(
                text.contains(&format!("export function {f}(")),
                "{}: scenario runs {f}, which is not exported",
                script.display()
            );
        }
        if script.ends_with("protected.js") {
            // Realistic traffic: several scenarios, each user its own address and browser.
            assert!(
                execs.len() >= 5,
                "protected.js has {} scenarios",
                execs.len()
            );
            assert!(text.contains("ramping-arrival-rate"));
            assert!(text.contains("'X-Forwarded-For': ipOf("));
            assert!(text.contains("'User-Agent': uaOf("));
        }
    }
}
