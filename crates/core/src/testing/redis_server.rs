//! [`RedisServer`]: a real `redis-server` for a test (features `testing` and `redis`): on a
//! free loopback port, without persistence (or with it:
//! [`RedisServer::start_persistent`]), killed when dropped. Shared by the integration
//! tests of every crate that keeps state in Redis.
//!
//! ```no_run
//! # async fn run() {
//! use tower_bulwark_core::testing::RedisServer;
//!
//! let Some(mut server) = RedisServer::start().await else { return }; // not installed
//! let url = server.url(); // connect the store or limiter under test here
//! server.stop(); // Redis is down
//! server.start_again().await; // a new, empty Redis on the same port
//! # let _ = url;
//! # }
//! ```
//!
//! Needs a runtime in real time (not `start_paused`): it waits for an outside process,
//! and Redis expires keys by its own clock. A test kit: it panics when the server cannot
//! be run at all.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How many times the server is polled before the test gives up (every 20 ms: 5 s).
const READY_POLLS: u32 = 250;

/// A `redis-server` child process on `127.0.0.1`, killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// Where a persistent server keeps its append-only file; removed when dropped.
    dir: Option<PathBuf>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers. `None`, after a loud
    /// message on stderr, when `redis-server` is not installed: the test then returns early.
    pub async fn start() -> Option<RedisServer> {
        RedisServer::start_in(None).await
    }

    /// Like [`start`](Self::start), with an append-only file fsynced at every write
    /// (`--appendonly yes --appendfsync always`) in a directory of its own: a write Redis
    /// answered survives [`stop`](Self::stop) (a kill) and is there after
    /// [`start_again`](Self::start_again).
    pub async fn start_persistent() -> Option<RedisServer> {
        static DIRS: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "bulwark-redis-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a directory for the append-only file");
        RedisServer::start_in(Some(dir)).await
    }

    async fn start_in(dir: Option<PathBuf>) -> Option<RedisServer> {
        // The port is free when chosen, but another process may take it before Redis
        // binds it: a server that exits instead of answering is tried again elsewhere.
        for _ in 0..5 {
            let port = free_port();
            let child = match spawn(port, dir.as_ref()) {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if let Some(dir) = &dir {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                    let _ = writeln!(
                        std::io::stderr(),
                        "\n!!!!! SKIPPED: redis-server not found; install the Debian package \
                         redis-server !!!!!\n"
                    );
                    return None;
                }
                Err(e) => panic!("could not run redis-server: {e}"),
            };
            let mut server = RedisServer {
                port,
                child: Some(child),
                dir: dir.clone(),
            };
            if server.wait_ready().await {
                return Some(server);
            }
            // The next try uses the same directory: not removed with this one.
            server.dir = None;
        }
        panic!("redis-server did not start on any of five free ports");
    }

    /// Where to connect: `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (Redis is down: connections are refused). Its keys are lost,
    /// unless it is persistent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new server on the same port, after [`stop`](Self::stop): empty, or, if
    /// persistent, with what the old one wrote.
    pub async fn start_again(&mut self) {
        self.stop();
        let child = spawn(self.port, self.dir.as_ref()).expect("redis-server ran before");
        self.child = Some(child);
        assert!(
            self.wait_ready().await,
            "redis-server did not start again on port {}",
            self.port
        );
    }

    /// Freezes the server (`SIGSTOP`): connections stay open and nothing is answered, as
    /// with a Redis that hangs.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a [paused](Self::pause) server run again; it answers what it was sent.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server is running").id();
        // Through `sh`, whose `kill` is built in: no `procps` needed.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{signal} {pid}"))
            .status()
            .expect("sh runs");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Polls until the server on the port is our child (its `INFO` names our process),
    /// or the child exited (the port was taken).
    async fn wait_ready(&mut self) -> bool {
        let child = self.child.as_mut().expect("a child was spawned");
        let pid = child.id();
        for _ in 0..READY_POLLS {
            if !matches!(child.try_wait(), Ok(None)) {
                self.child = None;
                return false;
            }
            if answering_pid(self.port).await == Some(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "redis-server on port {} did not answer within 5 s",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("a bound address").port()
}

fn spawn(port: u16, dir: Option<&PathBuf>) -> std::io::Result<Child> {
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--daemonize", "no"]);
    match dir {
        Some(dir) => command
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir),
        None => command.args(["--appendonly", "no"]),
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// The `process_id` the Redis on `port` reports in `INFO server`, if one answers.
async fn answering_pid(port: u16) -> Option<u32> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.write_all(b"INFO server\r\n").await.ok()?;
    let mut answer = Vec::new();
    let mut chunk = [0; 4096];
    while answer.len() < 64 * 1024 {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        answer.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&answer);
        if let Some(at) = text.find("\r\nprocess_id:") {
            let rest = &text[at + "\r\nprocess_id:".len()..];
            if let Some(end) = rest.find("\r\n") {
                return rest[..end].parse().ok();
            }
        }
    }
    None
}
