//! What the IO and the middleware share, and build on: the configuration,
//! each connection's [`ConnectionHandle`], the state of a group of
//! connections (a listener's, an acceptor's), its counters and its shutdown.
//!
//! - `body`: what the middleware learns of a connection's request body;
//! - `config`: [`LingerConfig`], [`LingerMode`];
//! - `connection`: [`ConnectionHandle`], [`AsConnectionHandle`];
//! - `current`: which connection the running task serves, for the
//!   middleware inside an app (`Router::layer`);
//! - `group`: what every connection of one group shares;
//! - `stats`: how lingers ended ([`LingerStats`]);
//! - `shutdown`: [`LingerShutdown`];
//! - `connect_info`: [`LingerConnectInfo`].
//!
//! Nothing here imports the IO, the middleware or the integrations.

pub(crate) mod body;
pub(crate) mod config;
#[cfg(feature = "axum")]
pub(crate) mod connect_info;
pub(crate) mod connection;
pub(crate) mod current;
pub(crate) mod group;
pub(crate) mod shutdown;
pub(crate) mod stats;

pub use config::{LingerConfig, LingerMode};
#[cfg(feature = "axum")]
pub use connect_info::LingerConnectInfo;
pub use connection::{AsConnectionHandle, ConnectionHandle};
pub use shutdown::LingerShutdown;
pub use stats::{LingerOutcome, LingerStats};
