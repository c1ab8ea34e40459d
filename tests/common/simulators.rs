//! The sandbox simulators (card channel and gateway) served in-process, for
//! the tests of the upstream adapters and the checkout page.

use std::{net::SocketAddr, path::Path, time::Duration};

use pelago_actors::ports::SecretString;
use pelago_card::sandbox::{self, SandboxConfig};
use tokio::sync::oneshot;

/// The control token the tests start the simulators with.
pub const CONTROL_TOKEN: &str = "test-sandbox-control-token";

pub struct Sandbox {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Sandbox {
    /// Serves the simulators on a free loopback port over `dir`, waiting
    /// `timeout_ms` at most for their own upstream calls.
    pub async fn start(dir: &Path, timeout_ms: u64) -> Sandbox {
        let (stop, stopped) = oneshot::channel::<()>();
        let config = SandboxConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.to_path_buf(),
            upstream_timeout_ms: timeout_ms,
            control_token: SecretString::new(CONTROL_TOKEN.into()),
        };
        let stopped = async move {
            let _ = stopped.await;
        };
        let (addr, task) = sandbox::serve(config, stopped).await.unwrap();
        Sandbox { addr, stop, task }
    }

    /// Stops the simulators and waits (bounded) for their server to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(15), self.task).await.unwrap().unwrap();
    }
}
