//! Replies whose body is a file (the reconciliation files, MARKETPLACE.md
//! §10), read and sent 64 KiB at a time so a large file never sits in memory.
//!
//! warp's body type cannot be built from a stream outside warp, so the reply
//! carries the path as a response extension ([`FileBody`], set by
//! `http::to_response`) and the accept loop (`listener.rs`) swaps the body for
//! the file's chunks, read off the async runtime.

use std::{io::Read, path::PathBuf};

use futures::{StreamExt, stream::BoxStream};
use http_body_util::{Either, StreamBody};
use hyper::body::{Bytes, Frame};

/// The file a reply's body is read from.
#[derive(Debug, Clone)]
pub struct FileBody(pub PathBuf);

/// A file's chunks as a body.
pub type Chunks = StreamBody<BoxStream<'static, Result<Frame<Bytes>, std::io::Error>>>;

const CHUNK_BYTES: usize = 64 * 1024;

/// `response` as it is, or with its body read from the file it names.
pub fn stream<B>(response: http::Response<B>) -> http::Response<Either<B, Chunks>> {
    let (mut parts, body) = response.into_parts();
    let Some(FileBody(path)) = parts.extensions.remove::<FileBody>() else {
        return http::Response::from_parts(parts, Either::Left(body));
    };
    drop(body);
    let chunks = futures::stream::try_unfold((path, None), |(path, file)| async move {
        let (chunk, file, path) = tokio::task::spawn_blocking(move || read_chunk(path, file))
            .await
            .map_err(std::io::Error::other)??;
        Ok::<_, std::io::Error>((!chunk.is_empty()).then(|| (Frame::data(chunk), (path, Some(file)))))
    });
    http::Response::from_parts(parts, Either::Right(StreamBody::new(chunks.boxed())))
}

/// The next chunk of `path` (opened on the first call); empty at its end.
fn read_chunk(
    path: PathBuf,
    file: Option<std::fs::File>,
) -> std::io::Result<(Bytes, std::fs::File, PathBuf)> {
    let mut file = match file {
        Some(f) => f,
        None => std::fs::File::open(&path)?,
    };
    let mut buf = vec![0; CHUNK_BYTES];
    let n = file.read(&mut buf)?;
    buf.truncate(n);
    Ok((Bytes::from(buf), file, path))
}
