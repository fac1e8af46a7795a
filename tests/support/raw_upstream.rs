//! A recording upstream that speaks HTTP/1.1 by hand: it keeps the bytes of every request a
//! gateway sends it (request line, headers, body), well-formed or not, and answers each with
//! a fixed `200`. The echo [`super::upstream::Upstream`] sees requests through hyper, which
//! refuses or normalizes the odd ones; this one shows what was put on the wire.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest head it reads before giving up on a request (the gateway's own limit is 32 KiB).
const MAX_HEAD: usize = 256 * 1024;
/// How long an idle keep-alive connection waits for its next request.
const IDLE: Duration = Duration::from_secs(60);
/// How long it waits for the rest of a request once the request has started.
const MID_REQUEST: Duration = Duration::from_secs(2);
/// How long it collects bytes after a request whose body it cannot delimit.
const UNFRAMED: Duration = Duration::from_millis(200);

/// One request as it arrived. Header names and values are kept as sent (case, spaces and all).
#[derive(Debug, Clone)]
pub struct Received {
    /// Which accepted connection it came on (in accept order), and its place on it.
    pub connection: usize,
    pub index: usize,
    /// The head as received, up to and including the empty line.
    pub head: Vec<u8>,
    pub method: Vec<u8>,
    /// The request-target: what lies between the first and the last space of the request
    /// line (so a target with a space in it is kept whole).
    pub target: Vec<u8>,
    /// Empty when the request line has a single space (HTTP/0.9-style).
    pub version: Vec<u8>,
    /// `(name, value)` per header line; a continuation line (obs-fold) has the whole line
    /// as its name and an empty value.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The payload (chunked framing removed).
    pub body: Vec<u8>,
    /// Why a strict HTTP/1.1 server could not have delimited this request (the connection
    /// was closed after it), if so: several or odd framing headers, a bad chunk.
    pub malformed: Option<String>,
    /// Why the request is incomplete, if it is: the sender stopped (closed or fell silent)
    /// inside the head or the body.
    pub truncated: Option<String>,
}

