//! What a person is shown of their second factors, in the shapes both the JSON API and the
//! pages use: [`crate::mfa`] makes them, [`crate::pages`] renders them, neither needs the
//! other.

use serde::Serialize;

/// A TOTP enrolment just begun: what the person scans or types.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// A passkey as its owner sees it in the list.
#[derive(Debug, Clone, Serialize)]
pub struct PasskeyView {
    /// The credential id (base64url): what `delete` takes.
    pub id: String,
    pub name: String,
    /// Unix ms.
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}
