//! A request body that outlives its response: the handler moves the body
//! into a task of its own and answers at once; the task drops it unread a
//! moment later. The body was not read when the response left, so the
//! response says `Connection: close`; and the middleware keeps no body past
//! its response, so hyper sees the body dropped, ends the connection, and
//! the close lingers. Kept anywhere instead, the body would hold hyper's
//! connection open, waiting for it, with the response sent and no FIN.
//! In every form the README shows.

mod support;

use std::io::Write;
use std::time::Duration;

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use linger::LingerConfig;
use support::client::{connect, read_to_close};
use support::lab::{self, Close};

/// How long the handler's task holds the body.
const HOLD: Duration = Duration::from_millis(100);

fn app() -> Router {
    Router::new().route(
        "/later",
        post(|body: Body| async move {
            tokio::spawn(async move {
                tokio::time::sleep(HOLD).await;
                drop(body);
            });
            "accepted"
        }),
    )
}

#[test]
fn a_body_kept_past_its_response_is_let_go_and_the_connection_ends() {
    for close in Close::every_form(LingerConfig::new()) {
        let name = close.name();
        let rt = support::runtime::runtime();
        let addr = rt.block_on(async {
            let listener = lab::bind("127.0.0.1:0", &close).await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(lab::serve_closing(listener, app(), close));
            addr
        });
        let mut client = connect(addr, None).unwrap();
        // 16 KiB of a 1 MiB body: hyper cannot finish it on its own.
        let head = "POST /later HTTP/1.1\r\nHost: lab\r\nContent-Length: 1048576\r\n\r\n";
        client
            .write_all(&[head.as_bytes(), &[b'u'; 16 << 10]].concat())
            .unwrap();
        let (bytes, end) = read_to_close(&mut client);
        let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
        assert!(
            text.starts_with("http/1.1 200")
                && text.contains("connection: close")
                && text.ends_with("accepted"),
            "{name}: {text}"
        );
        assert!(
            end.is_clean(),
            "{name}: the connection did not end: {end:?}"
        );
        drop(rt);
    }
}
