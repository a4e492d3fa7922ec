//! The real `dtenge up` process for the integration tests: start it on a data directory and a
//! free loopback port, stop it with SIGKILL or SIGTERM, read what it printed.
//!
//! Each test binary (`crash.rs`, `operations.rs`) uses a part of it.
#![allow(dead_code)]

use dtenge_scenarios::Client;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long the binary may take to answer /health.
pub const STARTUP_MAX: Duration = Duration::from_secs(30);

/// A running `dtenge up`; killed (SIGKILL) when dropped, also when an assertion fails.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// The sandbox's API credentials, under the data directory.
    pub credentials: PathBuf,
    pub port: u16,
    out: PathBuf,
    err: PathBuf,
}

impl Server {
    /// Start the binary on `data` and a free loopback port; wait until /health answers.
    /// Its stdout and stderr go to `<logs>/<name>.out` and `<logs>/<name>.err`.
    pub fn start(data: &Path, logs: &Path, name: &str) -> Server {
        Server::start_with(data, logs, name, &[])
    }

    /// [`Server::start`] with more arguments to `up` (e.g. `--clock manual`).
    pub fn start_with(data: &Path, logs: &Path, name: &str, args: &[&str]) -> Server {
        Server::start_command(data, logs, name, args, Command::new(env!("CARGO_BIN_EXE_dtenge")))
    }

    /// [`Server::start_with`] with more environment variables (the vault's: an HSM's module,
    /// token and PIN, the key store's passphrase).
    pub fn start_with_env(data: &Path, logs: &Path, name: &str, args: &[&str], vars: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dtenge"));
        command.envs(vars.iter().copied());
        Server::start_command(data, logs, name, args, command)
    }

    /// [`Server::start`] with the soft limit on open files a distribution gives a service by
    /// default (`open_files`), under the test's own hard limit.
    pub fn start_with_open_files(data: &Path, logs: &Path, name: &str, open_files: u64) -> Server {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_dtenge"));
        // SAFETY: between fork and exec the closure calls only `getrlimit` and `setrlimit`,
        // which are async-signal-safe, on a struct of its own frame.
        unsafe {
            command.pre_exec(move || {
                let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                limit.rlim_cur = open_files.min(limit.rlim_max);
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Server::start_command(data, logs, name, &[], command)
    }

    fn start_command(data: &Path, logs: &Path, name: &str, args: &[&str], mut command: Command) -> Server {
        let port = free_port();
        let out = logs.join(format!("{name}.out"));
        let err = logs.join(format!("{name}.err"));
        let child = command
            .arg("up")
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout log"))
            .stderr(File::create(&err).expect("stderr log"))
            .spawn()
            .expect("start dtenge");
        let credentials = data.join("credentials");
        let mut server = Server { child, base: format!("http://127.0.0.1:{port}"), credentials, port, out, err };
        let client = Client::new(&server.base);
        let started = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait().expect("child status") {
                panic!("dtenge ({name}) exited with {status} before answering\n{}", server.logs());
            }
            if matches!(client.get("/health"), Ok(h) if h["status"] == "ok") {
                println!("{name}: dtenge answers at {} after {:.2} s", server.base, started.elapsed().as_secs_f64());
                return server;
            }
            if started.elapsed() > STARTUP_MAX {
                server.kill();
                panic!("dtenge ({name}) did not answer /health within {STARTUP_MAX:?}\n{}", server.logs());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A REST client speaking for every API client of the sandbox.
    pub fn client(&self) -> Client {
        Client::with_credentials(&self.base, &self.credentials).expect("the sandbox's credentials")
    }

    /// The demo's world on this server.
    pub fn world(&self) -> dtenge_scenarios::World {
        dtenge_scenarios::World::new(&self.base, &self.credentials).expect("the sandbox's credentials")
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, what a service manager sends to stop a service.
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: `kill` only sends a signal; `pid` is our own child, not yet reaped (a reaped
        // pid could be reused), since only `wait_exit` and `kill` reap it.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "kill(SIGTERM): {}", std::io::Error::last_os_error());
    }

    /// Wait at most `limit_ms` for the process to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, limit_ms: u64) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(limit_ms) {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// What the process printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// What the process printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Both logs, for a failure message.
    pub fn logs(&self) -> String {
        logs_of(&[self.out.clone(), self.err.clone()])
    }

    /// Wait at most `limit_ms` until stdout contains `text`.
    pub fn wait_for_stdout(&self, text: &str, limit_ms: u64) -> bool {
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(limit_ms) {
            if self.stdout().contains(text) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

pub fn logs_of(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| format!("--- {}\n{}", f.display(), std::fs::read_to_string(f).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}
