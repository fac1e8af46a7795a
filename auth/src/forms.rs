//! The pages' side of the API: an HTML form post (or a browser following an emailed link)
//! gets a `303 See Other` to the next page instead of JSON, so every flow works without
//! JavaScript. Errors go back to the form with `?error=<code>`.

use crate::endpoint::{Endpoint, Page};
use crate::error::ApiError;
use crate::http::{see_other, ApiRequest, HttpResponse};
use crate::pages::safe_next;
use authflow_shared::request::encode_query_value;
use http::header;

/// Where the browser goes after `endpoint` ended in `result`. Cookies set by the handler are
/// kept.
pub fn redirect_after(
    req: &ApiRequest,
    endpoint: Endpoint,
    result: Result<HttpResponse, ApiError>,
) -> HttpResponse {
    match result {
        // The handler chose the next page itself (a sign-in that needs its second factor).
        Ok(resp) if resp.status() == http::StatusCode::SEE_OTHER => resp,
        Ok(resp) => match success_target(req, endpoint) {
            Some(to) => {
                let mut out = see_other(&to);
                for cookie in resp.headers().get_all(header::SET_COOKIE) {
                    out.headers_mut().append(header::SET_COOKIE, cookie.clone());
                }
                out
            }
            None => resp,
        },
        Err(e) => match failure_target(req, endpoint, &e) {
            Some(to) => see_other(&to),
            None => e.response(),
        },
    }
}

/// The page after a success; `None` for endpoints without a page flow.
fn success_target(req: &ApiRequest, endpoint: Endpoint) -> Option<String> {
    Some(match endpoint {
        Endpoint::SignIn => safe_next(req.form_field("next").as_deref()),
        Endpoint::SignUp => Page::CheckEmail.path(),
        Endpoint::ForgotPassword => format!("{}?reset=1", Page::CheckEmail.path()),
        Endpoint::ResetPassword => format!("{}?notice=password_updated", Page::SignIn.path()),
        Endpoint::Logout => Page::SignedOut.path(),
        Endpoint::VerifyEmail => Page::Verified.path(),
        Endpoint::SessionRevoke => format!("{}?notice=signed_out", Page::Devices.path()),
        Endpoint::SessionRevokeOthers => {
            format!("{}?notice=others_signed_out", Page::Devices.path())
        }
        Endpoint::ChangePassword => format!("{}?notice=password_changed", Page::Devices.path()),
        Endpoint::SessionRevokeAll => Page::SignedOut.path(),
        Endpoint::Livez
        | Endpoint::Readyz
        | Endpoint::Health
        | Endpoint::Sessions
        | Endpoint::Providers
        | Endpoint::Identities
        | Endpoint::IdentityUnlink
        | Endpoint::Mfa
        // These handlers answer the form themselves (they know where `next` is, or show
        // the recovery codes once).
        | Endpoint::SsoLink
        | Endpoint::MfaVerify
        | Endpoint::TotpEnroll
        | Endpoint::TotpConfirm
        | Endpoint::RecoveryRegenerate => return None,
        Endpoint::TotpDisable => format!("{}?notice=mfa_disabled", Page::Devices.path()),
        Endpoint::PasskeyDelete => format!("{}?notice=passkey_deleted", Page::Devices.path()),
        // Script only (the ceremonies need `navigator.credentials`): JSON.
        Endpoint::PasskeyList
        | Endpoint::PasskeyRegisterStart
        | Endpoint::PasskeyRegisterFinish
        | Endpoint::PasskeyAuthStart
        | Endpoint::PasskeyAuthFinish => return None,
    })
}

/// The form to go back to after `e`, with the error code (and what to keep) in the query.
fn failure_target(req: &ApiRequest, endpoint: Endpoint, e: &ApiError) -> Option<String> {
    let mut query = format!("error={}", e.code());
    if let ApiError::Validation { field, .. } = e {
        query.push_str(&format!("&field={field}"));
    }
    let page = match endpoint {
        Endpoint::SignIn => {
            let next = safe_next(req.form_field("next").as_deref());
            query.push_str(&format!("&next={}", encode_query_value(&next)));
            Page::SignIn
        }
        Endpoint::SignUp => Page::SignUp,
        Endpoint::ForgotPassword => Page::ForgotPassword,
        Endpoint::ResetPassword => {
            // A bad token cannot be retried; anything else keeps the link usable.
            if !matches!(e, ApiError::InvalidToken) {
                if let Some(t) = req.form_field("token") {
                    query.push_str(&format!("&token={}", encode_query_value(&t)));
                }
            }
            Page::ResetPassword
        }
        Endpoint::VerifyEmail => Page::SignIn,
        // Without a session the page itself sends the browser to sign in.
        Endpoint::SessionRevoke
        | Endpoint::SessionRevokeOthers
        | Endpoint::SessionRevokeAll
        | Endpoint::ChangePassword => Page::Devices,
        Endpoint::SsoLink => match e {
            ApiError::InvalidToken => {
                return Some(format!("{}?error=sso_link_expired", Page::SignIn.path()))
            }
            _ => Page::Link,
        },
        Endpoint::Logout
        | Endpoint::Livez
        | Endpoint::Readyz
        | Endpoint::Health
        | Endpoint::Sessions
        | Endpoint::Providers
        | Endpoint::Identities
        | Endpoint::IdentityUnlink
        | Endpoint::Mfa => return None,
        Endpoint::MfaVerify => {
            let next = safe_next(req.form_field("next").as_deref());
            query.push_str(&format!("&next={}", encode_query_value(&next)));
            Page::MfaPrompt
        }
        Endpoint::TotpEnroll | Endpoint::TotpConfirm => Page::MfaSetup,
        Endpoint::TotpDisable | Endpoint::RecoveryRegenerate => Page::Devices,
        // A second factor proved too long ago: prove one now, then back to the list.
        Endpoint::PasskeyDelete if matches!(e, ApiError::SecondFactor(_)) => {
            return Some(format!(
                "{}?notice=step_up&next={}",
                Page::MfaPrompt.path(),
                encode_query_value(&Page::Devices.path())
            ))
        }
        Endpoint::PasskeyDelete => Page::Devices,
        Endpoint::PasskeyList
        | Endpoint::PasskeyRegisterStart
        | Endpoint::PasskeyRegisterFinish
        | Endpoint::PasskeyAuthStart
        | Endpoint::PasskeyAuthFinish => return None,
    };
    Some(format!("{}?{query}", page.path()))
}
