//! The server side, `figures serve --mode ...`: a lab server on a
//! current_thread runtime, answering `stats`, `holds`, `events` and
//! `clear` on stdin, one line each.
//!
//! - [`control`]: the stdin protocol;
//! - [`events`]: records the crate's "lingering close ended" events;
//! - [`wrapped`]: a `TcpStream` newtype (forces the copying drain, and
//!   times how long a socket stays open after its last write).

mod control;
mod events;
mod wrapped;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use linger::{LingerConfig, LingerLayer, LingerListener};
use tokio::net::TcpListener;

use self::control::Control;
use self::events::EndEvents;
use self::wrapped::WrappedListener;
use crate::support::lab;

/// Durations the server records, µs or ms.
type Samples = Arc<Mutex<Vec<u64>>>;

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).map(String::as_str)
}

fn num(args: &[String], name: &str) -> Option<u64> {
    flag(args, name).and_then(|v| v.parse().ok())
}

/// Serves until stdin closes; `args` are the flags after `serve`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let mode = flag(args, "--mode").unwrap_or("linger").to_string();
    let mut config = LingerConfig::new();
    if let Some(s) = num(args, "--idle-secs") {
        config = config.with_idle_timeout(Duration::from_secs(s));
    }
    if let Some(s) = num(args, "--deadline-secs") {
        config = config.with_deadline(Duration::from_secs(s));
    }
    if let Some(b) = num(args, "--max-bytes") {
        config = config.with_max_bytes(b);
    }
    if let Some(n) = num(args, "--max-lingering") {
        config = config.with_max_lingering(n as usize);
    }
    let holds: Option<Samples> = args
        .iter()
        .any(|a| a == "--holds")
        .then(|| Arc::new(Mutex::new(Vec::new())));
    let events: Samples = Arc::new(Mutex::new(Vec::new()));
    let micros_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if args.iter().any(|a| a == "--trace") {
        use tracing_subscriber::layer::SubscriberExt;
        let layer = EndEvents {
            values: events.clone(),
            micros_seen: micros_seen.clone(),
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            eprintln!("figures serve: a tracing subscriber is already set");
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("figures serve: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("figures serve: bind: {e}");
                return ExitCode::FAILURE;
            }
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let app: Router = lab::app();
        let control = Control {
            stats: None,
            holds: holds.clone(),
            events,
            micros_seen,
        };
        let result = match mode.as_str() {
            "plain" => {
                control.spawn(port);
                axum::serve(listener, app).await
            }
            "plain-wrapped" => {
                control.spawn(port);
                axum::serve(
                    WrappedListener {
                        inner: listener,
                        holds,
                    },
                    app,
                )
                .await
            }
            "linger" => {
                let listener = LingerListener::with_config(listener, config);
                Control {
                    stats: Some(listener.shutdown_handle()),
                    ..control
                }
                .spawn(port);
                axum::serve(listener, app.layer(LingerLayer::new())).await
            }
            "linger-listener-only" => {
                let listener = LingerListener::with_config(listener, config);
                control.spawn(port);
                axum::serve(listener, app).await
            }
            "plain-noop-layer" => {
                // A tower layer that does nothing, for scale: what any
                // layer on a Router costs.
                control.spawn(port);
                let noop = tower::util::MapRequestLayer::new(
                    |req: axum::http::Request<axum::body::Body>| req,
                );
                axum::serve(listener, app.layer(noop)).await
            }
            "linger-outer" => {
                // The layer around the whole Router (one layer) instead
                // of `Router::layer` (which wraps every route).
                use tower::Layer as _;
                let listener = LingerListener::with_config(listener, config);
                Control {
                    stats: Some(listener.shutdown_handle()),
                    ..control
                }
                .spawn(port);
                let svc = LingerLayer::new().layer(app);
                axum::serve(
                    listener,
                    axum::ServiceExt::<axum::http::Request<axum::body::Body>>::into_make_service(
                        svc,
                    ),
                )
                .await
            }
            "linger-layer-only" => {
                control.spawn(port);
                axum::serve(listener, app.layer(LingerLayer::new())).await
            }
            "linger-wrapped" => {
                let listener = LingerListener::with_config(
                    WrappedListener {
                        inner: listener,
                        holds,
                    },
                    config,
                );
                Control {
                    stats: Some(listener.shutdown_handle()),
                    ..control
                }
                .spawn(port);
                axum::serve(listener, app.layer(LingerLayer::new())).await
            }
            other => {
                eprintln!("figures serve: unknown mode {other:?}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = result {
            eprintln!("figures serve: {e}");
        }
        ExitCode::FAILURE
    })
}
