//! W3C Trace Context (`traceparent`, `tracestate`): what the gateway keeps from a trusted
//! caller or starts itself, passes to upstreams and the auth service, and writes in every
//! access-log line beside the request id, so a log line leads to its trace and back.
//!
//! Parsing follows the recommendation's rules: version `ff` and all-zero ids are invalid,
//! hex is lower case only, a future version may carry more fields after the fourth. An
//! invalid `traceparent` is ignored (a new trace starts), never an error to the client.

use rand::RngCore;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The largest `tracestate` passed on (the recommendation's 32 members of at most 256 bytes
/// fit in 512 in practice); a longer one is dropped rather than cut mid-member.
const MAX_TRACESTATE: usize = 512;

/// One hop's trace context: the trace, this hop's span, the flags, the vendors' state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Bit 0: sampled.
    pub flags: u8,
    pub state: Option<String>,
}

impl TraceContext {
    /// The caller's context from its headers, if `traceparent` is valid.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let b = traceparent.trim().as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = hex_byte(&b[0..2])?;
        if version == 0xff || (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        for (i, out) in trace_id.iter_mut().enumerate() {
            *out = hex_byte(&b[3 + 2 * i..5 + 2 * i])?;
        }
        for (i, out) in span_id.iter_mut().enumerate() {
            *out = hex_byte(&b[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&b[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let state = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE && s.is_ascii())
            .map(str::to_owned);
        Some(TraceContext {
            trace_id,
            span_id,
            flags,
            state,
        })
    }

    /// A new trace, sampled.
    pub fn start() -> Self {
        let mut trace_id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut trace_id);
        TraceContext {
            trace_id,
            span_id: new_span_id(),
            flags: 1,
            state: None,
        }
    }

    /// The context of the next hop: same trace, flags and state, a new span.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: new_span_id(),
            ..self.clone()
        }
    }

    /// The `traceparent` header value (version 00).
    /// Built in place, once per request on the hot path (no formatting machinery).
    pub fn traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.span_id);
        out.push('-');
        push_hex(&mut out, &[self.flags]);
        out
    }

    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        push_hex(&mut out, &self.trace_id);
        out
    }

    pub fn span_id_hex(&self) -> String {
        let mut out = String::with_capacity(16);
        push_hex(&mut out, &self.span_id);
        out
    }

    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

fn new_span_id() -> [u8; 8] {
    loop {
        let id = rand::thread_rng().next_u64().to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

/// Appends `bytes` as lower-case hex.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// One byte from two lower-case hex digits.
fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(two[0])? << 4 | digit(two[1])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_round_trips() {
        let cx = TraceContext::parse(VALID, Some("congo=t61rcWkgMzE")).expect("valid");
        assert_eq!(cx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(cx.span_id_hex(), "00f067aa0ba902b7");
        assert!(cx.sampled());
        assert_eq!(cx.traceparent(), VALID);
        assert_eq!(cx.state.as_deref(), Some("congo=t61rcWkgMzE"));
        let child = cx.child();
        assert_eq!(child.trace_id, cx.trace_id);
        assert_ne!(child.span_id, cx.span_id);
        assert_eq!(child.state, cx.state);
    }

    #[test]
    fn invalid_headers_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future";
        let cx = TraceContext::parse(v, None).expect("future version");
        assert!(!cx.sampled());
        assert_eq!(&cx.traceparent()[..3], "00-", "passed on as version 00");
    }

    #[test]
    fn new_traces_are_valid_and_distinct() {
        let (a, b) = (TraceContext::start(), TraceContext::start());
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(TraceContext::parse(&a.traceparent(), None), Some(a));
    }

    #[test]
    fn an_oversized_or_non_ascii_state_is_dropped() {
        let long = "a=".to_owned() + &"b".repeat(600);
        assert_eq!(
            TraceContext::parse(VALID, Some(&long)).expect("cx").state,
            None
        );
        assert_eq!(
            TraceContext::parse(VALID, Some("a=é")).expect("cx").state,
            None
        );
    }
}
