//! One shape for checking a config: every section implements [`Validate`] and reports its
//! problems with keys relative to itself; whoever nests the section adds the prefix
//! ([`Problems::section`]). The root adds only the checks that span sections. Every problem is
//! kept, so one run of `authflow check` lists them all.

/// The problems found so far, as (dotted key, reason), and the key prefix of the section
/// being checked.
#[derive(Debug, Default)]
pub struct Problems {
    prefix: String,
    found: Vec<(String, String)>,
}

/// A config section that can say what is wrong with it.
pub trait Validate {
    /// Adds every problem of this section to `p`, keys relative to the section
    /// (`"timeout"`, `"rules[2].per"`).
    fn validate(&self, p: &mut Problems);
}

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem with `key` (relative to the current section).
    pub fn add(&mut self, key: impl AsRef<str>, reason: impl Into<String>) {
        let key = join(&self.prefix, key.as_ref());
        self.found.push((key, reason.into()));
    }

    /// Checks `section`, nested under `key` (`"redis"`, `"routes[1]"`).
    pub fn section(&mut self, key: &str, section: &(impl Validate + ?Sized)) {
        let outer = std::mem::take(&mut self.prefix);
        self.prefix = join(&outer, key);
        section.validate(self);
        self.prefix = outer;
    }

    /// Checks every entry of a list section, each under `key[i]`.
    pub fn each<'a, T: Validate + 'a>(
        &mut self,
        key: &str,
        items: impl IntoIterator<Item = &'a T>,
    ) {
        for (i, item) in items.into_iter().enumerate() {
            self.section(&format!("{key}[{i}]"), item);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The problems, in the order they were found.
    pub fn into_vec(self) -> Vec<(String, String)> {
        self.found
    }
}

/// `redis` + `url` = `redis.url`; `routes` + `[1]` = `routes[1]`.
fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (_, true) => prefix.to_owned(),
        _ if key.starts_with('[') => format!("{prefix}{key}"),
        _ => format!("{prefix}.{key}"),
    }
}

/// The problems of `section` alone, keys relative to it (for tests and small callers).
pub fn problems_of(section: &(impl Validate + ?Sized)) -> Vec<(String, String)> {
    let mut p = Problems::new();
    section.validate(&mut p);
    p.into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Leaf(bool);
    impl Validate for Leaf {
        fn validate(&self, p: &mut Problems) {
            if !self.0 {
                p.add("x", "bad");
            }
        }
    }
    struct Root(Vec<Leaf>, Leaf);
    impl Validate for Root {
        fn validate(&self, p: &mut Problems) {
            p.each("items", &self.0);
            p.section("one", &self.1);
            p.add("", "root-level");
        }
    }

    #[test]
    fn prefixes_are_added_by_the_caller() {
        let root = Root(vec![Leaf(true), Leaf(false)], Leaf(false));
        let keys: Vec<_> = problems_of(&root).into_iter().map(|p| p.0).collect();
        assert_eq!(keys, vec!["items[1].x", "one.x", ""]);
    }
}
