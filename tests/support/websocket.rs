//! WebSockets at the edge: an echo server behind the gateway ([`WsEcho`], the `ws` package
//! under Node, `tests/support/peers/ws_echo.mjs`) and a raw RFC 6455 client in front of it
//! ([`WsClient`], over a tokio `TcpStream`), so a test sees exactly what crossed the gateway:
//! the status of the upgrade, the headers of a refusal, the frames, and when a connection
//! closes.
//!
//! The client is written here, not taken from a crate, because it is small and the tests want
//! its raw edges (a refused upgrade with its body, a close observed as EOF or reset). It
//! checks `Sec-WebSocket-Accept` as a browser does, with the SHA-1 below (no SHA-1 crate among
//! the dev-dependencies; the self-test against `ws` checks it).

use std::io;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::node_peer::NodePeer;

/// The running echo server, killed on drop. Any upgrade on any path is accepted and every
/// message echoed back as it came; the text `__close__` makes it close with 1000. A plain
/// request (no upgrade) answers 200 `plain`.
pub struct WsEcho {
    peer: NodePeer,
}

impl WsEcho {
    /// Starts the server on a free port and waits until it listens (at most 20 s).
    pub async fn start() -> WsEcho {
        WsEcho {
            peer: NodePeer::start("ws_echo.mjs", "ws-echo", &[]).await,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        self.peer.addr()
    }

    pub fn port(&self) -> u16 {
        self.peer.port
    }

    /// How many WebSocket connections the server accepted so far.
    pub fn opened(&self) -> usize {
        self.peer.count("open")
    }

    /// How many of them have closed (by either side, or by the TCP connection ending).
    pub fn closed(&self) -> usize {
        self.peer.count("close")
    }

    /// Waits (at most `limit`) until at least `n` connections have closed; returns the count.
    pub async fn wait_closed(&self, n: usize, limit: Duration) -> usize {
        self.peer.wait_count("close", n, limit).await
    }

    /// Waits (at most 2 s) until at least `n` connections were accepted; returns the count.
    pub async fn wait_opened(&self, n: usize) -> usize {
        self.peer
            .wait_count("open", n, Duration::from_secs(2))
            .await
    }

    /// Every event in order: `{"event":"open","path":..,"x-user-id":..,"x-user-roles":..,
    /// "cookie":..,"headers":{..}}` (absent headers are `null`),
    /// `{"event":"close","path":..,"code":N}` and `{"event":"plain","path":..}`.
    pub fn events(&self) -> Vec<Value> {
        self.peer.events()
    }

    /// The `open` events, in order: what the upstream saw of each upgrade request.
    pub fn open_events(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == "open")
            .collect()
    }

    /// Kills the server now: its connections end without a close frame.
    pub fn kill(&mut self) {
        self.peer.kill();
    }
}

