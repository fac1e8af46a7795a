//! The harness of the HTTP/2, gRPC and WebSocket tests (issue 24) proves itself, with no
//! gateway in between: the grpc-js client reaches the grpc-js server and reads its reply,
//! headers, trailers and error statuses, the server counts the calls that reached it and its
//! health follows the test; the raw WebSocket client completes a real handshake with `ws`
//! (its `Sec-WebSocket-Accept` checked), echoes, sees a close both as a close frame and as
//! the server going away, and reads a refused upgrade whole.

mod support;

use std::time::Duration;

use support::grpc::code;
use support::{grpc_call, GrpcServer, WsClient, WsEcho};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn grpc_say_reaches_the_server_with_its_metadata_and_keeps_header_and_trailer() {
    let server = GrpcServer::start().await;

    let r = grpc_call(&server.addr(), "Say", "hello", Some("sid=abc")).await;

    assert_eq!(r.code, code::OK, "{:?}", r.raw);
    assert_eq!(r.field("text"), Some("hello"));
    assert_eq!(r.field("user_id"), Some(""), "no gateway, so no identity");
    assert_eq!(r.header("x-echo-header"), Some("sent"));
    assert_eq!(r.trailer("x-echo-trailer"), Some("kept"));
    assert_eq!(server.wait_calls(1).await, 1);
    assert_eq!(server.calls(), 1);
    let call = &server.call_events()[0];
    assert_eq!(call["method"], "Say");
    assert_eq!(call["cookie"], "sid=abc");
}

#[tokio::test]
async fn grpc_fail_answers_invalid_argument_and_health_follows_the_test() {
    let server = GrpcServer::start().await;

    let r = grpc_call(&server.addr(), "Say", "fail", None).await;
    assert_eq!(r.code, code::INVALID_ARGUMENT, "{:?}", r.raw);
    assert_eq!(r.details, "asked to fail");
    assert_eq!(r.reply, None);
    assert_eq!(r.trailer("x-echo-trailer"), Some("kept"));

    let r = grpc_call(&server.addr(), "Check", "", None).await;
    assert_eq!((r.code, r.field("status")), (code::OK, Some("SERVING")));
    server.set_health(false);
    let r = grpc_call(&server.addr(), "Check", "", None).await;
    assert_eq!(r.field("status"), Some("NOT_SERVING"));
    server.set_health(true);
    let r = grpc_call(&server.addr(), "Check", "", None).await;
    assert_eq!(r.field("status"), Some("SERVING"));
    assert_eq!(server.wait_calls(4).await, 4);

    // Nothing listens on a killed server's port: UNAVAILABLE, not a hang.
    let addr = server.addr();
    let mut server = server;
    server.kill();
    let r = grpc_call(&addr, "Say", "hello", None).await;
    assert_eq!(r.code, code::UNAVAILABLE, "{:?}", r.raw);
}

#[tokio::test]
async fn grpc_ticks_streams_until_the_client_cancels() {
    let server = GrpcServer::start().await;

    let r = grpc_call(&server.addr(), "Ticks", "t", None).await;

    assert_eq!(r.code, code::CANCELLED, "{:?}", r.raw);
    let replies = r.replies.expect("replies");
    assert!((10..=21).contains(&replies), "{replies} replies in 2 s");
    assert!(r.ended_after_ms.expect("ended_after_ms") >= 2_000);
    let cancelled = support::poll(
        || async { server.events().iter().any(|e| e["event"] == "cancelled") },
        |seen| *seen,
    )
    .await;
    assert!(
        cancelled,
        "the server saw the cancel: {:?}",
        server.events()
    );
}

#[tokio::test]
async fn websocket_echoes_and_sees_both_kinds_of_close() {
    let mut echo = WsEcho::start().await;

    let mut first = WsClient::connect(&echo.addr(), "/ws/first?x=1", &[("Cookie", "sid=abc")])
        .await
        .expect("101");
    first.send_text("hello").await.expect("send");
    assert_eq!(
        first.recv_text(Duration::from_secs(5)).await.as_deref(),
        Some("hello")
    );
    let big = "x".repeat(70_000);
    first
        .send_text(&big)
        .await
        .expect("send a 64-bit length frame");
    assert_eq!(first.recv_text(Duration::from_secs(5)).await, Some(big));
    assert!(
        !first.closed_within(Duration::from_millis(200)).await,
        "an idle connection stays open"
    );

    // This side closes: the server answers the close frame.
    let mut second = WsClient::connect(&echo.addr(), "/ws/second", &[])
        .await
        .expect("101");
    second.send_close(1000).await.expect("send close");
    assert!(second.closed_within(Duration::from_secs(5)).await);
    assert_eq!(echo.wait_closed(1, Duration::from_secs(5)).await, 1);

    // The server closes when asked: a close frame ends recv_text.
    let mut third = WsClient::connect(&echo.addr(), "/ws/third", &[])
        .await
        .expect("101");
    third.send_text("__close__").await.expect("send");
    assert_eq!(third.recv_text(Duration::from_secs(5)).await, None);
    assert!(third.closed_within(Duration::from_millis(10)).await);

    assert_eq!(echo.wait_opened(3).await, 3);
    let open = &echo.open_events()[0];
    assert_eq!(open["path"], "/ws/first?x=1");
    assert_eq!(open["cookie"], "sid=abc");
    assert_eq!(open["x-user-id"], serde_json::Value::Null);

    // The server goes away without a close frame: EOF or reset.
    echo.kill();
    assert!(first.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn websocket_refusal_keeps_status_headers_and_body() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let answers = [
        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n\
         {\"error\":\"unauthenticated\"}",
        "HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n\
         4\r\nforb\r\n5;x=y\r\nidden\r\n0\r\n\r\n",
        "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\nno upstream",
    ];
    tokio::spawn(async move {
        for answer in answers {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut chunk).await.expect("read");
                assert!(n > 0, "the client sent a whole head");
                request.extend_from_slice(&chunk[..n]);
            }
            socket.write_all(answer.as_bytes()).await.expect("write");
            socket.shutdown().await.expect("shutdown");
        }
    });

    let refusal = WsClient::connect(&addr, "/ws", &[])
        .await
        .err()
        .expect("401");
    assert_eq!(refusal.status, 401);
    assert_eq!(refusal.header("content-type"), Some("application/json"));
    assert_eq!(refusal.body, r#"{"error":"unauthenticated"}"#);

    let refusal = WsClient::connect(&addr, "/ws", &[])
        .await
        .err()
        .expect("403");
    assert_eq!((refusal.status, refusal.body.as_str()), (403, "forbidden"));

    let refusal = WsClient::connect(&addr, "/ws", &[])
        .await
        .err()
        .expect("502");
    assert_eq!(
        (refusal.status, refusal.body.as_str()),
        (502, "no upstream")
    );
}
