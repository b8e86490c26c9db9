//! `LingerConnectInfo`, through axum's `into_make_service_with_connect_info`
//! inside the app (`Router::layer`), and through
//! `linger::serve(..).with_connect_info()`: handlers get the peer address,
//! and the middleware finds the connection's handle in it (the
//! handler-close test in `connection_level.rs` covers the other forms).

mod support;

use std::future::IntoFuture;
use std::io::{Read, Write};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use linger::{LingerConnectInfo, LingerLayer, LingerListener};

async fn whoami(ConnectInfo(info): ConnectInfo<LingerConnectInfo>) -> String {
    format!(
        "{} closing={}",
        info.remote_addr(),
        info.handle().is_closing()
    )
}

/// Reads until what arrived ends with `end` (or EOF; each read bounded by
/// the socket's timeout).
fn read_until(stream: &mut std::net::TcpStream, end: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(end.as_bytes()) {
        match stream.read(&mut buf).unwrap() {
            0 => break,
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The app: `/whoami` answers the peer address it was given, `/mark` marks
/// the connection closing through the handle in the connect info.
fn app() -> Router {
    Router::new().route("/whoami", get(whoami)).route(
        "/mark",
        post(
            |ConnectInfo(info): ConnectInfo<LingerConnectInfo>| async move {
                info.handle().mark_closing();
                "marked"
            },
        ),
    )
}

#[test]
fn peer_address_and_handle_reach_the_app_and_the_middleware() {
    let rt = support::runtime::runtime();
    let addr = serve_on_loopback(&rt, |tcp| {
        let app = app().layer(LingerLayer::new().without_rescue());
        let make = app.into_make_service_with_connect_info::<LingerConnectInfo>();
        axum::serve(LingerListener::new(tcp), make).into_future()
    });
    peer_address_then_marked_close(addr);
}

#[test]
fn linger_serve_with_connect_info_gives_the_same() {
    let rt = support::runtime::runtime();
    let addr = serve_on_loopback(&rt, |tcp| {
        linger::serve(tcp, app()).with_connect_info().into_future()
    });
    peer_address_then_marked_close(addr);
}

/// Spawns the server `serve` makes of a loopback listener on `rt`; its
/// address.
fn serve_on_loopback<F>(
    rt: &tokio::runtime::Runtime,
    serve: impl FnOnce(tokio::net::TcpListener) -> F,
) -> std::net::SocketAddr
where
    F: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    rt.block_on(async {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        tokio::spawn(serve(tcp));
        addr
    })
}

/// A client asks who it is (its own address comes back, the connection
/// not closing), then asks to be marked: that response says
/// `Connection: close` and the connection ends cleanly.
fn peer_address_then_marked_close(addr: std::net::SocketAddr) {
    let mut client = support::client::connect(addr, None).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The handler sees this client's address, on a connection not closing.
    client
        .write_all(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let expected = format!("{} closing=false", client.local_addr().unwrap());
    let got = read_until(&mut client, &expected);
    assert!(got.ends_with(&expected), "{got}");
    // A handler marks the connection closing through the handle; the
    // middleware, which found the same handle in the connect info, makes
    // this very response say `Connection: close`, and the connection ends.
    client
        .write_all(b"POST /mark HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let (rest, end) = support::client::read_to_close(&mut client);
    let rest = String::from_utf8_lossy(&rest).to_ascii_lowercase();
    assert!(rest.starts_with("http/1.1 200"), "{rest}");
    assert!(
        rest.contains("connection: close") && rest.ends_with("marked"),
        "{rest}"
    );
    assert!(end.is_clean(), "{end:?}");
}
