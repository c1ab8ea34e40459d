use std::{collections::HashMap, net::SocketAddr};

use futures::future::BoxFuture;

use super::*;

const LIVE: EgressPolicy = EgressPolicy { allow_loopback: false };
const SANDBOX: EgressPolicy = EgressPolicy { allow_loopback: true };

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn refuses_internal_ranges_and_allows_public_ones() {
    for refused in [
        "169.254.169.254", // cloud metadata
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "100.100.100.200",
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "224.0.0.1",
        "240.0.0.1",
        "198.18.0.1",
        "192.0.0.170",
        "127.0.0.1",
        "::1",
        "::",
        "fd00:ec2::254", // AWS metadata over IPv6
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
        "2002:0a00:0001::1",  // 6to4 of 10.0.0.1
        "::10.0.0.1",
    ] {
        assert!(LIVE.refuses(ip(refused)), "{refused} must be refused");
    }
    for allowed in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
        assert!(!LIVE.refuses(ip(allowed)), "{allowed} must be allowed");
    }
}

#[test]
fn sandbox_allows_loopback_only() {
    for loopback in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
        assert!(!SANDBOX.refuses(ip(loopback)), "{loopback} is allowed in sandbox");
        assert!(LIVE.refuses(ip(loopback)), "{loopback} is refused live");
    }
    for refused in ["169.254.169.254", "10.0.0.1", "fd00:ec2::254", "0.0.0.0"] {
        assert!(SANDBOX.refuses(ip(refused)), "{refused} is refused in sandbox too");
    }
}

/// Names from a table, as a DNS server that rebinds would answer.
struct Table(HashMap<&'static str, Vec<SocketAddr>>);

impl Lookup for Table {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        let found = self.0.get(host.as_str()).cloned().unwrap_or_default();
        Box::pin(async move { Ok(found) })
    }
}

/// One HTTP/1.1 server on loopback answering 204 to every connection; counts them.
async fn counting_server() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn a_name_resolving_to_a_refused_address_is_never_connected() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (port, accepted) = counting_server().await;
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let table = Table(HashMap::from([
        ("receiver.test", vec![loopback]),
        ("rebound.test", vec!["169.254.169.254:0".parse().unwrap()]),
        ("mixed.test", vec!["93.184.216.34:0".parse().unwrap(), "10.0.0.7:0".parse().unwrap()]),
    ]));
    let client = reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(GuardedResolver::new(SANDBOX, table))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let ok = client.post(format!("http://receiver.test:{port}/hook")).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 204, "an allowed name is delivered to");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);

    for name in ["rebound.test", "mixed.test"] {
        let err = client.post(format!("http://{name}:{port}/hook")).send().await.unwrap_err();
        assert!(
            matches!(refusal_in(&err), Some(EgressRefused::Refused)),
            "{name}: expected a refusal, got {err:?}"
        );
    }
    let err = client.post(format!("http://unknown.test:{port}/hook")).send().await.unwrap_err();
    assert!(matches!(refusal_in(&err), Some(EgressRefused::NoAddress)), "{err:?}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "no refused name reached a socket");
}
