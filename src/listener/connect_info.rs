//! axum's `Connected` for [`LingerConnectInfo`] through a [`LingerListener`].

use crate::listener::LingerListener;
use crate::state::LingerConnectInfo;

impl<L> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, LingerListener<L>>>
    for LingerConnectInfo<L::Addr>
where
    L: axum::serve::Listener,
    L::Addr: Clone + Sync,
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, LingerListener<L>>) -> Self {
        Self::new(stream.remote_addr().clone(), stream.io().handle().clone())
    }
}
