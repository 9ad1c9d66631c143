//! Processes of the workspace's binaries for process-level tests and benchmarks: a
//! child killed when dropped, `vichaind dev` spawned on given ports, free loopback ports.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A child process, SIGKILLed and reaped when dropped.
#[derive(Debug)]
pub struct Process(pub Child);

impl Process {
    /// Spawns `cmd`.
    pub fn spawn(cmd: &mut Command) -> Self {
        Self(cmd.spawn().expect("spawning a test process"))
    }

    /// SIGTERM, then the exit status; panics unless it exits within 20 s.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.0.try_wait().expect("waiting for a test process") {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `vichaind dev` process to spawn for a test: its home, gRPC port, metrics address, dev
/// workers and block time; logs at `warn` to /dev/null unless changed.
#[derive(Debug, Clone)]
pub struct DevNode<'a> {
    /// The node's home.
    pub home: &'a Path,
    /// Its gRPC port on 127.0.0.1.
    pub grpc: u16,
    /// Its metrics address (`127.0.0.1:0` when `None`).
    pub metrics: Option<u16>,
    /// In-process dev workers.
    pub workers: usize,
    /// Block time, e.g. `200ms`.
    pub block_time: &'a str,
}

impl<'a> DevNode<'a> {
    /// A chain at `home` on gRPC port `grpc`, without workers, with 200 ms blocks.
    pub fn new(home: &'a Path, grpc: u16) -> Self {
        Self {
            home,
            grpc,
            metrics: None,
            workers: 0,
            block_time: "200ms",
        }
    }

    /// With `n` dev workers.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// With the metrics server on `port`.
    pub fn metrics(mut self, port: u16) -> Self {
        self.metrics = Some(port);
        self
    }

    /// With blocks every `t`.
    pub fn block_time(mut self, t: &'a str) -> Self {
        self.block_time = t;
        self
    }

    /// The command (`vichaind` at `vichaind`), to adjust before spawning.
    pub fn command(&self, vichaind: &Path) -> Command {
        let mut cmd = Command::new(vichaind);
        cmd.args(["dev", "--workers", &self.workers.to_string()])
            .args(["--block-time", self.block_time])
            .arg("--grpc")
            .arg(format!("127.0.0.1:{}", self.grpc))
            .arg("--metrics-addr")
            .arg(match self.metrics {
                Some(p) => format!("127.0.0.1:{p}"),
                None => "127.0.0.1:0".into(),
            })
            .arg("--home")
            .arg(self.home)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Spawns it.
    pub fn spawn(&self, vichaind: &Path) -> Process {
        Process::spawn(&mut self.command(vichaind))
    }
}

/// A free loopback port (bound, read and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
