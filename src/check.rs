//! `authflow check`: validates config files without starting anything, like `nginx -t`.
//! Given a gateway and an auth file together, it also compares what the two must agree on
//! (the `[session]` contract and the Redis they share) and lists every disagreement. An auth
//! config's pages and mails are loaded as the service would load them: every template (the
//! embedded ones and `[pages] templates_dir`'s) rendered in every language, each error named
//! with its file and line.

use authflow_auth::pages::Pages;
use authflow_auth::AuthConfig;
use authflow_gateway::GatewayConfig;
use authflow_shared::config::ConfigFile;
use authflow_shared::config::{ConfigError, ConfigSource, ProcessEnv};
use authflow_shared::contract::SessionContract;
use std::path::{Path, PathBuf};

/// A config file, loaded and validated, with its text kept for line numbers (an auth
/// config with its pages, built and checked).
enum Loaded {
    Gateway(ConfigSource, Box<GatewayConfig>),
    Auth(ConfigSource, Box<AuthConfig>, Box<Pages>),
}

/// Problems found by `check`, one line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct CheckFailed(pub Vec<String>);

/// Checks one file, or a gateway and an auth file together (in either order). Returns the
/// lines to print on success.
/// The effective config of each file (defaults filled in, environment applied, secrets
/// redacted), as TOML, after the same validation as [`run`] (like `nginx -T`).
pub fn print(paths: &[PathBuf]) -> Result<Vec<String>, CheckFailed> {
    let mut out = run(paths)?
        .into_iter()
        .map(|l| format!("# {l}"))
        .collect::<Vec<_>>();
    for path in paths {
        let loaded = load(path)?;
        let (file, value) = match &loaded {
            Loaded::Gateway(src, cfg) => (&src.file, toml::Value::try_from(cfg.as_ref())),
            Loaded::Auth(src, cfg, _) => (&src.file, toml::Value::try_from(cfg.as_ref())),
        };
        let mut value = value.map_err(|e| CheckFailed(vec![format!("{}: {e}", file.display())]))?;
        redact(&mut value);
        out.push(format!(
            "\n# {}: effective configuration (defaults filled in, secrets redacted)",
            file.display()
        ));
        out.push(toml::to_string_pretty(&value).unwrap_or_default());
    }
    Ok(out)
}

