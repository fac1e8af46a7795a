//! Property tests of the canonicaliser: whatever the client sends, it never panics, what it
//! accepts has one canonical form, and that form carries nothing an upstream could read as
//! another path.

use authflow_gateway::canonical;
use proptest::prelude::*;

/// Paths from the pieces attackers combine: separators, dots, escapes (good and bad), `;`,
/// backslashes, letters in both cases.
fn path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E".to_owned()),
        Just("%2f".to_owned()),
        Just("%5c".to_owned()),
        Just("%00".to_owned()),
        Just("%61".to_owned()),
        Just("%zz".to_owned()),
        Just("%".to_owned()),
        Just(";".to_owned()),
        Just("\\".to_owned()),
        "[a-zA-Z0-9_~-]{1,4}",
        "%[0-9a-fA-F]{2}",
        "[ -~]{1,3}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn canonical_paths_are_fixed_points_without_ambiguity(raw in path()) {
        if let Ok(c) = canonical::path(&raw) {
            prop_assert_eq!(canonical::path(&c), Ok(c.clone()), "not idempotent for {:?}", raw);
            prop_assert!(c.starts_with('/'));
            prop_assert!(!c.contains("//"), "{c}");
            prop_assert!(!c.contains(';') && !c.contains('\\'), "{c}");
            prop_assert!(c.split('/').all(|s| s != "." && s != ".."), "{c}");
            let lower = c.to_ascii_lowercase();
            for bad in ["%2f", "%5c", "%00", "%2e", "%61"] {
                prop_assert!(!lower.contains(bad), "{bad} left in {c}");
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(raw in "\\PC{0,60}") {
        let _ = canonical::path(&raw);
        let _ = canonical::host(&raw);
    }

    #[test]
    fn canonical_hosts_are_fixed_points(raw in "[a-zA-Z0-9.:\\[\\]-]{0,30}") {
        if let Ok(h) = canonical::host(&raw) {
            prop_assert_eq!(canonical::host(&h), Ok(h.clone()));
            prop_assert_eq!(h.to_ascii_lowercase(), h.clone());
            prop_assert!(!h.ends_with('.'));
        }
    }
}
