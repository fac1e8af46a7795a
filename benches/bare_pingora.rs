//! The engine alone: a Pingora proxy whose only method is `upstream_peer`, with the
//! gateway's Pingora version and features, one worker thread and work stealing off (as the
//! gateway runs). `benches/e2e.sh` measures the gateway against it, so what the gateway
//! costs on top of Pingora is visible apart from what Pingora itself costs.
//!
//!   cargo build --release --example bare_pingora
//!   target/release/examples/bare_pingora 127.0.0.1:18003 127.0.0.1:18081
//!   BARE_ALLOC=system target/release/examples/bare_pingora ...   # glibc malloc instead

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

/// The gateway's allocator (mimalloc), so the engine is compared on equal terms; with
/// `BARE_ALLOC=system` in the environment glibc malloc, to show what the allocator alone is
/// worth (`benches/instructions.sh`). The choice is made at the process's first allocation,
/// from the C environment (read in place: nothing may allocate before the choice), so every
/// block is freed by the allocator that made it. It costs one predictable branch per call.
#[global_allocator]
static ALLOC: Switch = Switch;

/// 0: not chosen yet, 1: mimalloc, 2: the system's malloc.
static CHOICE: AtomicU8 = AtomicU8::new(0);

extern "C" {
    static environ: *const *const std::ffi::c_char;
}

fn system() -> bool {
    match CHOICE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let wanted = b"BARE_ALLOC=system";
            let mut found = false;
            // SAFETY: `environ` is the C runtime's NUL-terminated array of NUL-terminated
            // strings, set up before any Rust code runs; it is only read here.
            unsafe {
                let mut p = environ;
                while !p.is_null() && !(*p).is_null() {
                    let entry = std::ffi::CStr::from_ptr(*p).to_bytes();
                    found |= entry == wanted;
                    p = p.add(1);
                }
            }
            CHOICE.store(if found { 2 } else { 1 }, Ordering::Relaxed);
            found
        }
    }
}

struct Switch;

unsafe impl GlobalAlloc for Switch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if system() {
            System.alloc(layout)
        } else {
            mimalloc::MiMalloc.alloc(layout)
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if system() {
            System.dealloc(ptr, layout)
        } else {
            mimalloc::MiMalloc.dealloc(ptr, layout)
        }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if system() {
            System.alloc_zeroed(layout)
        } else {
            mimalloc::MiMalloc.alloc_zeroed(layout)
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if system() {
            System.realloc(ptr, layout, new_size)
        } else {
            mimalloc::MiMalloc.realloc(ptr, layout, new_size)
        }
    }
}

struct Bare {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_pingora <listen addr> <upstream addr>");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut proxy = http_proxy_service(&server.configuration, Bare { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.bootstrap();
    server.run_forever();
}
