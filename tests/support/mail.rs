//! Reading the auth service's outbox (one `.eml` file per message).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every message in an outbox; quoted-printable bodies (as SMTP-bound mail would have) are
/// decoded, others are taken as written.
pub fn outbox_messages(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|m| {
            if m.contains("Content-Transfer-Encoding: quoted-printable") {
                decode_qp(&m)
            } else {
                m
            }
        })
        .collect()
}

/// Undoes quoted-printable soft line breaks and `=XX` escapes.
pub fn decode_qp(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 3 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v as char);
                i += 3;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// Waits for a message to `to` whose text contains `needle`; returns it.
pub async fn wait_for_mail(dir: &Path, to: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(m) = outbox_messages(dir)
            .into_iter()
            .rev()
            .find(|m| m.contains(&format!("To: {to}")) && m.contains(needle))
        {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no mail to {to} containing {needle:?}; outbox: {:?}",
        outbox_messages(dir)
    );
}

/// The `token=` value of the first link in a message.
pub fn link_token(mail: &str) -> String {
    let start = mail.find("token=").expect("no token link") + "token=".len();
    mail[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}
