//! Outgoing email: SMTP in production, an outbox directory of RFC 5322 `.eml` files in
//! development. Each message is a plain-text and an HTML part rendered from the mail
//! templates ([`crate::pages`]), in the language of the request that caused it.

use crate::config::MailConfig;
use crate::endpoint::{Endpoint, Page};
use crate::pages::{MailTemplate, Pages};
use authflow_shared::digest::hash_hex;
use authflow_shared::store::{LoginThrottle, StoreError};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail configuration: {0}")]
    Config(String),
    #[error("bad recipient address")]
    Address,
    #[error("sending failed: {0}")]
    Send(String),
    #[error("mail template: {0}")]
    Render(String),
}

/// The mails anyone can make us send to an address (by signing up with it, or asking for a
/// reset): each kind goes at most once per cooldown to one address, so no address can be
/// mail-bombed through us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// "Someone tried to register with your address."
    AlreadyRegistered,
    /// A verification link for a sign-up that is still pending.
    Verification,
    /// A password-reset link.
    Reset,
    /// "A recovery code of yours was used" (never held back by the cooldown).
    RecoveryCodeUsed,
    /// "Your second factors changed" (one added or removed, new recovery codes).
    FactorsChanged,
}

impl MailKind {
    fn as_str(self) -> &'static str {
        match self {
            MailKind::AlreadyRegistered => "registered",
            MailKind::Verification => "verify",
            MailKind::Reset => "reset",
            MailKind::RecoveryCodeUsed => "recovery_code_used",
            MailKind::FactorsChanged => "factors_changed",
        }
    }
}

/// The per-address cooldown on [`MailKind`]s, kept in the session store (so every auth
/// instance shares it).
#[derive(Clone)]
pub struct MailGate {
    counters: Arc<dyn LoginThrottle>,
    cooldown: Duration,
}

impl MailGate {
    pub fn new(counters: Arc<dyn LoginThrottle>, cooldown: Duration) -> Self {
        MailGate { counters, cooldown }
    }

    /// Whether a mail of `kind` may go to `to` now. `variant` splits one kind further (a
    /// verification link per chosen password, so an earlier sign-up by someone else cannot
    /// hold back the owner's own link).
    pub async fn allow(&self, kind: MailKind, to: &str, variant: &str) -> Result<bool, StoreError> {
        let key = format!(
            "{}:{}",
            kind.as_str(),
            hash_hex(format!("{to}\n{variant}").as_bytes())
        );
        self.counters.mail_allowed(&key, self.cooldown).await
    }
}

