//! How a config comes together, in one place (River's shape): serde defaults, then the file,
//! then environment variables, then command-line flags, and only then validation, once, over
//! the result. Every path that starts a service or checks a file (`authflow check`,
//! `gateway`, `auth`, `up`, the tests) goes through [`load`].
//!
//! Precedence, lowest first: default < file < environment < command line. Each kind of file
//! lists the environment variables it accepts ([`ConfigFile::env_vars`]); every one of them
//! may instead be given as `<NAME>_FILE`, the path of a file holding the value (as container
//! secrets are mounted). A problem with a value that came from the environment or a flag
//! names that origin instead of a line.

use super::source::{ConfigError, ConfigProblem, ConfigSource};
use super::validate::{Problems, Validate};
use serde::de::DeserializeOwned;
use std::path::Path;

/// A config file kind (`gateway.toml`, `auth.toml`).
pub trait ConfigFile: DeserializeOwned + Validate + Sized {
    /// The environment variables this kind of file accepts, applied after the file.
    fn env_vars() -> Vec<EnvVar<Self>>;

    /// Environment variables whose names the file decides (a secret per configured provider,
    /// `AUTHFLOW_IDP_<ID>_CLIENT_SECRET`): read after [`ConfigFile::env_vars`] and the flags,
    /// through `read`
    /// (which also takes `<NAME>_FILE`). Returns the problems as (config key, reason).
    fn env_named_by_file(&mut self, _read: &EnvReader<'_>) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Loads `path` through the one loader: file, then the process environment, validated
    /// once.
    fn from_path(path: &Path) -> Result<Self, ConfigError> {
        load_file(path, &ProcessEnv, |_, _| {})
    }

    /// Loads a config from text (embedded configs, tests), with `env` and `cli` layered on.
    fn from_source(
        src: &ConfigSource,
        env: &dyn Environment,
        cli: impl FnOnce(&mut Self, &mut Overrides),
    ) -> Result<Self, ConfigError> {
        load(src, env, cli)
    }
}

/// Reads one environment variable, or its `<NAME>_FILE`; `Ok(None)` when unset.
pub type EnvReader<'a> = dyn Fn(&str) -> Result<Option<String>, String> + 'a;

/// How an environment variable's value is put into a config of type `T`.
pub type Setter<T> = Box<dyn Fn(&mut T, String)>;

/// One environment variable: its name, the config key it sets, and how.
pub struct EnvVar<T> {
    pub name: &'static str,
    /// The dotted config key the variable overrides (`redis.password`).
    pub key: &'static str,
    pub set: Setter<T>,
}

impl<T> EnvVar<T> {
    pub fn new(
        name: &'static str,
        key: &'static str,
        set: impl Fn(&mut T, String) + 'static,
    ) -> Self {
        EnvVar {
            name,
            key,
            set: Box::new(set),
        }
    }
}

/// Where environment variables are read from: the process, or a map in tests.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for &[(&str, &str)] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// Keys whose value did not come from the file, with where it came from.
#[derive(Debug, Default)]
pub struct Overrides(Vec<(String, String)>);

impl Overrides {
    /// Records that `key` was set by `origin` (`"--redis-url"`).
    pub fn set(&mut self, key: &str, origin: impl Into<String>) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), origin.into()));
    }

    /// The origin of `key` or of the section it is in, if not the file.
    fn origin_of(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| {
                key == k
                    || key
                        .strip_prefix(k.as_str())
                        .is_some_and(|rest| rest.starts_with(['.', '[']))
            })
            .map(|(_, o)| o.as_str())
    }
}

/// Reads `path` and [`load`]s it.
pub fn load_file<T: ConfigFile>(
    path: &Path,
    env: &dyn Environment,
    cli: impl FnOnce(&mut T, &mut Overrides),
) -> Result<T, ConfigError> {
    load(&ConfigSource::read(path)?, env, cli)
}

