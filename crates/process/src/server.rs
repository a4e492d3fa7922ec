//! An HTTP server of a participant's process on a runtime of its own (the operations endpoint,
//! the node's API): bound at start, so a taken address is an error at start, and stopped
//! gracefully.

use dtenge_core::{Error, ErrorCode, Result};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

/// Resolves when the server is asked to stop.
pub(crate) type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long a stopping server lets the requests in flight finish.
const STOP_WAIT_MS_MAX: u64 = 2_000;

pub(crate) struct Server {
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    local_addr: SocketAddr,
}

impl Server {
    /// Bind `address` and serve on `workers` threads named `name`: `serve` gets the listener
    /// and the signal to stop on.
    pub(crate) fn start<Serve, Served>(name: &str, address: SocketAddr, workers: usize, serve: Serve) -> Result<Server>
    where
        Serve: FnOnce(tokio::net::TcpListener, StopSignal) -> Served,
        Served: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        assert!((1..=8).contains(&workers), "a server of a participant's process runs on 1 to 8 threads");
        let failed = |e: std::io::Error| Error::new(ErrorCode::Internal, format!("{name} on {address}: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(failed)?;
        let listener =
            std::net::TcpListener::bind(address).and_then(|l| l.set_nonblocking(true).map(|()| l)).map_err(failed)?;
        let local_addr = listener.local_addr().map_err(failed)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(failed)?
        };
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let stop: StopSignal = Box::pin(async move {
            let _ = stopped.await;
        });
        let served = {
            let _entered = runtime.enter();
            serve(listener, stop)
        };
        let name = name.to_string();
        runtime.spawn(async move {
            if let Err(e) = served.await {
                tracing::error!(server = %name, error = %e, "a server of the participant stopped");
            }
        });
        Ok(Server { runtime: Some(runtime), shutdown: Some(shutdown), local_addr })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_millis(STOP_WAIT_MS_MAX));
        }
    }
}
