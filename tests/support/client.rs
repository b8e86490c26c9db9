//! One raw-socket HTTP/1.1 client: connect with every wait bounded, parse a
//! response, and tell a clean close (EOF after the server's FIN) from a
//! reset.
//!
//! Blocking std sockets, so it shares no code with the server side, plus
//! the two async reads the tokio tests need.

use std::io::{self, ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The bound on every connect, read and write of a blocking client.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The bound on reading a connection to its end ([`read_to_close`]).
pub(crate) const READ_LIMIT: Duration = Duration::from_secs(15);
/// How long the client waits after EOF before it asks its socket whether a
/// reset followed the FIN.
const SETTLE: Duration = Duration::from_millis(20);
/// The longest response head read.
const MAX_HEAD: usize = 64 << 10;

/// A connected client socket, every connect, read and write bounded by
/// [`IO_TIMEOUT`]; `rcvbuf` is set before connecting so the window the
/// server sees is small from the first segment.
pub(crate) fn connect(addr: SocketAddr, rcvbuf: Option<usize>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// A connected Unix stream socket, reads and writes bounded by
/// [`IO_TIMEOUT`].
#[cfg(unix)]
pub(crate) fn connect_unix(path: &std::path::Path) -> io::Result<std::os::unix::net::UnixStream> {
    let stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// A response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) status: u16,
    /// The head lower-cased, status line first, without the blank line.
    pub(crate) text: String,
    /// Its length on the wire, the blank line included.
    pub(crate) len: usize,
}

impl Head {
    /// Parses the head at the start of `bytes`; `None` while it is
    /// incomplete.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Result<Head, String>> {
        let len = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let text = String::from_utf8_lossy(&bytes[..len - 4]).to_ascii_lowercase();
        let status = text
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok());
        Some(match status {
            Some(status) => Ok(Head { status, text, len }),
            None => Err(format!("bad status line: {:?}", text.lines().next())),
        })
    }

    /// The first value of the header `name` (lower case), trimmed.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim())
    }

    pub(crate) fn content_length(&self) -> Option<usize> {
        self.header("content-length")?.parse().ok()
    }

    /// The body's length: none for 1xx, 204 and 304, else Content-Length.
    pub(crate) fn body_len(&self) -> Option<usize> {
        match self.status {
            100..=199 | 204 | 304 => Some(0),
            _ => self.content_length(),
        }
    }

    /// Whether it says `Connection: close`.
    pub(crate) fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim() == "close"))
    }
}

/// The first response in `bytes` once it is complete: its head and its
/// length on the wire; `None` while incomplete.
pub(crate) fn first_response(bytes: &[u8]) -> Option<Result<(Head, usize), String>> {
    let head = match Head::parse(bytes)? {
        Ok(head) => head,
        Err(e) => return Some(Err(e)),
    };
    let Some(body) = head.body_len() else {
        return Some(Err("response without content-length".into()));
    };
    let len = head.len + body;
    (bytes.len() >= len).then_some(Ok((head, len)))
}

/// One response read off a connection.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) head: Head,
    pub(crate) body: Vec<u8>,
}

/// Collects a head one byte at a time, so nothing after it is consumed.
#[derive(Default)]
struct HeadReader {
    bytes: Vec<u8>,
}

impl HeadReader {
    /// Takes what one read returned (`None`: EOF); the head once complete.
    fn push(&mut self, byte: Option<u8>) -> Option<io::Result<Head>> {
        let Some(byte) = byte else {
            let got = String::from_utf8_lossy(&self.bytes);
            let e = io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("EOF in the head: {got:?}"),
            );
            return Some(Err(e));
        };
        self.bytes.push(byte);
        if self.bytes.ends_with(b"\r\n\r\n") {
            let head = Head::parse(&self.bytes).expect("a complete head");
            return Some(head.map_err(invalid));
        }
        (self.bytes.len() >= MAX_HEAD).then(|| Err(invalid("head too long")))
    }
}

fn invalid(e: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e.into())
}

fn body_len(head: &Head) -> io::Result<usize> {
    head.body_len()
        .ok_or_else(|| invalid(format!("no content-length: {}", head.text)))
}

