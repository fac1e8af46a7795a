//! The template engine behind the pages and the mails (minijinja): the embedded templates,
//! an operator's `templates_dir` tried before them, the catalogues, and the check that
//! renders every template in every language before a set of templates is used.
//!
//! Escaping is chosen by the template's name: `.html` templates escape every `{{ value }}`
//! for HTML; `.txt` (plain-text mail) and `.css` templates do not, since a plain-text
//! mail shown with `&amp;` in its links would be broken, not safer. What lands in a `.css`
//! template (the colours) is validated by the config. Undefined variables are errors
//! (strict), so a typo in an override fails the check instead of rendering empty.

use super::i18n::{self, Catalogue, Catalogues};
use minijinja::value::Kwargs;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Every template the binary ships, by name. An operator's file of the same name in
/// `templates_dir` replaces one; `authflow pages export` writes them all out.
pub const EMBEDDED: [(&str, &str); 27] = [
    ("layout.html", include_str!("../../templates/layout.html")),
    ("_alerts.html", include_str!("../../templates/_alerts.html")),
    ("signin.html", include_str!("../../templates/signin.html")),
    ("signup.html", include_str!("../../templates/signup.html")),
    (
        "check_email.html",
        include_str!("../../templates/check_email.html"),
    ),
    (
        "forgot_password.html",
        include_str!("../../templates/forgot_password.html"),
    ),
    (
        "reset_password.html",
        include_str!("../../templates/reset_password.html"),
    ),
    (
        "verified.html",
        include_str!("../../templates/verified.html"),
    ),
    (
        "signed_out.html",
        include_str!("../../templates/signed_out.html"),
    ),
    ("devices.html", include_str!("../../templates/devices.html")),
    ("link.html", include_str!("../../templates/link.html")),
    (
        "mail/factors_changed.html",
        include_str!("../../templates/mail/factors_changed.html"),
    ),
    (
        "mail/factors_changed.txt",
        include_str!("../../templates/mail/factors_changed.txt"),
    ),
    (
        "mail/recovery_code_used.html",
        include_str!("../../templates/mail/recovery_code_used.html"),
    ),
    (
        "mail/recovery_code_used.txt",
        include_str!("../../templates/mail/recovery_code_used.txt"),
    ),
    ("mfa.html", include_str!("../../templates/mfa.html")),
    (
        "mfa_setup.html",
        include_str!("../../templates/mfa_setup.html"),
    ),
    (
        "recovery_codes.html",
        include_str!("../../templates/recovery_codes.html"),
    ),
    ("authflow.css", include_str!("../../templates/authflow.css")),
    (
        "mail/layout.html",
        include_str!("../../templates/mail/layout.html"),
    ),
    (
        "mail/layout.txt",
        include_str!("../../templates/mail/layout.txt"),
    ),
    (
        "mail/verification.html",
        include_str!("../../templates/mail/verification.html"),
    ),
    (
        "mail/verification.txt",
        include_str!("../../templates/mail/verification.txt"),
    ),
    (
        "mail/already_registered.html",
        include_str!("../../templates/mail/already_registered.html"),
    ),
    (
        "mail/already_registered.txt",
        include_str!("../../templates/mail/already_registered.txt"),
    ),
    (
        "mail/password_reset.html",
        include_str!("../../templates/mail/password_reset.html"),
    ),
    (
        "mail/password_reset.txt",
        include_str!("../../templates/mail/password_reset.txt"),
    ),
];

/// Largest template or catalogue file read from `templates_dir`.
const MAX_FILE: u64 = 256 * 1024;

/// Why a set of templates cannot be used: one line per problem, `file:line: what`.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct TemplateErrors(pub Vec<String>);

/// The templates and catalogues in force (built whole, checked, then swapped in by a reload).
pub struct Templates {
    env: Environment<'static>,
    dir: Option<PathBuf>,
    catalogues: Arc<Catalogues>,
    /// Templates of `templates_dir` that replace embedded ones.
    overridden: Vec<String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("dir", &self.dir)
            .field("overridden", &self.overridden)
            .finish()
    }
}

impl Templates {
    /// The embedded templates and catalogues, with `dir`'s (if any) tried first. Every
    /// embedded template name is loaded (and so parsed) here; syntax errors and unreadable
    /// catalogues come back as [`TemplateErrors`]. Rendering is checked by the caller
    /// ([`super::Pages::new`] renders every page and mail in every language).
    pub fn load(dir: Option<&Path>, default_language: &str) -> Result<Templates, TemplateErrors> {
        let mut problems = Vec::new();
        let catalogues = load_catalogues(dir, default_language, &mut problems);
        let catalogues = Arc::new(catalogues);
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        // Keep the template's trailing newline (mail bodies end with one).
        env.set_keep_trailing_newline(true);
        let owned_dir = dir.map(Path::to_path_buf);
        env.set_loader(move |name| load_source(owned_dir.as_deref(), name));
        let cats = catalogues.clone();
        env.add_function(
            "t",
            move |state: &State, key: &str, kwargs: Kwargs| -> Result<String, Error> {
                translate(&cats, state, key, kwargs)
            },
        );
        let mut overridden = Vec::new();
        for (name, _) in EMBEDDED {
            if let Some(dir) = dir {
                if dir.join(name).is_file() {
                    overridden.push(name.to_owned());
                }
            }
            if let Err(e) = env.get_template(name) {
                problems.push(describe(dir, &e));
            }
        }
        if !problems.is_empty() {
            return Err(TemplateErrors(problems));
        }
        Ok(Templates {
            env,
            dir: dir.map(Path::to_path_buf),
            catalogues,
            overridden,
        })
    }

    pub fn catalogues(&self) -> &Catalogues {
        &self.catalogues
    }