/// A response other than `101 Switching Protocols` to an upgrade request, with its body.
#[derive(Clone, Debug)]
pub struct HttpRefusal {
    pub status: u16,
    /// Names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpRefusal {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// How long [`WsClient::connect`] waits for the response head, and for a refusal's body.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Why no frame was read.
enum End {
    /// The deadline passed with the connection still open.
    Timeout,
    /// EOF or a read error (reset): the connection is gone.
    Gone,
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// A WebSocket client connection (RFC 6455, version 13, no extensions, no subprotocol).
pub struct WsClient {
    stream: TcpStream,
    /// Bytes read but not yet parsed (frames may follow the 101 head in the same read).
    buf: Vec<u8>,
    /// The headers of the `101` answer, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Whether this side sent its close frame.
    close_sent: bool,
    /// Whether the peer sent its close frame or the connection ended.
    peer_closed: bool,
}

impl WsClient {
    /// Sends the upgrade request `GET <path>` to `addr` (`host:port`) with `Host: localhost`
    /// (unless `extra_headers` has a `Host`), a random `Sec-WebSocket-Key`,
    /// `Sec-WebSocket-Version: 13` and `extra_headers` (a `Cookie`, an `Origin`, ..), and
    /// reads the answer: `Ok` on `101` (after checking `Upgrade` and `Sec-WebSocket-Accept`),
    /// `Err` with the status, headers and body (by `Content-Length`, chunked, or to EOF) of
    /// any other answer. Panics if the connection fails, ends before a response head, or
    /// gives no head within 10 s.
    pub async fn connect(
        addr: &str,
        path: &str,
        extra_headers: &[(&str, &str)],
    ) -> Result<WsClient, HttpRefusal> {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("WebSocket connect to {addr}: {e}"));
        let key = base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes());
        let mut request = format!("GET {path} HTTP/1.1\r\n");
        if !extra_headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            request.push_str("Host: localhost\r\n");
        }
        request.push_str(&format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n"
        ));
        for (name, value) in extra_headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut client = WsClient {
            stream,
            buf: Vec::new(),
            headers: Vec::new(),
            close_sent: false,
            peer_closed: false,
        };
        client
            .stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("WebSocket upgrade request to {addr}: {e}"));

        let deadline = Instant::now() + HANDSHAKE_LIMIT;
        let head_end = loop {
            if let Some(i) = find(&client.buf, b"\r\n\r\n") {
                break i;
            }
            assert!(
                client.buf.len() < 64 * 1024,
                "{addr}{path}: a response head over 64 KiB"
            );
            match client.fill(deadline).await {
                Ok(()) => {}
                Err(End::Timeout) => panic!("{addr}{path}: no response head within 10 s"),
                Err(End::Gone) => panic!(
                    "{addr}{path}: the connection ended before a response head ({:?})",
                    String::from_utf8_lossy(&client.buf)
                ),
            }
        };
        let head = String::from_utf8_lossy(&client.buf[..head_end]).into_owned();
        client.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{addr}{path}: not an HTTP status line: {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();

        if status != 101 {
            let body = client.read_body(&headers, deadline).await;
            return Err(HttpRefusal {
                status,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        let upgrade = header(&headers, "upgrade").unwrap_or_default();
        assert!(
            upgrade.eq_ignore_ascii_case("websocket"),
            "{addr}{path}: 101 with Upgrade {upgrade:?}"
        );
        let expected = accept_for(&key);
        let accept = header(&headers, "sec-websocket-accept");
        assert_eq!(
            accept,
            Some(expected.as_str()),
            "{addr}{path}: 101 with a Sec-WebSocket-Accept that does not answer the key \
             (a browser fails the connection)"
        );
        client.headers = headers;
        Ok(client)
    }

    /// The first header of the `101` answer named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Sends one text message (a single masked frame).
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send_frame(OP_TEXT, text.as_bytes()).await
    }

    /// Sends a close frame with `code` (1000 is a normal close).
    pub async fn send_close(&mut self, code: u16) -> io::Result<()> {
        self.close_sent = true;
        self.send_frame(OP_CLOSE, &code.to_be_bytes()).await
    }

    /// The next text (or binary, read as UTF-8) message within `limit`, reassembled from its
    /// fragments; pings are answered with pongs on the way. `None` when the peer closes
    /// (its close frame is answered), the connection ends, or `limit` passes.
    pub async fn recv_text(&mut self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        let mut message = Vec::new();
        loop {
            let frame = self.read_frame(deadline).await.ok()?;
            match frame.opcode {
                OP_TEXT | OP_BINARY => message = frame.payload,
                OP_CONTINUATION => message.extend_from_slice(&frame.payload),
                OP_CLOSE => {
                    self.on_close(&frame.payload).await;
                    return None;
                }
                OP_PING => {
                    let _ = self.send_frame(OP_PONG, &frame.payload).await;
                    continue;
                }
                _ => continue,
            }
            if frame.fin {
                return Some(String::from_utf8_lossy(&message).into_owned());
            }
        }
    }

    /// Whether the peer ends the connection within `limit`: a close frame (answered), EOF or
    /// a reset. Messages received meanwhile are dropped; pings are answered. `true` at once
    /// if it already had.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.peer_closed {
            match self.read_frame(deadline).await {
                Ok(frame) if frame.opcode == OP_CLOSE => self.on_close(&frame.payload).await,
                Ok(frame) if frame.opcode == OP_PING => {
                    let _ = self.send_frame(OP_PONG, &frame.payload).await;
                }
                Ok(_) => {}
                Err(End::Timeout) => return false,
                Err(End::Gone) => {}
            }
        }
        true
    }

    /// The peer's close frame: answered with the same code (RFC 6455 5.5.1) unless this side
    /// closed first, then the TCP write side is shut, as a browser does once both close frames
    /// have crossed (`ws` reports a connection closed only when the TCP connection ends).
    async fn on_close(&mut self, payload: &[u8]) {
        self.peer_closed = true;
        if !self.close_sent {
            self.close_sent = true;
            let code = payload.get(..2).unwrap_or(&[0x03, 0xE8]).to_vec();
            let _ = self.send_frame(OP_CLOSE, &code).await;
        }
        let _ = self.stream.shutdown().await;
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        // Client frames are masked (RFC 6455 5.3).
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask: [u8; 4] = uuid::Uuid::new_v4().as_bytes()[..4]
            .try_into()
            .expect("4 bytes");
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await
    }

    /// Reads more bytes into `buf` before `deadline`.
    async fn fill(&mut self, deadline: Instant) -> Result<(), End> {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => Err(End::Timeout),
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.peer_closed = true;
                Err(End::Gone)
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    /// Makes sure `buf` holds at least `n` bytes.
    async fn fill_to(&mut self, n: usize, deadline: Instant) -> Result<(), End> {
        while self.buf.len() < n {
            self.fill(deadline).await?;
        }
        Ok(())
    }

    /// One frame from the server (unmasked, as servers send; a masked one is unmasked).
    async fn read_frame(&mut self, deadline: Instant) -> Result<Frame, End> {
        self.fill_to(2, deadline).await?;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7F {
            126 => {
                self.fill_to(4, deadline).await?;
                (
                    usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    4,
                )
            }
            127 => {
                self.fill_to(10, deadline).await?;
                let mut n = [0u8; 8];
                n.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        let mut mask = [0u8; 4];
        if masked {
            self.fill_to(at + 4, deadline).await?;
            mask.copy_from_slice(&self.buf[at..at + 4]);
            at += 4;
        }
        self.fill_to(at + len, deadline).await?;
        let mut payload: Vec<u8> = self.buf[at..at + len].to_vec();
        self.buf.drain(..at + len);
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        Ok(Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0F,
            payload,
        })
    }

    /// The body of a refusal: by `Content-Length`, chunked, or to EOF.
    async fn read_body(&mut self, headers: &[(String, String)], deadline: Instant) -> Vec<u8> {
        if let Some(n) = header(headers, "content-length").and_then(|v| v.parse::<usize>().ok()) {
            let _ = self.fill_to(n, deadline).await;
            let n = n.min(self.buf.len());
            return self.buf.drain(..n).collect();
        }
        let chunked = header(headers, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if !chunked {
            while self.fill(deadline).await.is_ok() {}
            return std::mem::take(&mut self.buf);
        }
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                if self.fill(deadline).await.is_err() {
                    return body;
                }
            };
            let size_line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let Ok(size) = usize::from_str_radix(size_hex, 16) else {
                return body;
            };
            self.buf.drain(..line_end + 2);
            if size == 0 {
                return body;
            }
            if self.fill_to(size + 2, deadline).await.is_err() {
                body.append(&mut self.buf);
                return body;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `Sec-WebSocket-Accept` a server must answer to `key` (RFC 6455 4.2.2).
fn accept_for(key: &str) -> String {
    let digest = sha1(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// SHA-1 (FIPS 180-4), for the handshake check only.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (state, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, state) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&state.to_be_bytes());
    }
    out
}
