//! The client matrix: mainstream HTTP clients nobody here wrote upload
//! 16 MiB to a route that answers 413 without reading the body, against the
//! lab server with the crate and served plainly, in the same run. It prints
//! a table, client by outcome:
//!
//! ```text
//! cargo test --all-features --test client_matrix -- --nocapture
//! ```
//!
//! Clients: curl; Python's `http.client`, `urllib`, `requests`, `httpx`,
//! `aiohttp` (tests/clients/upload.py); Node's `fetch` and `http.request`
//! (tests/clients/upload.mjs); Go's `net/http` (tests/clients/upload.go);
//! and hyper-util's client, in this process. With the crate every client
//! sees its 413 every time; at least one loses it plainly. `.ci/run`
//! installs the toolchains and libraries; in CI a missing one fails the
//! test, elsewhere its row is skipped with a message.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use http_body_util::{BodyExt, Full};
use linger::LingerConfig;
use support::lab::Lab;

const TRIALS: usize = 5;
const UPLOAD: usize = 16 << 20;
const PATH: &str = "/reject/2048";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Whether `tool --version` runs; in CI a missing tool is a failure.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg(if tool == "go" { "version" } else { "--version" })
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{tool} is missing in CI");
        eprintln!("skipping the {tool} clients: {tool} is not installed");
    }
    found
}

/// Whether Python can import `lib`; in CI a missing library is a failure
/// (`.ci/run` installs them with pip).
fn python_has(lib: &str) -> bool {
    let module = lib.split('.').next().unwrap_or(lib);
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "Python {lib} is missing in CI"
        );
        eprintln!("skipping Python {lib}: not installed (pip install {module})");
    }
    found
}

/// One client of the matrix: how to run one upload to a URL.
enum Client {
    /// A command; its last line of output is the status or the error.
    External { name: String, command: Vec<String> },
    /// hyper-util's client, in this process.
    Hyper,
}

impl Client {
    fn name(&self) -> &str {
        match self {
            Self::External { name, .. } => name,
            Self::Hyper => "Rust hyper-util client",
        }
    }

    fn upload(&self, url: &str, file: &Path) -> String {
        match self {
            Self::External { command, .. } => {
                let mut args: Vec<String> = command.clone();
                for arg in &mut args {
                    *arg = arg
                        .replace("{url}", url)
                        .replace("{file}", &file.display().to_string());
                }
                match Command::new(&args[0]).args(&args[1..]).output() {
                    Ok(out) => {
                        let text = String::from_utf8_lossy(&out.stdout);
                        let last = text.lines().last().unwrap_or_default().trim().to_owned();
                        if last.is_empty() {
                            let err = String::from_utf8_lossy(&out.stderr);
                            format!("error: {}", err.lines().last().unwrap_or("no output"))
                        } else {
                            last
                        }
                    }
                    Err(e) => format!("error: {e}"),
                }
            }
            Self::Hyper => hyper_upload(url),
        }
    }
}

fn hyper_upload(url: &str) -> String {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
        let request = http::Request::post(url)
            .body(Full::new(bytes::Bytes::from(vec![b'u'; UPLOAD])))
            .unwrap();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            let response = client.request(request).await?;
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            Ok::<_, hyper_util::client::legacy::Error>(status)
        })
        .await;
        match answer {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => format!("error: {e:?}").chars().take(200).collect(),
            Err(_) => "error: timeout".into(),
        }
    })
}

/// Every client whose toolchain is here, with its command.
fn clients(scratch: &Path) -> Vec<Client> {
    let dir = clients_dir();
    let mut clients = Vec::new();
    let external = |name: &str, command: &[&str]| Client::External {
        name: name.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
    };
    if have("curl") {
        clients.push(external(
            "curl",
            &[
                "curl",
                "-s",
                "-S",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}\n",
                "--max-time",
                "30",
                "--data-binary",
                "@{file}",
                "{url}",
            ],
        ));
    }
    if have("python3") {
        let script = dir.join("upload.py").display().to_string();
        for lib in ["http.client", "urllib", "requests", "httpx", "aiohttp"] {
            if !python_has(lib) {
                continue;
            }
            clients.push(external(
                &format!("Python {lib}"),
                &["python3", &script, lib, "{url}"],
            ));
        }
    }
    if have("node") {
        let script = dir.join("upload.mjs").display().to_string();
        for api in ["fetch", "http.request"] {
            clients.push(external(
                &format!("Node {api}"),
                &["node", &script, api, "{url}"],
            ));
        }
    }
    if have("go") {
        let binary = scratch.join("upload-go");
        let built = Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&binary)
            .arg(dir.join("upload.go"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOTOOLCHAIN", "local")
            .env("GOCACHE", scratch.join("gocache"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(built, "go build tests/clients/upload.go failed");
        clients.push(external(
            "Go net/http",
            &[&binary.display().to_string(), "{url}"],
        ));
    }
    clients.push(Client::Hyper);
    clients
}

fn run(client: &Client, addr: SocketAddr, file: &Path) -> Vec<String> {
    let url = format!("http://{addr}{PATH}");
    (0..TRIALS).map(|_| client.upload(&url, file)).collect()
}

fn cell(outcomes: &[String]) -> String {
    let seen = outcomes.iter().filter(|o| *o == "413").count();
    let mut other: Vec<&String> = outcomes.iter().filter(|o| *o != "413").collect();
    other.dedup();
    match other.first() {
        None => format!("{seen}/{TRIALS}"),
        Some(first) => {
            // The end of a long error says what happened: "... broken pipe".
            let chars: Vec<char> = first.chars().collect();
            let short: String = chars[chars.len().saturating_sub(60)..].iter().collect();
            let cut = if chars.len() > 60 { "…" } else { "" };
            format!("{seen}/{TRIALS} ({cut}{short})")
        }
    }
}

#[test]
fn every_mainstream_client_sees_its_413() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("upload");
    std::fs::write(&file, vec![b'u'; UPLOAD]).unwrap();
    let cured = Lab::lingering(LingerConfig::new());
    let plain = Lab::plain();
    let mut failed_plainly = 0;
    let mut table = String::from("| client | with linger | plain axum |\n|---|---|---|\n");
    for client in clients(scratch.path()) {
        let with = run(&client, cured.addr, &file);
        let without = run(&client, plain.addr, &file);
        let row = format!(
            "| {} | {} | {} |\n",
            client.name(),
            cell(&with),
            cell(&without)
        );
        eprint!("{row}");
        table.push_str(&row);
        assert!(
            !with.iter().any(|o| o.starts_with("missing")),
            "{}: {with:?}",
            client.name()
        );
        assert!(
            with.iter().all(|o| o == "413"),
            "{} with linger: {with:?}",
            client.name()
        );
        failed_plainly += without.iter().filter(|o| *o != "413").count();
    }
    println!("\n{table}");
    assert!(
        failed_plainly > 0,
        "no client lost its 413 plainly: this test proves nothing here"
    );
}
