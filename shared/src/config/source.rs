//! A config file's text and the problems found in it, each pinned to the file, the line and
//! the key.

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config file. Displays as `file:line: key: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigProblem {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Dotted path of the key, e.g. `routes[1].upstream`.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.reason)
        } else {
            write!(f, ": {}: {}", self.key, self.reason)
        }
    }
}

/// Every problem found in a config file; a config with any problem is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl ConfigError {
    /// Every problem on one line, `; `-separated (for a log line).
    pub fn one_line(&self) -> String {
        self.0
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A config file's text, kept so that problems found after parsing can still be pinned to
/// the line of the key they are about.
pub struct ConfigSource {
    pub file: PathBuf,
    pub text: String,
}

impl ConfigSource {
    /// Reads `path`; an unreadable file is a [`ConfigError`] naming it.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        std::fs::read_to_string(path)
            .map(|text| ConfigSource {
                file: path.to_owned(),
                text,
            })
            .map_err(|e| {
                ConfigError(vec![ConfigProblem {
                    file: path.to_owned(),
                    line: None,
                    key: String::new(),
                    reason: format!("cannot read config file: {e}"),
                }])
            })
    }

    /// Deserializes the text into `T`, reporting the key path and line of the first error
    /// (syntax, unknown key, wrong type, bad duration...).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let de = toml::Deserializer::new(&self.text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let line = inner.span().map(|s| self.line_of(s.start));
            let key = if key == "." { String::new() } else { key };
            ConfigError(vec![ConfigProblem {
                file: self.file.clone(),
                line,
                key,
                reason: inner.message().trim().to_owned(),
            }])
        })
    }

    /// A problem about `key` (a path like `routes[1].upstream`), pinned to its line.
    pub fn problem(&self, key: &str, reason: impl Into<String>) -> ConfigProblem {
        ConfigProblem {
            file: self.file.clone(),
            line: self.locate(key),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// The 1-based line where `key` is written, or where its nearest written parent is.
    pub fn locate(&self, key: &str) -> Option<usize> {
        let doc = toml_edit::ImDocument::parse(self.text.as_str()).ok()?;
        let mut item = doc.as_item();
        let mut best = None;
        for seg in segments(key) {
            let next = match seg {
                Segment::Key(k) => {
                    if let Some((key, _)) = item.as_table_like().and_then(|t| t.get_key_value(k)) {
                        best = key.span().or(best);
                    }
                    item.get(k)
                }
                Segment::Index(i) => item.get(i),
            };
            match next {
                Some(n) => {
                    item = n;
                    best = n
                        .span()
                        .or_else(|| n.as_table().and_then(|t| t.span()))
                        .or(best);
                }
                None => break,
            }
        }
        best.map(|s| self.line_of(s.start))
    }

    /// The 1-based line where `key` itself is written; `None` when the file leaves it to its
    /// default.
    pub fn locate_exact(&self, key: &str) -> Option<usize> {
        let doc = toml_edit::ImDocument::parse(self.text.as_str()).ok()?;
        let mut item = doc.as_item();
        let mut span = None;
        for seg in segments(key) {
            match seg {
                Segment::Key(k) => {
                    let (k, v) = item.as_table_like()?.get_key_value(k)?;
                    span = k.span().or_else(|| v.span());
                    item = v;
                }
                Segment::Index(i) => {
                    item = item.get(i)?;
                    span = item.span().or(span);
                }
            }
        }
        span.map(|s| self.line_of(s.start))
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `routes[1].upstream` into `routes`, `1`, `upstream`.
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(Segment::Key(&rest[..open]));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(i) = stripped[..close].parse() {
                    out.push(Segment::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else if !rest.is_empty() {
            out.push(Segment::Key(rest));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
        #[serde(default)]
        items: Vec<Item>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        d: HumanDuration,
    }

    fn src(text: &str) -> ConfigSource {
        ConfigSource {
            file: "x.toml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn parse_errors_name_key_and_line() {
        let e = src("a = 1\n\n[[items]]\nd = \"1s\"\n[[items]]\nd = \"soon\"\n")
            .parse::<T>()
            .unwrap_err();
        let p = &e.0[0];
        assert_eq!(p.key, "items[1].d");
        assert_eq!(p.line, Some(6));
        assert!(p.reason.contains("invalid duration"), "{}", p.reason);
        assert!(e.to_string().starts_with("x.toml:6: items[1].d: "), "{e}");

        let e = src("a = 1\nb = 2\n").parse::<T>().unwrap_err();
        assert_eq!(e.0[0].line, Some(2));
        assert!(e.0[0].reason.contains("unknown field"), "{}", e.0[0].reason);
    }

    #[test]
    fn locate_finds_nested_keys() {
        let s = src("a = 1\n[[items]]\nd = \"1s\"\n\n[[items]]\n# c\nd = \"2s\"\n");
        assert_eq!(s.locate("a"), Some(1));
        assert_eq!(s.locate("items[1].d"), Some(7));
        assert_eq!(s.locate("items[0]"), Some(2));
        assert_eq!(s.locate_exact("items[1].d"), Some(7));
        assert_eq!(s.locate_exact("items[1].e"), None);
        assert_eq!(s.locate_exact("b"), None);
        assert_eq!(
            s.problem("items[1].d", "bad").to_string(),
            "x.toml:7: items[1].d: bad"
        );
    }
}