enum Transport {
    /// One `<UTC time>-<uuid>.eml` per message (so `ls` lists them oldest first), written to
    /// a temp name and renamed, so a reader never sees half a message.
    Outbox(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

pub struct Mailer {
    from: Mailbox,
    base_url: String,
    transport: Transport,
    gate: MailGate,
    pages: Arc<Pages>,
}

impl Mailer {
    /// `base_url`: where links in mails start (`public_url`).
    pub fn new(
        cfg: &MailConfig,
        base_url: &str,
        gate: MailGate,
        pages: Arc<Pages>,
    ) -> Result<Self, MailError> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|_| MailError::Config(format!("bad from address {:?}", cfg.from)))?;
        let transport = match &cfg.smtp_url {
            Some(url) => {
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| MailError::Config(e.to_string()))?;
                if let Some(pw) = cfg.smtp_password.as_ref().filter(|p| !p.is_empty()) {
                    let pw = pw.expose().to_owned();
                    let user = url
                        .split("://")
                        .nth(1)
                        .and_then(|r| r.split_once('@'))
                        .map(|(u, _)| u.split(':').next().unwrap_or(u).to_owned());
                    if let Some(user) = user {
                        builder = builder.credentials(Credentials::new(user, pw));
                    }
                }
                Transport::Smtp(builder.build())
            }
            None => {
                std::fs::create_dir_all(&cfg.outbox_dir)
                    .map_err(|e| MailError::Config(format!("outbox {}: {e}", cfg.outbox_dir)))?;
                Transport::Outbox(PathBuf::from(&cfg.outbox_dir))
            }
        };
        Ok(Mailer {
            from,
            base_url: base_url.trim_end_matches('/').to_owned(),
            transport,
            gate,
            pages,
        })
    }

    /// Whether a mail of `kind` may go to `to` now ([`MailGate::allow`]). When the store
    /// cannot say, no mail goes: a lost mail can be asked for again, a flood cannot be undone.
    pub async fn may_send(&self, kind: MailKind, to: &str, variant: &str) -> bool {
        match self.gate.allow(kind, to, variant).await {
            Ok(allowed) => {
                if !allowed {
                    crate::metrics::mail("skipped");
                    tracing::info!(
                        kind = kind.as_str(),
                        "mail skipped: the address is in its cooldown"
                    );
                }
                allowed
            }
            Err(e) => {
                tracing::warn!(error = %e, "mail cooldown unknown: mail not sent");
                false
            }
        }
    }

    /// `base_url` + `path` + `?token=<token>`.
    pub fn link(&self, path: &str, token: &str) -> String {
        format!("{}{}?token={}", self.base_url, path, token)
    }

    /// Sends `mail` after the caller has answered. Every account flow hands its mail here
    /// and goes on at once, so how long a transport takes (an SMTP round trip, a file
    /// write) never shows in an answer's timing, and answers that must look alike (a
    /// sign-up for a new or a registered address) do the same work: one hand-over.
    /// Failures are logged and counted.
    pub fn queue(self: &Arc<Self>, mail: Outgoing) {
        let mailer = self.clone();
        tokio::spawn(async move {
            let kind = mail.kind;
            if let Err(e) = mailer.send(mail).await {
                tracing::error!(kind = kind.as_str(), error = %e, "could not send mail");
            }
        });
    }

    async fn send(&self, mail: Outgoing) -> Result<(), MailError> {
        let result = self.deliver(mail).await;
        crate::metrics::mail(if result.is_ok() { "sent" } else { "failed" });
        result
    }

    /// Renders `mail` in its language and hands it to the transport.
    async fn deliver(&self, mail: Outgoing) -> Result<(), MailError> {
        let to: Mailbox = mail.to.parse().map_err(|_| MailError::Address)?;
        let parts = self
            .pages
            .mail(
                mail.template,
                &mail.lang,
                &mail.to,
                &mail.link,
                mail.valid_minutes,
            )
            .map_err(MailError::Render)?;
        // In the outbox a person reads the raw file: keep the parts as written so links stay
        // whole and copyable. Over SMTP, lettre picks a transfer-safe encoding.
        let body = |text: String| match self.transport {
            Transport::Outbox(_) => Body::new_with_encoding(text, ContentTransferEncoding::Binary)
                .map_err(|_| MailError::Send("body not encodable".into())),
            Transport::Smtp(_) => Ok(Body::new(text)),
        };
        let alternative = MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(body(parts.text)?),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(body(parts.html)?),
            );
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(parts.subject)
            .multipart(alternative)
            .map_err(|e| MailError::Send(e.to_string()))?;
        match &self.transport {
            Transport::Outbox(dir) => {
                let name = outbox_name(std::time::SystemTime::now());
                let tmp = dir.join(format!(".{name}.tmp"));
                tokio::fs::write(&tmp, msg.formatted())
                    .await
                    .map_err(|e| MailError::Send(e.to_string()))?;
                tokio::fs::rename(&tmp, dir.join(format!("{name}.eml")))
                    .await
                    .map_err(|e| MailError::Send(e.to_string()))
            }
            Transport::Smtp(t) => t
                .send(msg)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Send(e.to_string())),
        }
    }

    /// The verification link for a sign-up, in `lang`.
    pub fn verification(&self, to: &str, token: &str, lang: &str) -> Outgoing {
        Outgoing {
            kind: MailKind::Verification,
            template: MailTemplate::Verification,
            to: to.to_owned(),
            lang: lang.to_owned(),
            link: self.link(&Endpoint::VerifyEmail.path(), token),
            valid_minutes: 0,
        }
    }

    /// "Someone tried to register with your address", for a sign-up of a registered one.
    pub fn already_registered(&self, to: &str, lang: &str) -> Outgoing {
        Outgoing {
            kind: MailKind::AlreadyRegistered,
            template: MailTemplate::AlreadyRegistered,
            to: to.to_owned(),
            lang: lang.to_owned(),
            link: format!("{}{}", self.base_url, Page::ForgotPassword.path()),
            valid_minutes: 0,
        }
    }

    /// "A recovery code was used to sign in to your account", with where to make a new set
    /// (and to change the password, if it was not the owner).
    pub fn recovery_code_used(&self, to: &str, lang: &str) -> Outgoing {
        Outgoing {
            kind: MailKind::RecoveryCodeUsed,
            template: MailTemplate::RecoveryCodeUsed,
            to: to.to_owned(),
            lang: lang.to_owned(),
            link: format!("{}{}", self.base_url, Page::Devices.path()),
            valid_minutes: 0,
        }
    }

    /// "The second factors of your account changed", with where to see them (and to change
    /// the password, if it was not the owner).
    pub fn factors_changed(&self, to: &str, lang: &str) -> Outgoing {
        Outgoing {
            kind: MailKind::FactorsChanged,
            template: MailTemplate::FactorsChanged,
            to: to.to_owned(),
            lang: lang.to_owned(),
            link: format!("{}{}", self.base_url, Page::Devices.path()),
            valid_minutes: 0,
        }
    }

    /// A password-reset link, valid `valid_minutes`.
    pub fn password_reset(
        &self,
        to: &str,
        token: &str,
        valid_minutes: u64,
        lang: &str,
    ) -> Outgoing {
        Outgoing {
            kind: MailKind::Reset,
            template: MailTemplate::PasswordReset,
            to: to.to_owned(),
            lang: lang.to_owned(),
            link: self.link(&Page::ResetPassword.path(), token),
            valid_minutes,
        }
    }
}

/// An outbox file name that sorts by time: `20250102T030405.123456Z-<uuid>` (UTC), the
/// uuid keeping two messages of the same microsecond apart.
fn outbox_name(now: std::time::SystemTime) -> String {
    let micros = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    let time = chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y%m%dT%H%M%S%.6fZ").to_string())
        .unwrap_or_else(|| "00000000T000000.000000Z".into());
    format!("{time}-{}", uuid::Uuid::new_v4())
}

/// A message ready to go ([`Mailer::queue`]); rendered when it is sent, after the answer.
pub struct Outgoing {
    kind: MailKind,
    template: MailTemplate,
    to: String,
    lang: String,
    link: String,
    valid_minutes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_names_sort_by_time() {
        let at = |secs: u64, micros: u64| {
            outbox_name(
                std::time::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros),
            )
        };
        let a = at(1_700_000_000, 5);
        assert!(a.starts_with("20231114T221320.000005Z-"), "{a}");
        let names = [
            at(1_700_000_000, 999_999),
            at(1_700_000_001, 0),
            at(1_800_000_000, 0),
        ];
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names);
    }
}
