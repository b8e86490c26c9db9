//! The `Connection` header rules the middleware applies, and only those
//! hyper does not apply itself.
//!
//! hyper writes `Connection: close` on its own whenever it has turned
//! keep-alive off before it encodes a response head: the request said
//! `Connection: close`, HTTP/1.0 without keep-alive, or its graceful
//! shutdown began (`enforce_version` in hyper's `proto/h1/conn.rs`). It
//! does not know, when it encodes the head, that the handler left the
//! request body unread, that the connection was marked closing, nor that
//! the listener's shutdown began before the server's own: those are the
//! middleware's.

use http::header::{HeaderMap, HeaderValue, CONNECTION};
use http::{Response, StatusCode};

/// Whether the middleware leaves `res` as it is, whatever else it knows: a
/// `101 Switching Protocols` hands the connection to another protocol,
/// which ends it its own way.
#[inline]
pub(crate) fn leaves_alone<R>(res: &Response<R>) -> bool {
    res.status() == StatusCode::SWITCHING_PROTOCOLS
}

/// Whether `Connection` lists `close`.
pub(crate) fn has_close(headers: &HeaderMap) -> bool {
    has_token(headers, "close")
}

/// Adds `Connection: close` unless the headers already carry it.
pub(crate) fn ensure_close(headers: &mut HeaderMap) {
    if !has_close(headers) {
        headers.append(CONNECTION, HeaderValue::from_static("close"));
    }
}

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_is_a_token_of_connection() {
        let headers = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONNECTION, HeaderValue::from_static(v));
            h
        };
        assert!(has_close(&headers("close")));
        assert!(has_close(&headers("Upgrade, CLOSE ")));
        assert!(!has_close(&headers("closed")));
        assert!(!has_close(&HeaderMap::new()));
    }

    #[test]
    fn ensure_close_adds_one_header_once() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        ensure_close(&mut headers);
        ensure_close(&mut headers);
        assert!(has_close(&headers));
        assert_eq!(headers.get_all(CONNECTION).iter().count(), 2);
    }
}
