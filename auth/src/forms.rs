//! The pages' side of the API: an HTML form post (or a browser following an emailed link)
//! gets a `303 See Other` to the next page instead of JSON, so every flow works without
//! JavaScript. Errors go back to the form with `?error=<code>`.

use crate::api::{uncached, ApiError, ApiRequest, HttpResponse, PREFIX};
use crate::pages::{encode, safe_next, PAGES};
use bytes::Bytes;
use http::header;

/// Where the browser goes after `req` ended in `result`. Cookies set by the handler are kept.
pub fn redirect_after(req: &ApiRequest, result: Result<HttpResponse, ApiError>) -> HttpResponse {
    let endpoint = req.path.strip_prefix(PREFIX).unwrap_or("");
    match result {
        Ok(resp) => {
            let to = match endpoint {
                "/signin" => safe_next(req.form_field("next").as_deref()),
                "/signup" => format!("{PAGES}/check-email"),
                "/forgot-password" => format!("{PAGES}/check-email?reset=1"),
                "/reset-password/update" => format!("{PAGES}/signin?notice=password_updated"),
                "/logout" => format!("{PAGES}/signed-out"),
                "/verify-email" => format!("{PAGES}/verified"),
                _ => return resp,
            };
            let mut out = see_other(&to);
            for cookie in resp.headers().get_all(header::SET_COOKIE) {
                out.headers_mut().append(header::SET_COOKIE, cookie.clone());
            }
            out
        }
        Err(e) => {
            let mut query = format!("error={}", e.code());
            if let ApiError::Validation { field, .. } = &e {
                query.push_str(&format!("&field={field}"));
            }
            let page = match endpoint {
                "/signin" => {
                    query.push_str(&format!(
                        "&next={}",
                        encode(&safe_next(req.form_field("next").as_deref()))
                    ));
                    "signin"
                }
                "/signup" => "signup",
                "/forgot-password" => "forgot-password",
                "/reset-password/update" => {
                    if !matches!(e, ApiError::InvalidToken) {
                        if let Some(t) = req.form_field("token") {
                            query.push_str(&format!("&token={}", encode(&t)));
                        }
                    }
                    "reset-password"
                }
                "/verify-email" => "signin",
                _ => return e.response(),
            };
            see_other(&format!("{PAGES}/{page}?{query}"))
        }
    }
}

fn see_other(location: &str) -> HttpResponse {
    let mut resp = uncached(303, None, Bytes::new());
    if let Ok(v) = header::HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}
