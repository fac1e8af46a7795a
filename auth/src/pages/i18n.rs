//! Message catalogues: one TOML file per language (`templates/i18n/<lang>.toml`, the
//! embedded English and German, plus any in `[pages] templates_dir/i18n/`), the language a
//! request gets from its `Accept-Language`, and the lookup the templates' `t()` makes.
//!
//! Why TOML tables and not Fluent: every message here is a sentence with at most a few
//! `{name}` placeholders, and the only grammar needed is "1 day / 5 days", which a `one` /
//! `other` table covers for English and German (and most European languages). Fluent's crates
//! would bring a second syntax for operators to learn, Unicode isolation marks around every
//! placeholder (which end up in plain-text mail) and CLDR plural data for dozens of
//! languages we do not ship. The cost: a language with more plural forms (Polish, Arabic)
//! gets only `zero` / `one` / `other` here.

use std::collections::BTreeMap;

/// The languages shipped in the binary, English first (the reference and the fallback).
pub const SHIPPED: [(&str, &str); 2] = [
    ("en", include_str!("../../templates/i18n/en.toml")),
    ("de", include_str!("../../templates/i18n/de.toml")),
];

/// The reference language: every catalogue should have its keys, and a message missing in
/// another language is taken from it.
pub const REFERENCE: &str = "en";

/// The plural forms a message table may have.
const PLURAL_FORMS: [&str; 3] = ["zero", "one", "other"];

/// One message: a sentence, or its plural forms (`other` always present).
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Text(String),
    Plural(BTreeMap<String, String>),
}

impl Message {
    /// The form for `count`: `zero` for 0 when given, `one` for 1, else `other`.
    fn form(&self, count: Option<i64>) -> &str {
        match self {
            Message::Text(s) => s,
            Message::Plural(forms) => {
                let category = match count {
                    Some(0) if forms.contains_key("zero") => "zero",
                    Some(1) | Some(-1) => "one",
                    _ => "other",
                };
                forms
                    .get(category)
                    .or_else(|| forms.get("other"))
                    .map(String::as_str)
                    .unwrap_or_default()
            }
        }
    }
}

/// Every message of one language, by dotted key (`signin.title`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalogue {
    messages: BTreeMap<String, Message>,
}

impl Catalogue {
    /// Reads a catalogue: nested tables become dotted keys; a table of only plural forms
    /// (with `other`) is one plural message.
    pub fn parse(text: &str) -> Result<Catalogue, String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            match line {
                Some(l) => format!("line {l}: {}", e.message()),
                None => e.message().to_owned(),
            }
        })?;
        let mut messages = BTreeMap::new();
        flatten("", &table, &mut messages)?;
        Ok(Catalogue { messages })
    }

    /// `other`'s messages over this one's (an operator's file changes a few strings).
    pub fn merge(&mut self, other: Catalogue) {
        self.messages.extend(other.messages);
    }

    pub fn get(&self, key: &str) -> Option<&Message> {
        self.messages.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.messages.keys().map(String::as_str)
    }
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut BTreeMap<String, Message>,
) -> Result<(), String> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::String(s) => {
                out.insert(key, Message::Text(s.clone()));
            }
            toml::Value::Table(t) if is_plural(t) => {
                let forms = t
                    .iter()
                    .map(|(f, v)| match v {
                        toml::Value::String(s) => Ok((f.clone(), s.clone())),
                        _ => Err(format!("{key}.{f}: a plural form must be a string")),
                    })
                    .collect::<Result<_, _>>()?;
                out.insert(key, Message::Plural(forms));
            }
            toml::Value::Table(t) => flatten(&key, t, out)?,
            _ => return Err(format!("{key}: a message must be a string or a table")),
        }
    }
    Ok(())
}

fn is_plural(t: &toml::Table) -> bool {
    t.contains_key("other") && t.keys().all(|k| PLURAL_FORMS.contains(&k.as_str()))
}

/// Whether `tag` looks like a language tag we can name a file after: `de`, `pt-BR`.
pub fn valid_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The catalogues of every language the pages speak.
#[derive(Debug, Clone)]
pub struct Catalogues {
    by_lang: BTreeMap<String, Catalogue>,
    default: String,
}

