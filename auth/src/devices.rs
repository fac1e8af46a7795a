//! A few words for a person to recognise a device by in their session list ("Firefox on
//! Linux"), from the `User-Agent` saved at sign-in. Deliberately coarse: the string is
//! chosen by the client, so it describes, it never proves. (A full UA parser crate brings a
//! regex database of megabytes for what this list needs.)

/// Browser (or client) and platform, e.g. "Chrome on Android"; "Unknown device" without a
/// User-Agent.
pub fn describe(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|u| !u.trim().is_empty()) else {
        return "Unknown device".into();
    };
    let client = client(ua);
    match platform(ua) {
        Some(p) => format!("{client} on {p}"),
        None => client.to_owned(),
    }
}

fn client(ua: &str) -> &str {
    // Order matters: Edge and Opera also say Chrome, Chrome also says Safari.
    const CLIENTS: [(&str, &str); 9] = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("okhttp/", "Android app"),
        ("python-requests/", "Python script"),
    ];
    CLIENTS
        .iter()
        .find(|(needle, _)| ua.contains(needle))
        .map_or_else(
            || ua.split('/').next().unwrap_or("Unknown"),
            |(_, name)| name,
        )
}

fn platform(ua: &str) -> Option<&'static str> {
    const PLATFORMS: [(&str, &str); 7] = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ];
    PLATFORMS
        .iter()
        .find(|(needle, _)| ua.contains(needle))
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_browsers_are_named_with_their_platform() {
        let cases = [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36 Edg/130.0", "Edge on Windows"),
            ("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Mobile Safari/537.36", "Chrome on Android"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "Safari on iPhone"),
            ("curl/8.5.0", "curl"),
        ];
        for (ua, want) in cases {
            assert_eq!(describe(Some(ua)), want, "{ua}");
        }
        assert_eq!(describe(None), "Unknown device");
        assert_eq!(describe(Some("  ")), "Unknown device");
        assert_eq!(describe(Some("MyTool/1.0")), "MyTool");
    }
}
