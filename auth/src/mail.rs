//! Outgoing email: SMTP in production, an outbox directory of RFC 5322 `.eml` files in
//! development. The messages the service sends are built here.

use crate::config::MailConfig;
use crate::endpoint::{Endpoint, Page};
use authflow_shared::digest::hash_hex;
use authflow_shared::store::{LoginThrottle, StoreError};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
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
}

impl MailKind {
    fn as_str(self) -> &'static str {
        match self {
            MailKind::AlreadyRegistered => "registered",
            MailKind::Verification => "verify",
            MailKind::Reset => "reset",
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
    /// One `<uuid>.eml` per message, written to a temp name and renamed, so a reader never
    /// sees half a message.
    Outbox(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

pub struct Mailer {
    from: Mailbox,
    base_url: String,
    transport: Transport,
    gate: MailGate,
}

impl Mailer {
    pub fn new(cfg: &MailConfig, gate: MailGate) -> Result<Self, MailError> {
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
            base_url: cfg.base_url.trim_end_matches('/').to_owned(),
            transport,
            gate,
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
        let result = self.deliver(&mail.to, mail.subject, mail.body).await;
        crate::metrics::mail(if result.is_ok() { "sent" } else { "failed" });
        result
    }

    async fn deliver(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|_| MailError::Address)?;
        // In the outbox a person reads the raw file: keep the body as written so links stay
        // whole and copyable. Over SMTP, lettre picks a transfer-safe encoding.
        let body = match self.transport {
            Transport::Outbox(_) => Body::new_with_encoding(body, ContentTransferEncoding::Binary)
                .map_err(|_| MailError::Send("body not encodable".into()))?,
            Transport::Smtp(_) => Body::new(body),
        };
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Send(e.to_string()))?;
        match &self.transport {
            Transport::Outbox(dir) => {
                let name = uuid::Uuid::new_v4();
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

    /// The verification link for a sign-up.
    pub fn verification(&self, to: &str, token: &str) -> Outgoing {
        let link = self.link(&Endpoint::VerifyEmail.path(), token);
        Outgoing {
            kind: MailKind::Verification,
            to: to.to_owned(),
            subject: "Confirm your email address",
            body: format!("Welcome!\n\nConfirm your email address by opening this link:\n\n{link}\n\nIf you did not sign up, ignore this message.\n"),
        }
    }

    /// "Someone tried to register with your address", for a sign-up of a registered one.
    pub fn already_registered(&self, to: &str) -> Outgoing {
        let link = format!("{}{}", self.base_url, Page::ForgotPassword.path());
        Outgoing {
            kind: MailKind::AlreadyRegistered,
            to: to.to_owned(),
            subject: "Someone tried to register with your email address",
            body: format!("Someone tried to create an account with this email address, which already has one.\n\nIf it was you, sign in instead, or reset your password here:\n\n{link}\n\nIf it was not you, you can ignore this message.\n"),
        }
    }

    /// A password-reset link, valid `valid_minutes`.
    pub fn password_reset(&self, to: &str, token: &str, valid_minutes: u64) -> Outgoing {
        let link = self.link(&Page::ResetPassword.path(), token);
        Outgoing {
            kind: MailKind::Reset,
            to: to.to_owned(),
            subject: "Reset your password",
            body: format!("A password reset was requested for this account.\n\nChoose a new password here (valid for {valid_minutes} minutes, once):\n\n{link}\n\nIf you did not ask for this, ignore this message; your password stays as it is.\n"),
        }
    }
}

/// A message built and ready to go ([`Mailer::queue`]).
pub struct Outgoing {
    kind: MailKind,
    to: String,
    subject: &'static str,
    body: String,
}