/// A message could not be produced.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error("no message {0:?} in the catalogues")]
    Missing(String),
    #[error("message {key:?} ({lang}) uses {{{name}}}, which the template does not give")]
    Placeholder {
        key: String,
        lang: String,
        name: String,
    },
}

impl Catalogues {
    pub fn new(by_lang: BTreeMap<String, Catalogue>, default: String) -> Self {
        Catalogues { by_lang, default }
    }

    /// The languages there are catalogues for.
    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.by_lang.keys().map(String::as_str)
    }

    pub fn default_language(&self) -> &str {
        &self.default
    }

    /// `(language, key)` for every key the reference catalogue has and another lacks.
    pub fn missing_keys(&self) -> Vec<(String, String)> {
        let Some(reference) = self.by_lang.get(REFERENCE) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (lang, cat) in self.by_lang.iter().filter(|(l, _)| *l != REFERENCE) {
            for key in reference.keys().filter(|k| cat.get(k).is_none()) {
                out.push((lang.clone(), key.to_owned()));
            }
        }
        out
    }

    /// The message `key` in `lang` (else in the default language, else in English), with
    /// its `{name}` placeholders filled from `args` and the plural form chosen by `count`.
    pub fn format(
        &self,
        lang: &str,
        key: &str,
        count: Option<i64>,
        args: &[(String, String)],
    ) -> Result<String, MessageError> {
        let (found_in, message) = [lang, self.default.as_str(), REFERENCE]
            .into_iter()
            .find_map(|l| Some((l, self.by_lang.get(l)?.get(key)?)))
            .ok_or_else(|| MessageError::Missing(key.to_owned()))?;
        fill(message.form(count), args).map_err(|name| MessageError::Placeholder {
            key: key.to_owned(),
            lang: found_in.to_owned(),
            name,
        })
    }

    /// The language to answer a request in: the first language of its `Accept-Language`
    /// (by q-value, then order) that we have, exactly or by its primary subtag (`de-CH`
    /// gets `de`); else the default.
    pub fn negotiate(&self, accept_language: Option<&str>) -> &str {
        for tag in preferred_languages(accept_language.unwrap_or_default()) {
            if tag == "*" {
                break;
            }
            let primary = tag.split('-').next().unwrap_or_default();
            let found = self
                .by_lang
                .keys()
                .find(|l| l.eq_ignore_ascii_case(&tag))
                .or_else(|| {
                    self.by_lang
                        .keys()
                        .find(|l| l.eq_ignore_ascii_case(primary))
                });
            if let Some(l) = found {
                return l;
            }
        }
        &self.default
    }
}