/// Reads one response whose body length is known, and nothing after it.
pub(crate) fn read_response(stream: &mut impl Read) -> io::Result<Response> {
    let mut reader = HeadReader::default();
    let mut byte = [0u8; 1];
    let head = loop {
        let read = match stream.read(&mut byte) {
            Ok(0) => None,
            Ok(_) => Some(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(head) = reader.push(read) {
            break head?;
        }
    };
    let mut body = vec![0; body_len(&head)?];
    stream.read_exact(&mut body)?;
    Ok(Response { head, body })
}

/// [`read_response`] on a tokio stream (bound it with a timeout).
pub(crate) async fn read_response_async(
    stream: &mut (impl AsyncRead + Unpin),
) -> io::Result<Response> {
    let mut reader = HeadReader::default();
    let mut byte = [0u8; 1];
    let head = loop {
        let read = match stream.read(&mut byte).await? {
            0 => None,
            _ => Some(byte[0]),
        };
        if let Some(head) = reader.push(read) {
            break head?;
        }
    };
    let mut body = vec![0; body_len(&head)?];
    stream.read_exact(&mut body).await?;
    Ok(Response { head, body })
}

/// How a connection's input ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// EOF, and no reset after it: the server's FIN, a clean close.
    Eof,
    /// EOF, then a reset (`SO_ERROR`): the FIN was followed by an RST.
    EofThenReset,
    /// A read failed with a reset.
    Reset,
    /// No EOF in time.
    Timeout,
    /// A read failed otherwise.
    Other(String),
}

impl End {
    /// EOF after the server's FIN, with no reset.
    pub(crate) fn is_clean(&self) -> bool {
        *self == End::Eof
    }
}

/// A socket whose pending error (`SO_ERROR`) can be taken.
pub(crate) trait PendingError {
    fn pending_error(&self) -> io::Result<Option<io::Error>>;
}

impl PendingError for TcpStream {
    fn pending_error(&self) -> io::Result<Option<io::Error>> {
        self.take_error()
    }
}

#[cfg(unix)]
impl PendingError for std::os::unix::net::UnixStream {
    fn pending_error(&self) -> io::Result<Option<io::Error>> {
        self.take_error()
    }
}

/// Reads to EOF, an error, or `deadline`: what arrived and how it ended.
///
/// A reset that arrives after the FIN does not show in `read` on Linux (the
/// socket is in CLOSE_WAIT: reads return EOF and the reset leaves `EPIPE` in
/// `SO_ERROR`), so after EOF the socket's pending error is checked too.
pub(crate) fn read_to_end<S: Read + PendingError>(
    stream: &mut S,
    deadline: Instant,
) -> (Vec<u8>, End) {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        if Instant::now() > deadline {
            return (got, End::Timeout);
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                std::thread::sleep(SETTLE);
                return match stream.pending_error() {
                    Ok(None) => (got, End::Eof),
                    _ => (got, End::EofThenReset),
                };
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, End::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, End::Reset),
            Err(e) => return (got, End::Other(e.to_string())),
        }
    }
}

/// [`read_to_end`] within [`READ_LIMIT`] from now.
pub(crate) fn read_to_close<S: Read + PendingError>(stream: &mut S) -> (Vec<u8>, End) {
    read_to_end(stream, Instant::now() + READ_LIMIT)
}

/// [`read_to_end`] on a tokio stream, within `limit`.
pub(crate) async fn read_to_end_async(
    stream: &mut tokio::net::TcpStream,
    limit: Duration,
) -> (Vec<u8>, End) {
    let mut got = Vec::new();
    let end = match tokio::time::timeout(limit, stream.read_to_end(&mut got)).await {
        Err(_) => End::Timeout,
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionReset => End::Reset,
        Ok(Err(e)) => End::Other(e.to_string()),
        Ok(Ok(_)) => {
            tokio::time::sleep(SETTLE).await;
            match stream.take_error() {
                Ok(None) => End::Eof,
                _ => End::EofThenReset,
            }
        }
    };
    (got, end)
}
