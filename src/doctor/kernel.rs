//! What the doctor reads from the kernel, for the network namespace the
//! process runs in, without privileges: the TCP counters
//! (`/proc/net/netstat`, `/proc/net/snmp`), the listening sockets (the
//! `sock_diag` netlink interface `ss` uses) and two settings.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::SocketAddr;

/// A snapshot of the kernel's TCP counters, by name: `TcpExt` ones as
/// `TcpExtListenOverflows`, `Tcp` ones as `TcpEstabResets`, as `nstat`
/// names them.
///
/// # Example
///
/// ```
/// let before = linger::doctor::TcpCounters::read()?;
/// // ... traffic ...
/// let after = linger::doctor::TcpCounters::read()?;
/// let resets = after.since(&before).get("TcpExtTCPAbortOnClose");
/// # let _ = resets;
/// # Ok::<_, std::io::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpCounters {
    values: BTreeMap<String, u64>,
}

impl TcpCounters {
    /// Reads the counters now, of the network namespace of the calling
    /// thread (`/proc/thread-self/net`, or `/proc/net` on kernels older
    /// than 3.17).
    pub fn read() -> io::Result<Self> {
        let mut values = BTreeMap::new();
        for file in ["netstat", "snmp"] {
            let text = fs::read_to_string(format!("/proc/thread-self/net/{file}"))
                .or_else(|_| fs::read_to_string(format!("/proc/net/{file}")))?;
            parse_counters(&text, &mut values);
        }
        Ok(Self { values })
    }

    /// The counter `name`, 0 if this kernel has none of that name.
    pub fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }

    /// How much each counter grew since `earlier`.
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let values = self
            .values
            .iter()
            .map(|(name, &now)| (name.clone(), now.saturating_sub(earlier.get(name))))
            .collect();
        Self { values }
    }
}

/// Parses `/proc/net/netstat`-style text: pairs of lines, `Prefix: names`
/// then `Prefix: values`.
fn parse_counters(text: &str, into: &mut BTreeMap<String, u64>) {
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((prefix, names)), Some((_, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            // `Tcp: MaxConn` is -1: not a counter.
            if let Ok(value) = value.parse() {
                into.insert(format!("{prefix}{name}"), value);
            }
        }
    }
}

/// A listening TCP socket and its accept queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSocket {
    /// The address it listens on.
    pub local: SocketAddr,
    /// Connections in its accept queue, waiting for `accept`.
    pub queued: u32,
    /// Its listen backlog: the longest the accept queue may grow.
    pub backlog: u32,
}

impl ListenSocket {
    /// Every listening TCP socket of this network namespace, as the
    /// kernel's `sock_diag` netlink interface reports them (what `ss -ltn`
    /// shows: the queue as Recv-Q, the backlog as Send-Q).
    pub fn all() -> io::Result<Vec<Self>> {
        let mut sockets = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            sockets.extend(diag::listening(family)?);
        }
        Ok(sockets)
    }
}

/// The `sock_diag` request for listening TCP sockets, and its answers, as
/// bytes: no `unsafe`, socket2 sends and receives them.
mod diag {
    use std::io::{self, Read};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::time::Duration;

    use socket2::{Domain, Protocol, Socket, Type};

    use super::ListenSocket;

    const NETLINK_SOCK_DIAG: i32 = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const TCP_LISTEN: u32 = 10;
    /// `nlmsghdr`.
    const HEADER: usize = 16;
    /// `inet_diag_msg`: family, state, timer, retrans, the 48-byte socket
    /// id, then expires, rqueue, wqueue, uid, inode.
    const MESSAGE: usize = 72;
    /// Answers read before giving up: far more than any host's listeners
    /// need, so a misbehaving kernel cannot keep the loop going.
    const MAX_READS: usize = 10_000;