    /// The embedded templates an operator's file replaces.
    pub fn overridden(&self) -> &[String] {
        &self.overridden
    }

    /// Renders template `name` with `ctx`; the error names the file and line.
    pub fn render(&self, name: &str, ctx: Value) -> Result<String, String> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| describe(self.dir.as_deref(), &e))
    }

    /// The message `key` in `lang`, outside a template (mail subjects).
    pub fn message(&self, lang: &str, key: &str) -> Result<String, String> {
        self.catalogues
            .format(lang, key, None, &[])
            .map_err(|e| e.to_string())
    }
}

/// `t("key", name=value, count=n)`: the message in the template's `lang`.
fn translate(cats: &Catalogues, state: &State, key: &str, kwargs: Kwargs) -> Result<String, Error> {
    let lang = state
        .lookup("lang")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| cats.default_language().to_owned());
    let names: Vec<String> = kwargs.args().map(str::to_owned).collect();
    let mut args = Vec::with_capacity(names.len());
    let mut count = None;
    for name in names {
        let v: Value = kwargs.get(&name)?;
        if name == "count" {
            count = v.as_i64();
        }
        args.push((name, v.to_string()));
    }
    kwargs.assert_all_used()?;
    cats.format(&lang, key, count, &args)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

/// A template name safe to look up under `templates_dir`: relative, `/`-separated segments
/// of letters, digits, `-`, `_` and `.`, none starting with a dot.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
}

/// The loader: `templates_dir/name` if it is a file, else the embedded template.
fn load_source(dir: Option<&Path>, name: &str) -> Result<Option<String>, Error> {
    if let Some(dir) = dir.filter(|_| safe_name(name)) {
        let path = dir.join(name);
        if path.is_file() {
            return read_limited(&path).map(Some).map_err(|why| {
                Error::new(
                    ErrorKind::TemplateNotFound,
                    format!("{}: {why}", path.display()),
                )
            });
        }
    }
    Ok(EMBEDDED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| (*text).to_owned()))
}

fn read_limited(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE {
        return Err(format!("larger than {MAX_FILE} bytes"));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// Where template `name` comes from, as `check` names it.
fn origin(dir: Option<&Path>, name: &str) -> String {
    match dir {
        Some(d) if safe_name(name) && d.join(name).is_file() => d.join(name).display().to_string(),
        _ => format!("<embedded templates/{name}>"),
    }
}

/// `file:line: what went wrong` for a template error.
fn describe(dir: Option<&Path>, e: &Error) -> String {
    let file = e
        .name()
        .map(|n| origin(dir, n))
        .unwrap_or_else(|| "<template>".into());
    let what = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    match e.line() {
        Some(line) => format!("{file}:{line}: {what}"),
        None => format!("{file}: {what}"),
    }
}

/// The shipped catalogues, each with the operator's file of the same language merged over
/// it, plus the operator's other languages.
fn load_catalogues(dir: Option<&Path>, default: &str, problems: &mut Vec<String>) -> Catalogues {
    let mut by_lang: BTreeMap<String, Catalogue> = BTreeMap::new();
    for (lang, text) in i18n::SHIPPED {
        match Catalogue::parse(text) {
            Ok(c) => {
                by_lang.insert(lang.to_owned(), c);
            }
            Err(e) => problems.push(format!("<embedded templates/i18n/{lang}.toml>: {e}")),
        }
    }
    if let Some(dir) = dir.map(|d| d.join("i18n")).filter(|d| d.is_dir()) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for path in files
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        {
            let lang = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            if !i18n::valid_tag(lang) {
                problems.push(format!(
                    "{}: the file name must be a language tag like de.toml or pt-BR.toml",
                    path.display()
                ));
                continue;
            }
            match read_limited(path).and_then(|t| Catalogue::parse(&t)) {
                Ok(c) => by_lang.entry(lang.to_owned()).or_default().merge(c),
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
    }
    if !by_lang.contains_key(default) {
        problems.push(format!(
            "pages.default_language: no catalogue for {default:?} (have {})",
            by_lang.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    Catalogues::new(by_lang, default.to_owned())
}

/// Writes the embedded templates and catalogues under `dir` (a starting point for
/// `templates_dir`), refusing to replace a file that is there. Returns the files written.
pub fn export(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let files = EMBEDDED
        .iter()
        .map(|(n, t)| (dir.join(n), *t))
        .chain(
            i18n::SHIPPED
                .iter()
                .map(|(l, t)| (dir.join("i18n").join(format!("{l}.toml")), *t)),
        )
        .collect::<Vec<_>>();
    if let Some((p, _)) = files.iter().find(|(p, _)| p.exists()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists: export into an empty directory", p.display()),
        ));
    }
    let mut written = Vec::new();
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_directory_are_never_read() {
        for bad in [
            "../x.html",
            "/etc/passwd",
            "a//b",
            ".hidden.html",
            "a/../b",
            "a\\b",
        ] {
            assert!(!safe_name(bad), "{bad}");
        }
        assert!(safe_name("mail/verification.txt"));
    }

    #[test]
    fn html_escapes_and_text_does_not() {
        let t = Templates::load(None, "en").expect("embedded");
        let ctx = minijinja::context! { a => "<b>&" };
        let mut env = t.env.clone();
        env.add_template("x.html", "{{ a }}").expect("html");
        env.add_template("x.txt", "{{ a }}").expect("txt");
        assert_eq!(
            env.get_template("x.html")
                .and_then(|t| t.render(&ctx))
                .expect("r"),
            "&lt;b&gt;&amp;"
        );
        assert_eq!(
            env.get_template("x.txt")
                .and_then(|t| t.render(&ctx))
                .expect("r"),
            "<b>&"
        );
    }
}