/// Parses `src`, applies the environment and then `cli`, and validates the result once.
/// Every problem is reported together, in file order; a config with any problem is refused
/// whole.
pub fn load<T: ConfigFile>(
    src: &ConfigSource,
    env: &dyn Environment,
    cli: impl FnOnce(&mut T, &mut Overrides),
) -> Result<T, ConfigError> {
    let mut cfg: T = src.parse()?;
    let mut overrides = Overrides::default();
    let mut out = Vec::new();
    for var in T::env_vars() {
        match read_env(env, var.name) {
            Ok(Some(value)) => {
                (var.set)(&mut cfg, value);
                overrides.set(var.key, format!("environment variable {}", var.name));
            }
            Ok(None) => {}
            Err(reason) => out.push(ConfigProblem {
                file: src.file.clone(),
                line: None,
                key: var.key.to_owned(),
                reason,
            }),
        }
    }
    cli(&mut cfg, &mut overrides);
    // After the flags: a flag may add what names a variable (`authflow up --oidc-issuer`).
    for (key, reason) in cfg.env_named_by_file(&|name| read_env(env, name)) {
        out.push(ConfigProblem {
            file: src.file.clone(),
            line: None,
            key,
            reason,
        });
    }
    let mut problems = Problems::new();
    cfg.validate(&mut problems);
    for (key, reason) in problems.into_vec() {
        out.push(match overrides.origin_of(&key) {
            Some(origin) => ConfigProblem {
                file: src.file.clone(),
                line: None,
                key,
                reason: format!("{reason} (set by {origin})"),
            },
            None => src.problem(&key, reason),
        });
    }
    if out.is_empty() {
        Ok(cfg)
    } else {
        // In file order, as a person fixes them; problems without a line last.
        out.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(ConfigError(out))
    }
}

/// `NAME`, or the contents of the file named by `NAME_FILE` (one trailing newline removed).
/// Empty values count as unset.
fn read_env(env: &dyn Environment, name: &str) -> Result<Option<String>, String> {
    let direct = env.var(name).filter(|v| !v.is_empty());
    let file = env.var(&format!("{name}_FILE")).filter(|v| !v.is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(format!("set {name} or {name}_FILE, not both")),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(text) => {
                let v = text.strip_suffix('\n').unwrap_or(&text);
                let v = v.strip_suffix('\r').unwrap_or(v);
                Ok(Some(v.to_owned()))
            }
            Err(e) => Err(format!("{name}_FILE: cannot read {path:?}: {e}")),
        },
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        name: String,
        #[serde(default)]
        port: u16,
    }
    impl Validate for T {
        fn validate(&self, p: &mut Problems) {
            if self.name.is_empty() {
                p.add("name", "must not be empty");
            }
            if self.port == 0 {
                p.add("port", "must not be 0");
            }
        }
    }
    impl ConfigFile for T {
        fn env_vars() -> Vec<EnvVar<Self>> {
            vec![EnvVar::new("T_NAME", "name", |t: &mut T, v| t.name = v)]
        }
    }

    fn src() -> ConfigSource {
        ConfigSource {
            file: "t.toml".into(),
            text: "name = \"file\"\nport = 0\n".into(),
        }
    }

    #[test]
    fn environment_then_command_line_then_validation() {
        let env: &[(&str, &str)] = &[("T_NAME", "env")];
        let t: T = load(&src(), &env, |t: &mut T, o| {
            t.port = 8;
            o.set("port", "--port");
        })
        .expect("valid");
        assert_eq!((t.name.as_str(), t.port), ("env", 8));
    }

    #[test]
    fn problems_name_the_line_or_the_origin() {
        let env: &[(&str, &str)] = &[];
        let e = load::<T>(&src(), &env, |_, _| {}).expect_err("port 0");
        assert_eq!(e.to_string(), "t.toml:2: port: must not be 0");
        let e = load::<T>(&src(), &env, |t: &mut T, o| {
            t.name.clear();
            o.set("name", "--name");
            t.port = 1;
        })
        .expect_err("empty name");
        assert_eq!(
            e.to_string(),
            "t.toml: name: must not be empty (set by --name)"
        );
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("name");
        std::fs::write(&path, "from-file\n").expect("write");
        let path = path.display().to_string();
        let env: &[(&str, &str)] = &[("T_NAME_FILE", &path)];
        let t: T = load(&src(), &env, |t: &mut T, _| t.port = 1).expect("valid");
        assert_eq!(t.name, "from-file");
        let env: &[(&str, &str)] = &[("T_NAME", "x"), ("T_NAME_FILE", &path)];
        let e = load::<T>(&src(), &env, |t: &mut T, _| t.port = 1).expect_err("both");
        assert!(e.to_string().contains("not both"), "{e}");
    }
}