/// Replaces each `{name}` with its argument; `{{` and `}}` are literal braces. `Err(name)`
/// when an argument is missing.
fn fill(text: &str, args: &[(String, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        match (tail.starts_with('{'), tail.find('}')) {
            (true, Some(end)) => {
                let name = &tail[1..end];
                let value = args
                    .iter()
                    .find(|(k, _)| k == name)
                    .ok_or_else(|| name.to_owned())?;
                out.push_str(&value.1);
                rest = &tail[end + 1..];
            }
            _ => {
                out.push_str(&tail[..1]);
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The language ranges of an `Accept-Language` header, lower-cased, best first: by q-value
/// (RFC 9110 12.5.4), ties in the order given; `q=0` ("not this one") and malformed entries
/// are dropped. At most 16 ranges are read, so a long header costs no more than a short one.
pub fn preferred_languages(header: &str) -> Vec<String> {
    let mut ranges: Vec<(u16, String)> = header
        .split(',')
        .take(16)
        .filter_map(|item| {
            let mut parts = item.split(';');
            let tag = parts.next()?.trim().to_ascii_lowercase();
            let tag_ok = tag == "*"
                || (!tag.is_empty()
                    && tag.len() <= 35
                    && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            if !tag_ok {
                return None;
            }
            let mut q = 1000;
            for p in parts {
                let (k, v) = p.split_once('=')?;
                if k.trim().eq_ignore_ascii_case("q") {
                    q = parse_qvalue(v.trim())?;
                }
            }
            (q > 0).then_some((q, tag))
        })
        .collect();
    ranges.sort_by_key(|r| std::cmp::Reverse(r.0));
    ranges.into_iter().map(|(_, t)| t).collect()
}

/// A qvalue (`0`, `0.8`, `1.000`) in thousandths; `None` when malformed.
fn parse_qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Catalogues {
        let by_lang = SHIPPED
            .iter()
            .map(|(l, t)| (l.to_string(), Catalogue::parse(t).expect("catalogue")))
            .collect();
        Catalogues::new(by_lang, "en".into())
    }

    #[test]
    fn accept_language_honours_q_values_and_order() {
        assert_eq!(
            preferred_languages("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5"),
            ["fr-ch", "fr", "en", "de", "*"]
        );
        assert_eq!(preferred_languages("en;q=0.5, de"), ["de", "en"]);
        assert_eq!(preferred_languages("de;q=0, en"), ["en"]);
        assert_eq!(
            preferred_languages("de;q=2, en;q=abc, <x>, en-GB"),
            ["en-gb"]
        );
        assert!(preferred_languages("").is_empty());
    }

    #[test]
    fn negotiation_picks_a_shipped_language_or_the_default() {
        let c = shipped();
        assert_eq!(c.negotiate(Some("de-DE,de;q=0.9,en;q=0.8")), "de");
        assert_eq!(c.negotiate(Some("de-CH")), "de");
        assert_eq!(c.negotiate(Some("fr, de;q=0.5")), "de");
        assert_eq!(c.negotiate(Some("en;q=0.9, de")), "de");
        assert_eq!(c.negotiate(Some("fr")), "en");
        assert_eq!(c.negotiate(Some("*")), "en");
        assert_eq!(c.negotiate(None), "en");
        let german_default = Catalogues::new(c.by_lang.clone(), "de".into());
        assert_eq!(german_default.negotiate(Some("fr")), "de");
    }

    #[test]
    fn english_and_german_are_complete() {
        let c = shipped();
        assert_eq!(c.missing_keys(), Vec::<(String, String)>::new());
        // And German has nothing English lacks (a typo in a key would show here).
        let en = &c.by_lang["en"];
        let extra: Vec<_> = c.by_lang["de"]
            .keys()
            .filter(|k| en.get(k).is_none())
            .collect();
        assert!(extra.is_empty(), "{extra:?}");
    }

    #[test]
    fn plurals_and_placeholders() {
        let c = shipped();
        let n = |n: i64| vec![("count".to_owned(), n.to_string())];
        assert_eq!(
            c.format("en", "time.days_ago", Some(1), &n(1)),
            Ok("1 day ago".into())
        );
        assert_eq!(
            c.format("en", "time.days_ago", Some(5), &n(5)),
            Ok("5 days ago".into())
        );
        assert_eq!(
            c.format("de", "time.days_ago", Some(5), &n(5)),
            Ok("vor 5 Tagen".into())
        );
        assert_eq!(
            c.format("de", "time.days_ago", Some(5), &[]),
            Err(MessageError::Placeholder {
                key: "time.days_ago".into(),
                lang: "de".into(),
                name: "count".into()
            })
        );
        assert_eq!(
            c.format("de", "nope", None, &[]),
            Err(MessageError::Missing("nope".into()))
        );
        assert_eq!(
            fill("{{a}} {b}", &[("b".into(), "x".into())]),
            Ok("{a} x".into())
        );
    }

    #[test]
    fn an_operator_catalogue_overrides_single_messages() {
        let mut en = Catalogue::parse(SHIPPED[0].1).expect("en");
        en.merge(Catalogue::parse("[signin]\ntitle = \"Log in\"\n").expect("override"));
        assert_eq!(
            en.get("signin.title"),
            Some(&Message::Text("Log in".into()))
        );
        assert!(en.get("signin.submit").is_some());
        let e = Catalogue::parse("[a]\nb = 1\n").expect_err("number");
        assert!(e.contains("a.b"), "{e}");
        let e = Catalogue::parse("[a]\nb = \"x\n").expect_err("syntax");
        assert!(e.starts_with("line 2"), "{e}");
    }

    #[test]
    fn language_tags() {
        for ok in ["en", "de", "pt-BR", "zh-Hant"] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", "e", "EN", "en_US", "../x", "english"] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }
}
