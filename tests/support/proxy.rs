//! Real reverse proxies in front of a test server, each started from its
//! Debian package's binary with a configuration written for the test, on a
//! loopback port, and killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait::wait_until;

/// The reverse proxies the tests put in front of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// nginx, request bodies streamed to the upstream
    /// (`proxy_request_buffering off`), upstream keep-alive.
    Nginx,
    /// HAProxy in HTTP mode, keep-alive both ways.
    Haproxy,
    /// Apache httpd with mod_proxy_http.
    Apache,
}

impl Kind {
    pub(crate) const ALL: [Self; 3] = [Self::Nginx, Self::Haproxy, Self::Apache];

    /// The binary, as Debian installs it.
    pub(crate) fn binary(self) -> &'static str {
        match self {
            Self::Nginx => "/usr/sbin/nginx",
            Self::Haproxy => "/usr/sbin/haproxy",
            Self::Apache => "/usr/sbin/apache2",
        }
    }

    /// Whether the binary is installed. In CI (`CI` set) a missing one is a
    /// failure: `.ci/run` installs them.
    pub(crate) fn available(self) -> bool {
        let found = Path::new(self.binary()).exists();
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "{} is missing in CI: .ci/run installs it",
                self.binary()
            );
            eprintln!("skipping {self:?}: {} is not installed", self.binary());
        }
        found
    }

    fn config(self, dir: &Path, port: u16, upstream: SocketAddr) -> String {
        let dir = dir.display();
        match self {
            Self::Nginx => format!(
                "worker_processes 1;\n\
                 daemon off;\n\
                 pid {dir}/nginx.pid;\n\
                 error_log {dir}/error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n\
                   access_log off;\n\
                   client_body_temp_path {dir}/body;\n\
                   proxy_temp_path {dir}/proxy;\n\
                   upstream app {{ server {upstream}; keepalive 16; }}\n\
                   server {{\n\
                     listen 127.0.0.1:{port};\n\
                     client_max_body_size 0;\n\
                     location / {{\n\
                       proxy_pass http://app;\n\
                       proxy_http_version 1.1;\n\
                       proxy_set_header Connection \"\";\n\
                       proxy_request_buffering off;\n\
                     }}\n\
                   }}\n\
                 }}\n"
            ),
            Self::Haproxy => format!(
                "global\n  maxconn 1000\n\
                 defaults\n  mode http\n  option http-keep-alive\n  timeout connect 5s\n  \
                 timeout client 30s\n  timeout server 30s\n\
                 frontend web\n  bind 127.0.0.1:{port}\n  default_backend app\n\
                 backend app\n  server app {upstream}\n"
            ),
            Self::Apache => {
                let modules = "/usr/lib/apache2/modules";
                format!(
                    "ServerRoot {dir}\n\
                     DefaultRuntimeDir {dir}\n\
                     PidFile {dir}/httpd.pid\n\
                     ErrorLog {dir}/error.log\n\
                     ServerName localhost\n\
                     Listen 127.0.0.1:{port}\n\
                     LoadModule mpm_event_module {modules}/mod_mpm_event.so\n\
                     LoadModule authz_core_module {modules}/mod_authz_core.so\n\
                     LoadModule proxy_module {modules}/mod_proxy.so\n\
                     LoadModule proxy_http_module {modules}/mod_proxy_http.so\n\
                     User www-data\n\
                     Group www-data\n\
                     KeepAlive On\n\
                     ProxyPass / http://{upstream}/\n\
                     ProxyPassReverse / http://{upstream}/\n"
                )
            }
        }
    }

    fn command(self, dir: &Path, config: &Path) -> Command {
        let mut command = Command::new(self.binary());
        match self {
            Self::Nginx => command.arg("-p").arg(dir).arg("-c").arg(config),
            Self::Haproxy => command.arg("-db").arg("-f").arg(config),
            Self::Apache => command.arg("-f").arg(config).arg("-DFOREGROUND"),
        };
        command
    }
}

/// A running proxy; killed when dropped.
pub(crate) struct Proxy {
    pub(crate) kind: Kind,
    pub(crate) addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts `kind` in front of `upstream` and waits (bounded) until it
    /// accepts connections.
    pub(crate) fn start(kind: Kind, upstream: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for sub in ["body", "proxy"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        // The proxies' workers may run as another user.
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("a+rwx")
            .arg(dir.path())
            .status();
        let port = free_port();
        let config: PathBuf = dir.path().join("proxy.conf");
        std::fs::write(&config, kind.config(dir.path(), port, upstream)).unwrap();
        let child = kind
            .command(dir.path(), &config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", kind.binary()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut proxy = Self {
            kind,
            addr,
            child,
            dir,
        };
        let up = wait_until(Duration::from_secs(15), Duration::from_millis(20), || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        if up.is_none() {
            let _ = proxy.child.kill();
            let output = proxy.child.stderr_after_exit();
            panic!("{kind:?} did not start: {output}");
        }
        proxy
    }

    /// The proxy's error log, for a failure message.
    pub(crate) fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

trait StderrAfterExit {
    fn stderr_after_exit(&mut self) -> String;
}

impl StderrAfterExit for Child {
    fn stderr_after_exit(&mut self) -> String {
        use std::io::Read;
        let mut err = String::new();
        if let Some(stderr) = self.stderr.as_mut() {
            let _ = stderr.read_to_string(&mut err);
        }
        let _ = self.wait();
        err
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM, so that nginx's and Apache's masters stop their workers;
        // SIGKILL if that takes more than a few seconds.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let stopped = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if stopped.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}
