//! The accept loop in front of the warp filter (issue 18 M4: slow clients).
//!
//! warp's own server sets no timeouts, so the service serves the filter
//! itself with hyper's HTTP/1.1 connection builder over the tokio listener:
//! - **connection cap**: a semaphore of [`Limits::max_connections`] permits;
//!   the loop takes a permit *before* accepting, so at the cap new
//!   connections wait in the kernel's backlog instead of taking memory and
//!   file descriptors;
//! - **header-read timeout = keep-alive idle timeout**: hyper starts its
//!   header timer as soon as a connection waits for a request head, i.e. at
//!   accept and again after each response on a kept-alive connection, so a
//!   client that sends half a head, or nothing at all, is cut off after
//!   [`Limits::header_read_timeout`];
//! - **body-read timeout**: a whole-body deadline, applied where the body is
//!   read (`http::read_body`), before authentication; a late body gets 400
//!   and the connection is closed.
//!
//! HTTP/1.1 only: an HTTP/2 connection would need its own stream and idle
//! limits, and no client of the service uses h2c. Shutdown is graceful:
//! the listener is dropped, idle connections are closed, in-flight requests
//! finish.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tower_service::Service as _;

use crate::http::state::App;

/// The limits that bound what a connection may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// The peer of the connection a request came on (a request extension; per-IP limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let filter = super::filter(app);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and the like: wait a little instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = warp::service(filter.clone());
        let service = hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            let mut service = service.clone();
            async move {
                let response = service.call(request).await.unwrap_or_else(|never| match never {});
                Ok::<_, Infallible>(super::file_body::stream(response))
            }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