impl Received {
    /// The values of every header named `name` (ASCII case-insensitive, surrounding
    /// whitespace of the name ignored).
    pub fn header_values(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The first value of `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_values(name)
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The request line, lossy, for messages.
    pub fn request_line(&self) -> String {
        let line = self.head.split(|&b| b == b'\n').next().unwrap_or_default();
        String::from_utf8_lossy(line).trim_end().to_owned()
    }
}

/// A running recording upstream; stops on drop.
pub struct RawUpstream {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    pub async fn start() -> RawUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            let mut connection = 0;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(stream, connection, log.clone()));
                connection += 1;
            }
        });
        RawUpstream {
            port,
            received,
            task,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads requests off one connection until it closes or a request cannot be delimited.
async fn serve(mut stream: TcpStream, connection: usize, log: Arc<Mutex<Vec<Received>>>) {
    let mut buf = Vec::new();
    for index in 0.. {
        let Some(end) = read_head(&mut stream, &mut buf).await else {
            if !buf.is_empty() {
                let mut r = parse_head(connection, index, std::mem::take(&mut buf));
                r.truncated = Some("the head never ended".into());
                log.lock().expect("lock").push(r);
            }
            return;
        };
        let head: Vec<u8> = buf.drain(..end).collect();
        let mut r = parse_head(connection, index, head);
        if expects_continue(&r) {
            let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        }
        let body = match framing(&r) {
            Framing::None => Ok(Vec::new()),
            Framing::Length(n) => read_exact(&mut stream, &mut buf, n).await,
            Framing::Chunked => read_chunked(&mut stream, &mut buf).await,
            Framing::Unknown(why) => {
                read_for(&mut stream, &mut buf, UNFRAMED).await;
                r.body = std::mem::take(&mut buf);
                Err(BodyError::Malformed(why))
            }
        };
        match body {
            Ok(b) => r.body = b,
            Err(BodyError::Malformed(why)) => r.malformed = Some(why),
            Err(BodyError::Truncated(why)) => r.truncated = Some(why),
        }
        let close = r.malformed.is_some()
            || r.truncated.is_some()
            || r.header_values("connection")
                .iter()
                .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"close"));
        let head_only = r.method.eq_ignore_ascii_case(b"HEAD");
        log.lock().expect("lock").push(r);
        let mut resp =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n".to_vec();
        if close {
            resp.extend_from_slice(b"Connection: close\r\n");
        }
        resp.extend_from_slice(b"\r\n");
        if !head_only {
            resp.extend_from_slice(b"ok");
        }
        if stream.write_all(&resp).await.is_err() || close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Reads until `buf` holds a whole head; its length (empty line included), or `None` if the
/// connection ended, stalled or sent too much first. A bare LF ends a line too.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(end) = head_end(buf) {
            return Some(end);
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let wait = if buf.is_empty() { IDLE } else { MID_REQUEST };
        if !read_more(stream, buf, wait).await {
            return None;
        }
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match (buf.get(i + 1), buf.get(i + 2)) {
            (Some(b'\n'), _) => Some(i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(i + 3),
            _ => None,
        }
    })
}

/// Appends what arrives within `wait`; false on end of stream, error or timeout.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

/// Collects whatever arrives within `wait`.
async fn read_for(stream: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now()) {
        if !read_more(stream, buf, left).await {
            return;
        }
    }
}

fn parse_head(connection: usize, index: usize, head: Vec<u8>) -> Received {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let first = line.iter().position(|&b| b == b' ');
    let last = line.iter().rposition(|&b| b == b' ');
    let (method, target, version) = match (first, last) {
        (Some(f), Some(l)) if l > f => (&line[..f], &line[f + 1..l], &line[l + 1..]),
        (Some(f), _) => (&line[..f], &line[f + 1..], &b""[..]),
        _ => (line, &b""[..], &b""[..]),
    };
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| match l.iter().position(|&b| b == b':') {
            Some(c) if !l.starts_with(b" ") && !l.starts_with(b"\t") => {
                (l[..c].to_vec(), l[c + 1..].trim_ascii().to_vec())
            }
            _ => (l.to_vec(), Vec::new()),
        })
        .collect();
    Received {
        connection,
        index,
        method: method.to_vec(),
        target: target.to_vec(),
        version: version.to_vec(),
        headers,
        body: Vec::new(),
        malformed: None,
        truncated: None,
        head,
    }
}

/// Why a body could not be read.
enum BodyError {
    Malformed(String),
    Truncated(String),
}

enum Framing {
    None,
    Length(usize),
    Chunked,
    /// The body cannot be delimited (why).
    Unknown(String),
}

/// How a strict HTTP/1.1 server delimits this request's body (RFC 9112 §6.3).
fn framing(r: &Received) -> Framing {
    let te = r.header_values("transfer-encoding");
    let cl = r.header_values("content-length");
    if !te.is_empty() {
        if !cl.is_empty() {
            return Framing::Unknown("both Transfer-Encoding and Content-Length".into());
        }
        let last = te
            .last()
            .and_then(|v| v.split(|&b| b == b',').next_back())
            .unwrap_or_default();
        return if te.len() == 1 && last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::Unknown(format!(
                "Transfer-Encoding {:?}",
                te.iter()
                    .map(|v| String::from_utf8_lossy(v))
                    .collect::<Vec<_>>()
            ))
        };
    }
    if cl.is_empty() {
        return Framing::None;
    }
    let values: Vec<Option<usize>> = cl
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|v| {
            let v = v.trim_ascii();
            (!v.is_empty() && v.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(v).ok()?.parse().ok())
                .flatten()
        })
        .collect();
    match values.as_slice() {
        [Some(n)] => Framing::Length(*n),
        _ => Framing::Unknown(format!(
            "Content-Length {:?}",
            cl.iter()
                .map(|v| String::from_utf8_lossy(v))
                .collect::<Vec<_>>()
        )),
    }
}

fn expects_continue(r: &Received) -> bool {
    r.header_values("expect")
        .iter()
        .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
}

/// Takes `n` body bytes from `buf`, reading more as needed.
async fn read_exact(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    n: usize,
) -> Result<Vec<u8>, BodyError> {
    while buf.len() < n {
        if !read_more(stream, buf, MID_REQUEST).await {
            let why = format!("the body stopped after {} of {n} bytes", buf.len());
            return Err(BodyError::Truncated(why));
        }
    }
    Ok(buf.drain(..n).collect())
}

/// Takes a chunked body (and its trailers) from `buf`, reading more as needed.
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream, buf).await?;
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| {
                let line = String::from_utf8_lossy(&line);
                BodyError::Malformed(format!("bad chunk size {line:?}"))
            })?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(stream, buf).await?.is_empty() {}
            return Ok(body);
        }
        body.extend(read_exact(stream, buf, size).await?);
        if !read_line(stream, buf).await?.is_empty() {
            let why = "chunk data longer than its size".into();
            return Err(BodyError::Malformed(why));
        }
    }
}

/// One CRLF-terminated line from `buf` (without the CRLF).
async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, BodyError> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf[..i].to_vec();
            buf.drain(..i + 2);
            return Ok(line);
        }
        if buf.len() > MAX_HEAD || !read_more(stream, buf, MID_REQUEST).await {
            return Err(BodyError::Truncated("the chunked body stopped".into()));
        }
    }
}
