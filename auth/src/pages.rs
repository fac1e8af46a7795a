//! The HTML pages a person uses: sign in, sign up, forgot password, reset password, check
//! your email, email verified, signed out. Plain, accessible HTML with no external assets;
//! the forms post to the JSON API's endpoints and work without JavaScript.

use crate::endpoint::{Endpoint, Page};
use crate::http::{json_response, see_other, uncached, HttpResponse};
use crate::sessions::SessionView;
use authflow_shared::request::{encode_query_value as encode, query_param as param};
use bytes::Bytes;
use http::header;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `next` is honoured only when it is a local path: no scheme, no `//host`, no backslash
/// tricks, no control characters. Anything else becomes `/app/` (no open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_owned()
        }
        _ => "/app/".to_owned(),
    }
}

fn message_for(error: &str, field: Option<&str>) -> String {
    match error {
        "invalid_credentials" => "Wrong email or password.".into(),
        "email_not_verified" => {
            "Please confirm your email address first: we sent you a link.".into()
        }
        "invalid_token" => {
            "This link is invalid, expired or already used. Ask for a new one.".into()
        }
        "rate_limited" | "too_many_attempts" => {
            "Too many attempts. Wait a few minutes (at most 15) and try again.".into()
        }
        "validation_failed" => match field {
            Some("password") => {
                "Choose a password of 8 to 128 characters that is not a common one.".into()
            }
            Some("email") => "Enter a valid email address.".into(),
            _ => "Check what you entered.".into(),
        },
        "not_found" => "That device was already signed out.".into(),
        "session_store_unavailable" | "user_store_unavailable" => {
            "The service is temporarily unavailable. Try again shortly.".into()
        }
        _ => "Something went wrong. Try again.".into(),
    }
}

