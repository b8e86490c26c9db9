//! The `Connection` header rules the middleware applies, and only those
//! hyper does not apply itself.
//!
//! hyper writes `Connection: close` on its own whenever it has turned
//! keep-alive off before it encodes a response head: the request said
//! `Connection: close`, HTTP/1.0 without keep-alive, or its graceful
//! shutdown began (`enforce_version` in hyper's `proto/h1/conn.rs`). It
//! does not know, when it encodes the head, that the handler left the
//! request body unread, nor that the connection was marked closing: those
//! two are the middleware's.

use http::header::{HeaderMap, HeaderValue, CONNECTION};
use http::request::Parts;
use http::Version;

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

/// Whether the request itself ends the connection (`Connection: close`, or
/// HTTP/1.0 and older without keep-alive), so that discarding its unread
/// body to keep the connection is pointless. hyper writes the header for
/// these; the middleware asks only to skip a rescue.
pub(crate) fn request_ends_connection(parts: &Parts) -> bool {
    if parts.version <= Version::HTTP_10 {
        !has_token(&parts.headers, "keep-alive")
    } else {
        has_token(&parts.headers, "close")
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

    fn parts(version: Version, connection: Option<&str>) -> Parts {
        let mut builder = http::Request::builder().version(version);
        if let Some(value) = connection {
            builder = builder.header(CONNECTION, value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn request_close_rules() {
        let ends = |v, c| request_ends_connection(&parts(v, c));
        assert!(!ends(Version::HTTP_11, None));
        assert!(ends(Version::HTTP_11, Some("close")));
        assert!(ends(Version::HTTP_11, Some("Upgrade, CLOSE ")));
        assert!(!ends(Version::HTTP_11, Some("closed")));
        assert!(ends(Version::HTTP_10, None));
        assert!(!ends(Version::HTTP_10, Some("Keep-Alive")));
        assert!(ends(Version::HTTP_09, None));
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
