//! A whole platform in this process: the roles (through the gateway's facade), the REST API
//! and the consoles on a free loopback port.

use dtenge_api::platform::Platform as Roles;
use dtenge_api::serving::{Hosts, Limits};
use dtenge_core::{Error, Result};
use dtenge_env::{Clock, Entropy};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// A running platform; stops when dropped.
pub struct Platform {
    /// The roles as the gateway calls them.
    pub roles: Arc<Roles>,
    /// The web consoles, served beside the API.
    pub console: Arc<dtenge_console::Console>,
    pub addr: SocketAddr,
    data_dir: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl Platform {
    /// Open (or create) the roles under `data_dir` and serve the API and the consoles on
    /// `listen` (port 0 picks a free port). The roles run their own timers (expiry, resends).
    pub fn start(data_dir: &Path, listen: SocketAddr, clock: Arc<dyn Clock>, entropy: Entropy) -> Result<Platform> {
        let roles = Arc::new(Roles::open(data_dir, clock, entropy)?);
        let console = Arc::new(dtenge_console::Console::open(roles.clone(), data_dir, Entropy::from_os())?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("dtenge-api")
            .build()
            .map_err(|e| Error::internal(format!("runtime: {e}")))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(listen))
            .map_err(|e| Error::internal(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| Error::internal(e.to_string()))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = dtenge_api::router(roles.clone()).merge(dtenge_console::web::router(console.clone()));
        let hosts = Hosts::serving(addr, &[]);
        let server = std::thread::Builder::new()
            .name("dtenge-server".into())
            .spawn(move || {
                let shutdown = async move {
                    let _ = stopped.await;
                };
                if let Err(e) =
                    runtime.block_on(dtenge_api::serving::serve(app, listener, None, hosts, Limits::GATEWAY, shutdown))
                {
                    tracing::error!(error = %e, "API server stopped");
                }
            })
            .map_err(|e| Error::internal(format!("server thread: {e}")))?;
        Ok(Platform { roles, console, addr, data_dir: data_dir.to_path_buf(), stop: Some(stop), server: Some(server) })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the sandbox keeps its API clients' credentials.
    pub fn credentials_dir(&self) -> std::path::PathBuf {
        self.data_dir.join(dtenge_api::access::CREDENTIALS_DIR)
    }

    /// A REST client speaking for every API client of the sandbox.
    pub fn client(&self) -> Result<crate::Client> {
        crate::Client::with_credentials(&self.base_url(), &self.credentials_dir()).map_err(Error::internal)
    }

    /// Block until the server stops (it stops when [`Platform::stop`] is called elsewhere or
    /// the process is told to end).
    pub fn wait(mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }

    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }

    /// A handle that stops the server from another thread (e.g. a signal handler).
    pub fn stopper(&mut self) -> Option<tokio::sync::oneshot::Sender<()>> {
        self.stop.take()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.stop();
    }
}