    pub(super) fn listening(family: i32) -> io::Result<Vec<ListenSocket>> {
        let socket = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::DGRAM,
            Some(Protocol::from(NETLINK_SOCK_DIAG)),
        )?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        socket.send(&request(family))?;
        let mut sockets = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        for _ in 0..MAX_READS {
            let n = (&socket).read(&mut buf)?;
            let mut at = 0;
            while at + HEADER <= n {
                let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
                if len < HEADER || at + len > n {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bad netlink message",
                    ));
                }
                match kind {
                    NLMSG_DONE => return Ok(sockets),
                    NLMSG_ERROR => return Err(io::Error::other("sock_diag refused")),
                    _ => sockets.extend(parse(&buf[at + HEADER..at + len])),
                }
                at += (len + 3) & !3;
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "sock_diag never finished",
        ))
    }

    /// `nlmsghdr` + `inet_diag_req_v2` asking for TCP sockets in LISTEN.
    fn request(family: i32) -> Vec<u8> {
        let len = (HEADER + 56) as u32;
        let mut bytes = Vec::with_capacity(len as usize);
        bytes.extend_from_slice(&len.to_ne_bytes());
        bytes.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        bytes.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        bytes.extend_from_slice(&[0; 8]); // sequence number, port id
        bytes.extend_from_slice(&[family as u8, libc::IPPROTO_TCP as u8, 0, 0]);
        bytes.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        bytes.extend_from_slice(&[0; 48]); // any socket id
        bytes
    }

    /// One `inet_diag_msg`: for a listener, `rqueue` is the accept queue's
    /// length and `wqueue` the backlog.
    pub(super) fn parse(msg: &[u8]) -> Option<ListenSocket> {
        if msg.len() < MESSAGE {
            return None;
        }
        let word = |at: usize| u32::from_ne_bytes(msg[at..at + 4].try_into().unwrap());
        let port = u16::from_be_bytes([msg[4], msg[5]]);
        let ip = match i32::from(msg[0]) {
            libc::AF_INET => IpAddr::V4(Ipv4Addr::new(msg[8], msg[9], msg[10], msg[11])),
            libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&msg[8..24]).ok()?)),
            _ => return None,
        };
        Some(ListenSocket {
            local: SocketAddr::new(ip, port),
            queued: word(56),
            backlog: word(60),
        })
    }
}

/// The kernel settings that shape resets from the accept queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSettings {
    /// `net.core.somaxconn`: the cap on every listen backlog.
    pub somaxconn: u32,
    /// `net.ipv4.tcp_abort_on_overflow`: a full accept queue answers with
    /// a reset instead of dropping the handshake's last ACK.
    pub tcp_abort_on_overflow: bool,
}

impl KernelSettings {
    /// Reads them now.
    pub fn read() -> io::Result<Self> {
        let read = |path: &str| -> io::Result<u32> {
            fs::read_to_string(path)?
                .trim()
                .parse()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        };
        Ok(Self {
            somaxconn: read("/proc/sys/net/core/somaxconn")?,
            tcp_abort_on_overflow: read("/proc/sys/net/ipv4/tcp_abort_on_overflow")? != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse_in_pairs_of_lines() {
        let mut values = BTreeMap::new();
        parse_counters(
            "TcpExt: ListenOverflows TCPAbortOnClose\nTcpExt: 3 7\nTcp: MaxConn EstabResets\nTcp: -1 9\n",
            &mut values,
        );
        assert_eq!(values["TcpExtListenOverflows"], 3);
        assert_eq!(values["TcpExtTCPAbortOnClose"], 7);
        assert_eq!(values["TcpEstabResets"], 9);
        assert!(!values.contains_key("TcpMaxConn"));
    }

    #[test]
    fn a_listener_parses_with_queue_and_backlog() {
        let mut msg = vec![0u8; 72];
        msg[0] = libc::AF_INET as u8;
        msg[1] = 10;
        msg[4..6].copy_from_slice(&8080u16.to_be_bytes());
        msg[8..12].copy_from_slice(&[127, 0, 0, 1]);
        msg[56..60].copy_from_slice(&5u32.to_ne_bytes());
        msg[60..64].copy_from_slice(&128u32.to_ne_bytes());
        let socket = diag::parse(&msg).unwrap();
        assert_eq!(socket.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((socket.backlog, socket.queued), (128, 5));
    }

    #[test]
    fn this_hosts_listeners_are_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sockets = ListenSocket::all().unwrap();
        let found = sockets
            .iter()
            .find(|s| s.local == addr)
            .expect("our listener");
        assert_eq!(found.backlog, 128, "std's backlog");
    }
}