/// Secrets out of a printed config: password and key values, and passwords inside URLs.
fn redact(v: &mut toml::Value) {
    const SECRET_KEYS: [&str; 4] = ["password", "smtp_password", "anon_key", "encryption_key"];
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                match v {
                    toml::Value::String(s)
                        if SECRET_KEYS.contains(&k.as_str()) && !s.is_empty() =>
                    {
                        *s = "<redacted>".into();
                    }
                    toml::Value::String(s) if k.ends_with("url") => {
                        *s = authflow_shared::config::redact_url(s);
                    }
                    other => redact(other),
                }
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

pub fn run(paths: &[PathBuf]) -> Result<Vec<String>, CheckFailed> {
    if paths.is_empty() || paths.len() > 2 {
        return Err(CheckFailed(vec![
            "give one config file, or a gateway and an auth config to compare".into(),
        ]));
    }
    let mut loaded = Vec::new();
    let mut failures = Vec::new();
    for path in paths {
        match load(path) {
            Ok(l) => loaded.push(l),
            Err(e) => failures.extend(e.0),
        }
    }
    if !failures.is_empty() {
        return Err(CheckFailed(failures));
    }
    let mut out: Vec<String> = loaded.iter().flat_map(summary).collect();
    if let [a, b] = loaded.as_slice() {
        match (a, b) {
            (Loaded::Gateway(gs, g), Loaded::Auth(as_, au, _))
            | (Loaded::Auth(as_, au, _), Loaded::Gateway(gs, g)) => {
                let diffs = compare(gs, g, as_, au);
                if !diffs.is_empty() {
                    return Err(CheckFailed(diffs));
                }
                out.push("gateway and auth configs agree on [session] and [redis] url".into());
            }
            _ => {
                return Err(CheckFailed(vec![
                    "to compare, give one gateway config and one auth config".into(),
                ]))
            }
        }
    }
    Ok(out)
}

/// Loads `path` as the kind of config its keys say it is; an auth config's pages too.
fn load(path: &Path) -> Result<Loaded, CheckFailed> {
    let lines = |e: ConfigError| CheckFailed(e.0.iter().map(|p| p.to_string()).collect());
    let src = ConfigSource::read(path).map_err(lines)?;
    if authflow_auth::config::looks_like_auth_config(&src.text) {
        let cfg = AuthConfig::from_source(&src, &ProcessEnv, |_, _| {}).map_err(lines)?;
        let pages = Pages::new(&cfg.pages, cfg.public_url()).map_err(|e| CheckFailed(e.0))?;
        Ok(Loaded::Auth(src, Box::new(cfg), Box::new(pages)))
    } else {
        let cfg = GatewayConfig::from_source(&src, &ProcessEnv, |_, _| {}).map_err(lines)?;
        Ok(Loaded::Gateway(src, Box::new(cfg)))
    }
}

/// The providers' issuers that cannot be reached from here (warnings, never errors).
fn provider_warnings(cfg: &AuthConfig) -> Vec<String> {
    if cfg.identity.providers.is_empty() {
        return Vec::new();
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(authflow_auth::sso::reachability(&cfg.identity)),
        Err(e) => vec![format!("providers not checked: {e}")],
    }
}

fn summary(l: &Loaded) -> Vec<String> {
    match l {
        Loaded::Gateway(src, cfg) => {
            let file = src.file.display();
            let mut out: Vec<String> = cfg
                .warnings()
                .into_iter()
                .map(|w| format!("warning: {file}: {w}"))
                .collect();
            out.push(format!(
                "{file}: ok (gateway config: {} routes, {} upstreams)",
                cfg.routes.len(),
                cfg.upstreams.len()
            ));
            out
        }
        Loaded::Auth(src, cfg, pages) => {
            let file = src.file.display();
            let mut out: Vec<String> = pages
                .warnings()
                .iter()
                .map(|w| format!("warning: {file}: {w}"))
                .collect();
            out.extend(
                provider_warnings(cfg)
                    .into_iter()
                    .map(|w| format!("warning: {file}: {w}")),
            );
            let overridden = match pages.overridden() {
                [] => String::new(),
                names => format!(", overridden: {}", names.join(" ")),
            };
            out.push(format!(
                "{file}: ok (auth config: provider {:?}; pages rendered in {}{overridden})",
                cfg.provider,
                pages.languages().join(", ")
            ));
            out
        }
    }
}

/// Every disagreement, as `key differs: gateway V (file:line), auth V (file:line)`.
fn compare(
    gs: &ConfigSource,
    g: &GatewayConfig,
    as_: &ConfigSource,
    a: &AuthConfig,
) -> Vec<String> {
    let mut out: Vec<String> = contract_differences(&g.session, &a.session)
        .into_iter()
        .map(|(key, gv, av)| differs(&key, gs, &gv, as_, &av))
        .collect();
    if g.redis.url != a.redis.url {
        out.push(differs(
            "redis.url",
            gs,
            &format!("{:?}", g.redis.redacted_url()),
            as_,
            &format!("{:?}", a.redis.redacted_url()),
        ));
    }
    out
}

fn contract_differences(g: &SessionContract, a: &SessionContract) -> Vec<(String, String, String)> {
    g.differences(a)
        .into_iter()
        .map(|d| (format!("session.{}", d.key), d.left, d.right))
        .collect()
}

fn differs(key: &str, gs: &ConfigSource, gv: &str, as_: &ConfigSource, av: &str) -> String {
    format!(
        "{key} differs: gateway {gv} ({}), auth {av} ({})",
        whereabouts(gs, key),
        whereabouts(as_, key)
    )
}

/// `file:line` of `key`, or `file, default` when the file does not set it.
fn whereabouts(src: &ConfigSource, key: &str) -> String {
    let file = src.file.display();
    match src.locate_exact(key) {
        Some(line) => format!("{file}:{line}"),
        None => format!("{file}, default"),
    }
}
