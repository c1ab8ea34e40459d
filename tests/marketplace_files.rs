//! Files over real HTTP (MARKETPLACE.md §2): the only route above 64 KiB, its
//! own 5 MiB bound checked before authentication (declared and read), the
//! type checked by magic bytes, the content sealed at rest and never served,
//! and another merchant's file a 404.

mod common;

use common::{Json, Service, marketplace::upload};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

const FIVE_MIB: usize = 5 * 1024 * 1024;

fn pdf_with(marker: &[u8], size: usize) -> Vec<u8> {
    let mut pdf = b"%PDF-1.7\n".to_vec();
    while pdf.len() + marker.len() < size {
        pdf.extend_from_slice(marker);
    }
    pdf.resize(size, b'\n');
    pdf
}

/// Sends `len` bytes without credentials, chunked (the size is only read) or
/// with a Content-Length (declared); the whole answer.
async fn unsigned_upload(svc: &Service, path: &str, len: usize, chunked: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = svc.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let framing =
        if chunked { "Transfer-Encoding: chunked".to_owned() } else { format!("Content-Length: {len}") };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/pdf\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'%'; 64 * 1024];
    let mut sent = 0;
    while sent < len {
        let n = chunk.len().min(len - sent);
        let framed = if chunked {
            [format!("{n:x}\r\n").as_bytes(), &chunk[..n], b"\r\n"].concat()
        } else {
            chunk[..n].to_vec()
        };
        if tcp.write_all(&framed).await.is_err() {
            break; // the server may answer and close before the end
        }
        sent += n;
    }
    if chunked {
        let _ = tcp.write_all(b"0\r\n\r\n").await;
    }
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_bounded_checked_sealed_and_private() {
    let svc = Service::temp(&[]);
    let m = svc.merchant("Files Market").await;
    let other = svc.merchant("Other Market").await;

    // Over 5 MiB: 413 before authentication, declared or read.
    for chunked in [false, true] {
        let status = unsigned_upload(&svc, "/v1/files", FIVE_MIB + 1, chunked).await;
        assert!(status.starts_with("HTTP/1.1 413"), "chunked {chunked}: {status}");
        assert!(status.contains("payload_too_large") && status.contains("over 5 MiB"), "{status}");
        // Exactly 5 MiB is read, then authentication refuses the unsigned request.
        let status = unsigned_upload(&svc, "/v1/files", FIVE_MIB, chunked).await;
        assert!(status.starts_with("HTTP/1.1 401"), "chunked {chunked}: {status}");
    }
    // Every other route keeps 64 KiB.
    let status = unsigned_upload(&svc, "/v1/cardholders", 64 * 1024 + 1, false).await;
    assert!(status.starts_with("HTTP/1.1 413") && status.contains("over 64 KiB"), "{status}");

    // Refused uploads: 400 on `file`, nothing created.
    let png_magic = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0];
    for (content_type, body) in [
        ("application/pdf", b"".to_vec()),
        ("text/plain", b"%PDF-1.7 hello".to_vec()),
        ("image/png", b"%PDF-1.7 hello".to_vec()),
        ("application/pdf", png_magic.to_vec()),
        ("image/jpeg", b"GIF89a......".to_vec()),
    ] {
        let (status, e) = upload(&svc, &m.key, content_type, &body, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{content_type}: {e}");
        assert_eq!((e["error"]["code"].as_str(), e.param()), (Some("invalid_request"), Some("file")));
    }

    // A 3 MiB PDF (above 64 KiB) with a marker that must not reach the disk in clear.
    let marker = b"MARKETPLACE-SECRET-DOCUMENT-9F3A";
    let pdf = pdf_with(marker, 3 * 1024 * 1024);
    let (status, file) = upload(&svc, &m.key, "application/pdf", &pdf, "file-1").await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    let id = file.str("id").to_owned();
    assert!(id.starts_with("file_"));
    assert_eq!(file["content_type"], "application/pdf");
    assert_eq!(file["size"], pdf.len() as u64);
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&pdf)));
    assert!(file.get("content").is_none());
    // The same Idempotency-Key: the same file, not a second one.
    let (status, again) = upload(&svc, &m.key, "application/pdf", &pdf, "file-1").await;
    assert_eq!((status, &again["id"]), (StatusCode::CREATED, &file["id"]));
    let (status, png) = upload(&svc, &m.key, "image/png", &png_magic, "").await;
    assert_eq!((status, png.str("content_type")), (StatusCode::CREATED, "image/png"));

    let (status, got) = m.call(Method::GET, &format!("/v1/files/{id}"), None).await;
    assert_eq!((status, &got), (StatusCode::OK, &file));
    let (status, _) = other.call(Method::GET, &format!("/v1/files/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another merchant's file");
    let (status, _) = m.call(Method::GET, "/v1/files/file_01JNOPE0000000000000000000", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = m.call(Method::GET, &format!("/v1/files/{id}/content"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the content is never served");
    let openapi = svc.documents(&[], &["/v1/files"]).await;
    let post = &openapi["paths"]["/v1/files"]["post"];
    assert!(post["requestBody"]["content"]["image/png"].is_object(), "{post}");

    // Sealed at rest: the marker is in no file of the data dir, nor in the log.
    svc.at_rest().assert_nowhere(&[marker]);
}
