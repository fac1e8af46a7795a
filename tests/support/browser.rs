//! A browser for the provider sign-in tests: a cookie jar (cookies set by the auth service
//! and sent back to it, as a browser keeps them per site), no automatic redirects, and the
//! public address mapped to the service under test. The auth service is configured with a
//! `public_url` nothing listens on (the provider needs the redirect URI before the service
//! has its port); [`Browser::local`] turns a URL at that address into the real one, as the
//! gateway in front would.

use std::collections::BTreeMap;

/// The `public_url` the provider tests configure.
pub const PUBLIC_URL: &str = "http://127.0.0.1:9";

pub struct Browser {
    http: reqwest::Client,
    /// name -> value, for the service under test.
    pub jar: BTreeMap<String, String>,
    /// Where [`PUBLIC_URL`] really is (`http://127.0.0.1:<port>`).
    pub base: String,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            http: super::client(),
            jar: BTreeMap::new(),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// `url` at the public address (or a bare path) as a URL of the service under test.
    pub fn local(&self, url: &str) -> String {
        match url.strip_prefix(PUBLIC_URL) {
            Some(rest) => format!("{}{rest}", self.base),
            None if url.starts_with('/') => format!("{}{url}", self.base),
            None => url.to_owned(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps what `Set-Cookie` says (a `Max-Age=0` or empty value drops the cookie).
    fn keep(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap_or("");
            let Some((name, value)) = v.split(';').next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            if value.is_empty() || v.contains("Max-Age=0") {
                self.jar.remove(name.trim());
            } else {
                self.jar.insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let r = self
            .http
            .get(self.local(url))
            .header("user-agent", super::UA)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("request");
        self.keep(&r);
        r
    }

    pub async fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let r = self
            .http
            .post(self.local(url))
            .header("user-agent", super::UA)
            .header("cookie", self.cookie_header())
            .header("sec-fetch-site", "same-origin")
            .form(fields)
            .send()
            .await
            .expect("request");
        self.keep(&r);
        r
    }

    pub async fn post_json(&mut self, url: &str, body: serde_json::Value) -> reqwest::Response {
        let r = self
            .http
            .post(self.local(url))
            .header("user-agent", super::UA)
            .header("cookie", self.cookie_header())
            .json(&body)
            .send()
            .await
            .expect("request");
        self.keep(&r);
        r
    }

    /// The session cookie, if the service set one.
    pub fn session(&self) -> Option<&str> {
        self.jar.get("sid").map(String::as_str)
    }
}

/// The `Location` of a redirect.
pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{}: no Location", r.status()))
        .to_owned()
}

/// A query parameter of `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// On the "link your account" page of provider `id` (its button label `name`): the page
/// names the provider, a wrong password is refused and the link keeps waiting, and another
/// browser (`other`, without the link's cookie) cannot use it. `b` has just been sent there.
pub async fn link_refuses_strangers(b: &mut Browser, other: &mut Browser, id: &str, name: &str) {
    let page = b
        .get(&format!("/auth/link?provider={id}"))
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains(name), "{page}");
    let r = b
        .post_json(
            "/api/v1/simple_auth/sso/link",
            serde_json::json!({"password": "not the password"}),
        )
        .await;
    assert_eq!(r.status(), 401);
    assert!(b.session().is_none());
    let r = other
        .post_json(
            "/api/v1/simple_auth/sso/link",
            serde_json::json!({"password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status(), 400, "no link cookie in this browser");
}
