//! The [`Linger`] middleware, laid out as tower-http lays out one:
//!
//! - `layer`: [`LingerLayer`];
//! - `service`: [`Linger`], per request and, with axum, per connection
//!   (as the make-service `axum::serve` takes);
//! - `future`: its response future;
//! - `hyper`: the middleware as hyper's own service;
//! - `make_service`: the middleware as axum's make-service, and its future;
//! - `body`: [`LingerBody`], which tells whether the handler read the
//!   request body to its end;
//! - `rescue`: discarding a small unread body to keep the connection;
//! - `rules`: the `Connection` header rules hyper does not apply itself.

pub(crate) mod body;
pub(crate) mod future;
#[cfg(feature = "hyper")]
pub(crate) mod hyper;
pub(crate) mod layer;
#[cfg(feature = "axum")]
pub(crate) mod make_service;
mod rescue;
mod rules;
pub(crate) mod service;

#[cfg(test)]
mod tests;
