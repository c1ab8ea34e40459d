//! The sandbox simulators (card channel and gateway) served in-process, for
//! the tests of the upstream adapters and the checkout page.

use std::{net::SocketAddr, path::Path, time::Duration};

use pelago_actors::ports::SecretString;
use pelago_card::{
    sandbox::{self, SandboxConfig},
    upstream::{SandboxControl, UpstreamClient},
};
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

    /// The control client of these simulators, over `client`.
    pub fn control(&self, client: &UpstreamClient) -> SandboxControl {
        client.sandbox_control(&format!("http://{}", self.addr), SecretString::new(CONTROL_TOKEN.into()))
    }

    /// The control client, with the gateway account `merchant_id` (signing
    /// with `api_key`) registered, its callbacks to `receiver`'s `/callbacks/gateway`.
    pub async fn with_gateway_account(
        &self,
        client: &UpstreamClient,
        (merchant_id, api_key): (&str, &str),
        receiver: SocketAddr,
    ) -> SandboxControl {
        let control = self.control(client);
        let callbacks = format!("http://{receiver}/callbacks/gateway");
        let key = SecretString::new(api_key.into());
        control.register_gateway_account(merchant_id, &key, &callbacks).await.unwrap();
        control
    }

    /// Stops the simulators and waits (bounded) for their server to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(15), self.task).await.unwrap().unwrap();
    }
}
