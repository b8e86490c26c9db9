//! Lingering-close metrics for Prometheus: a template to copy.
//!
//! ```text
//! cargo run --example metrics              # the app on 127.0.0.1:3000, /metrics beside it
//! curl http://127.0.0.1:3000/metrics
//! ```
//!
//! The listener's `LingerStats` (how lingers ended, bytes discarded, and the
//! resets they prevented) are read at each scrape by a `prometheus-client`
//! collector and served as Prometheus text on `/metrics`:
//!
//! ```text
//! # HELP linger_started Lingering closes started.
//! # TYPE linger_started counter
//! linger_started_total 12
//! # HELP linger_lingering Connections lingering now.
//! # TYPE linger_lingering gauge
//! linger_lingering 1
//! # HELP linger_ended Lingering closes ended, by how they ended.
//! # TYPE linger_ended counter
//! linger_ended_total{outcome="peer_closed"} 11
//! ...
//! ```

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use linger::{LingerLayer, LingerListener, LingerShutdown};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tower::Layer;

/// Reads a listener's `LingerStats` at each scrape.
#[derive(Debug)]
struct LingerCollector {
    lingers: LingerShutdown,
}

impl Collector for LingerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.lingers.stats();
        let counters = [
            ("linger_started", "Lingering closes started.", stats.started),
            (
                "linger_bytes_discarded",
                "Bytes lingering closes read and discarded.",
                stats.bytes_discarded,
            ),
            (
                "linger_resets_prevented",
                "Lingers where a plain close would have reset the connection.",
                stats.resets_prevented,
            ),
            (
                "linger_over_cap",
                "Closes made plain because too many sockets were lingering.",
                stats.over_cap,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauge = ConstGauge::new(stats.lingering as i64);
        gauge.encode(encoder.encode_descriptor(
            "linger_lingering",
            "Connections lingering now.",
            None,
            gauge.metric_type(),
        )?)?;
        let mut family = encoder.encode_descriptor(
            "linger_ended",
            "Lingering closes ended, by how they ended.",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (outcome, value) in stats.by_outcome() {
            let labels = [("outcome", outcome.as_str())];
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &registry).is_err() {
        let _ = writeln!(body, "# encoding failed");
    }
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().expect("PORT must be a port number"),
        Err(_) => 3000,
    };
    let listener = LingerListener::bind(("127.0.0.1", port)).await?;
    let lingers = listener.shutdown_handle();

    let mut registry = Registry::default();
    registry.register_collector(Box::new(LingerCollector {
        lingers: lingers.clone(),
    }));
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(registry));

    println!("listening on http://{}", listener.get_ref().local_addr()?);
    axum::serve(listener, LingerLayer::new().layer(app))
        .with_graceful_shutdown(lingers.on(async {
            tokio::signal::ctrl_c().await.ok();
        }))
        .await
}