fn html(status: u16, title: &str, body: &str) -> HttpResponse {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title} · AuthFlow</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        title = escape(title)
    );
    let mut resp = uncached(status, Some("text/html; charset=utf-8"), Bytes::from(page));
    let h = resp.headers_mut();
    // No scripts, no framing, no external loads.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    resp
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f6f7f9;color:#1b1f24;margin:0}\
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}\
label{display:block;margin:1rem 0 .25rem;font-weight:600}\
input{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #8a939d;border-radius:4px}\
button{margin-top:1.5rem;width:100%;padding:.7rem;font-size:1rem;background:#1f5fbf;color:#fff;border:0;border-radius:4px;cursor:pointer}\
button:focus,input:focus{outline:3px solid #f2b705}\
.alert{background:#fde8e8;border:1px solid #c81e1e;padding:.75rem;border-radius:4px}\
.notice{background:#e6f4ea;border:1px solid #1e7b34;padding:.75rem;border-radius:4px}\
nav{margin-top:1.5rem;display:flex;justify-content:space-between}\
ul.devices{list-style:none;padding:0}ul.devices li{border-bottom:1px solid #dde1e6;padding:.75rem 0}\
.device{font-weight:600}button.small{width:auto;margin-top:.5rem;padding:.3rem .8rem;font-size:.9rem}\
button.danger{background:#b42318}h2{font-size:1.1rem;margin-top:2rem}";

fn alert(query: Option<&str>) -> String {
    match param(query, "error") {
        Some(e) => format!(
            "<p class=\"alert\" role=\"alert\">{}</p>",
            escape(&message_for(&e, param(query, "field").as_deref()))
        ),
        None => String::new(),
    }
}

fn email_field(autofocus: bool) -> String {
    format!(
        "<label for=\"email\">Email</label>\n<input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"email\" required{}>",
        if autofocus { " autofocus" } else { "" }
    )
}

fn password_field(id: &str, label: &str, autocomplete: &str) -> String {
    format!(
        "<label for=\"{id}\">{label}</label>\n<input id=\"{id}\" name=\"{id}\" type=\"password\" autocomplete=\"{autocomplete}\" minlength=\"8\" maxlength=\"128\" required>"
    )
}

/// GET on a page path; `None` when the path is not a page.
pub fn render(path: &str, query: Option<&str>) -> Option<HttpResponse> {
    if !path.starts_with(&format!("{}/", crate::endpoint::PAGE_PREFIX)) {
        return None;
    }
    let Some(page) = Page::from_path(path) else {
        return Some(json_response(
            404,
            &serde_json::json!({"error": "not_found"}),
        ));
    };
    Some(render_page(page, query))
}

fn render_page(page: Page, query: Option<&str>) -> HttpResponse {
    let signin = Page::SignIn.path();
    match page {
        Page::SignIn => {
            let next = safe_next(param(query, "next").as_deref());
            let notice = match param(query, "notice").as_deref() {
                Some("password_updated") => "<p class=\"notice\" role=\"status\">Your password was changed. Sign in with the new one.</p>",
                Some("verified") => "<p class=\"notice\" role=\"status\">Your email address is confirmed. You can sign in.</p>",
                _ => "",
            };
            html(200, "Sign in", &format!(
                "{notice}{alert}<form method=\"post\" action=\"{action}\">\n<input type=\"hidden\" name=\"next\" value=\"{next}\">\n{email}\n{pw}\n<button type=\"submit\">Sign in</button>\n</form>\n<nav><a href=\"{signup}?next={next_q}\">Create an account</a><a href=\"{forgot}\">Forgot password?</a></nav>",
                alert = alert(query), email = email_field(true), pw = password_field("password", "Password", "current-password"),
                next = escape(&next), next_q = escape(&encode(&next)),
                action = Endpoint::SignIn.path(), signup = Page::SignUp.path(), forgot = Page::ForgotPassword.path()
            ))
        }
        Page::SignUp => html(200, "Create an account", &format!(
            "{alert}<form method=\"post\" action=\"{action}\">\n{email}\n{pw}\n<p id=\"pw-help\">8 to 128 characters. Any characters you like.</p>\n<button type=\"submit\">Create account</button>\n</form>\n<nav><a href=\"{signin}\">I have an account</a></nav>",
            alert = alert(query), email = email_field(true), pw = password_field("password", "Password", "new-password"),
            action = Endpoint::SignUp.path()
        )),
        Page::CheckEmail => html(200, "Check your email", if param(query, "reset").is_some() {
            "<p role=\"status\">If an account exists for that address, we sent it a link to reset the password. The link works once.</p>"
        } else {
            "<p role=\"status\">We sent you a link to confirm your email address. Open it, then sign in.</p>"
        }),
        Page::ForgotPassword => html(200, "Forgot your password?", &format!(
            "{alert}<form method=\"post\" action=\"{action}\">\n{email}\n<button type=\"submit\">Send reset link</button>\n</form>\n<nav><a href=\"{signin}\">Back to sign in</a></nav>",
            alert = alert(query), email = email_field(true), action = Endpoint::ForgotPassword.path()
        )),
        Page::ResetPassword => {
            let token = param(query, "token").unwrap_or_default();
            html(200, "Choose a new password", &format!(
                "{alert}<form method=\"post\" action=\"{action}\">\n<input type=\"hidden\" name=\"token\" value=\"{token}\">\n{pw}\n<button type=\"submit\">Set new password</button>\n</form>",
                alert = alert(query), token = escape(&token), pw = password_field("new_password", "New password", "new-password"),
                action = Endpoint::ResetPassword.path()
            ))
        }
        Page::Verified => html(200, "Email confirmed", &format!(
            "<p role=\"status\">Thank you: your email address is confirmed.</p>\n<p><a href=\"{signin}\">Sign in</a></p>"
        )),
        Page::SignedOut => html(200, "Signed out", &format!(
            "<p role=\"status\">You are signed out. Your session was ended on the server.</p>\n<p><a href=\"{signin}\">Sign in again</a></p>"
        )),
        // Needs the session: the API renders it with [`devices`]; without one, sign in.
        Page::Devices => see_other(&format!("{signin}?next={}", encode(&Page::Devices.path()))),
    }
}

/// "Your devices": every session of the signed-in user, each but this one with a button to
/// sign it out, then "sign out all other devices", "sign out everywhere" and a password
/// change (which also signs out the other devices). Plain forms, no script.
pub fn devices(list: &[SessionView], now_ms: u64, query: Option<&str>) -> HttpResponse {
    let notice = match param(query, "notice").as_deref() {
        Some("signed_out") => "<p class=\"notice\" role=\"status\">That device is signed out.</p>",
        Some("others_signed_out") => "<p class=\"notice\" role=\"status\">Every other device is signed out.</p>",
        Some("password_changed") => "<p class=\"notice\" role=\"status\">Your password was changed and every other device signed out.</p>",
        _ => "",
    };
    let rows: String = list
        .iter()
        .map(|s| {
            let action = if s.current {
                "<strong>This device</strong>".to_owned()
            } else {
                format!(
                    "<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"handle\" value=\"{}\"><button type=\"submit\" class=\"small\">Sign out</button></form>",
                    Endpoint::SessionRevoke.path(),
                    escape(&s.handle)
                )
            };
            format!(
                "<li><span class=\"device\">{}</span><br><small>{} · signed in {} · last active {}</small><br>{action}</li>",
                escape(&s.device),
                escape(s.ip.as_deref().unwrap_or("address unknown")),
                ago(now_ms, s.created_at),
                ago(now_ms, s.last_seen_at),
            )
        })
        .collect();
    html(200, "Your devices", &format!(
        "{notice}{alert}<p>Where you are signed in. Sign out anything you do not recognise, then change your password.</p>\n<ul class=\"devices\">{rows}</ul>\n\
         <form method=\"post\" action=\"{others}\"><button type=\"submit\">Sign out all other devices</button></form>\n\
         <form method=\"post\" action=\"{all}\"><button type=\"submit\" class=\"danger\">Sign out everywhere</button></form>\n\
         <h2>Change password</h2>\n<form method=\"post\" action=\"{change}\">\n{old}\n{new}\n<button type=\"submit\">Change password</button>\n</form>",
        alert = alert(query),
        others = Endpoint::SessionRevokeOthers.path(),
        all = Endpoint::SessionRevokeAll.path(),
        change = Endpoint::ChangePassword.path(),
        old = password_field("old_password", "Current password", "current-password"),
        new = password_field("new_password", "New password", "new-password"),
    ))
}

/// "5 minutes ago", coarse on purpose.
fn ago(now_ms: u64, then_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_be_a_local_path() {
        assert_eq!(safe_next(Some("/app/x?y=1")), "/app/x?y=1");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "/a\\b",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(bad)), "/app/", "{bad}");
        }
        assert_eq!(safe_next(None), "/app/");
    }

    #[test]
    fn escaping_and_decoding() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(
            param(Some("next=%2Fapp%2F&error=x"), "next").as_deref(),
            Some("/app/")
        );
        assert_eq!(encode("/app/x?y=1"), "/app/x%3Fy%3D1");
    }

    #[tokio::test]
    async fn reflected_values_are_escaped() {
        use http_body_util::BodyExt;
        for (path, query) in [
            ("/auth/signin", "next=/%22%3E%3Cscript%3E"),
            ("/auth/reset-password", "token=%22%3E%3Cscript%3E"),
        ] {
            let resp = render(path, Some(query)).expect("page");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            let text = String::from_utf8_lossy(&body);
            assert!(!text.contains("<script>"), "{text}");
            assert!(text.contains("&lt;script&gt;"), "{text}");
        }
    }
}
