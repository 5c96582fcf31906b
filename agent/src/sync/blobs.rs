//! Content-addressed blobs (check-in photos, signatures) waiting for upload.
//!
//! [`put`] writes the bytes to `DIR/blobs/<sha256>` (temporary file, synced,
//! renamed) with the content type beside it in `<sha256>.type`, and answers the
//! digest the kiosk records in its event. [`upload_pending`] sends each one to
//! `PUT /sync/v1/blobs/{sha256}`, resuming at the offset the server reports
//! (`HEAD`, `Upload-Offset`), and deletes the local copy only once the server
//! has confirmed the complete, digest-checked blob.

use super::client::{error_from, RequestError, SyncClient};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const BLOB_DIR: &str = "blobs";
/// The largest blob the server takes by default; larger ones are refused here.
pub const MAX_BLOB_BYTES: usize = 2 << 20;
/// Bytes per upload request, so a cut loses at most this much.
pub const CHUNK_BYTES: usize = 256 << 10;
const TYPE_SUFFIX: &str = ".type";

#[derive(Debug, Error)]
pub enum BlobError {
    #[error("blob is {0} bytes; at most {MAX_BLOB_BYTES} are uploaded")]
    TooLarge(usize),
    #[error("blob store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("the server discarded blob {0}: its bytes do not match the digest")]
    DigestMismatch(String),
}

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(BLOB_DIR)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_owned(),
        source,
    }
}

fn is_digest(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Queues `bytes` for upload; answers their SHA-256 (hex). Putting the same
/// bytes twice queues them once.
pub fn put(data_dir: &Path, bytes: &[u8], content_type: &str) -> Result<String, BlobError> {
    if bytes.len() > MAX_BLOB_BYTES {
        return Err(BlobError::TooLarge(bytes.len()));
    }
    let sha = hex::encode(Sha256::digest(bytes));
    let dir = dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    for (name, content) in [
        (format!("{sha}{TYPE_SUFFIX}"), content_type.as_bytes()),
        (sha.clone(), bytes),
    ] {
        let target = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(content).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
    }
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))?;
    Ok(sha)
}

/// Digests waiting for upload, oldest name first.
pub fn pending(data_dir: &Path) -> Result<Vec<String>, BlobError> {
    let dir = dir(data_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&dir)(e)),
    };
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_digest(n))
        .collect();
    out.sort();
    Ok(out)
}

async fn server_offset(client: &SyncClient, sha: &str) -> Result<(u64, bool), RequestError> {
    let r = client
        .signed_request(Method::HEAD, &format!("/sync/v1/blobs/{sha}"), b"")
        .send()
        .await
        .map_err(RequestError::Transport)?;
    if !r.status().is_success() {
        return Err(error_from(r.status(), b""));
    }
    let header = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok());
    let offset = header("upload-offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((offset, header("upload-complete") == Some("?1")))
}

/// Uploads one queued blob from where the server left off; `true` once the
/// server holds it complete (and the local copy is gone).
pub async fn upload(client: &SyncClient, data_dir: &Path, sha: &str) -> Result<bool, BlobError> {
    let dir = dir(data_dir);
    let file = dir.join(sha);
    let bytes = std::fs::read(&file).map_err(io(&file))?;
    let content_type = std::fs::read_to_string(dir.join(format!("{sha}{TYPE_SUFFIX}")))
        .unwrap_or_else(|_| "application/octet-stream".into());
    let total = bytes.len() as u64;
    let (mut offset, mut complete) = server_offset(client, sha).await?;
    while !complete {
        let start = usize::try_from(offset.min(total)).unwrap_or(bytes.len());
        let end = (start + CHUNK_BYTES).min(bytes.len());
        let path = format!("/sync/v1/blobs/{sha}?offset={start}&total={total}");
        let r = client
            .signed_request(Method::PUT, &path, b"")
            .header(reqwest::header::CONTENT_TYPE, content_type.trim())
            .body(bytes[start..end].to_vec())
            .send()
            .await
            .map_err(RequestError::Transport)?;
        let status = r.status();
        let body = r.bytes().await.map_err(RequestError::Transport)?;
        match status {
            StatusCode::CREATED | StatusCode::OK => complete = true,
            StatusCode::ACCEPTED => offset = end as u64,
            // Someone else's offset: ask again where to resume.
            StatusCode::CONFLICT => (offset, complete) = server_offset(client, sha).await?,
            StatusCode::UNPROCESSABLE_ENTITY => {
                // The bytes here no longer match their name: nothing to resend.
                tracing::error!(sha, "blob does not match its digest; dropped");
                let _ = std::fs::remove_file(&file);
                return Err(BlobError::DigestMismatch(sha.to_owned()));
            }
            _ => return Err(error_from(status, &body).into()),
        }
    }
    std::fs::remove_file(&file).map_err(io(&file))?;
    let _ = std::fs::remove_file(dir.join(format!("{sha}{TYPE_SUFFIX}")));
    Ok(true)
}

/// Uploads every queued blob; stops at the first failure (the rest wait for
/// the next round). Answers how many were confirmed.
pub async fn upload_pending(client: &SyncClient, data_dir: &Path) -> Result<usize, BlobError> {
    let mut done = 0;
    for sha in pending(data_dir)? {
        if upload(client, data_dir, &sha).await? {
            done += 1;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_names_the_bytes_by_their_digest_and_queues_them_once() {
        let dir = tempfile::tempdir().unwrap();
        let sha = put(dir.path(), b"photo", "image/jpeg").unwrap();
        assert_eq!(sha, hex::encode(Sha256::digest(b"photo")));
        assert_eq!(put(dir.path(), b"photo", "image/jpeg").unwrap(), sha);
        assert_eq!(pending(dir.path()).unwrap(), vec![sha.clone()]);
        assert_eq!(
            std::fs::read(super::dir(dir.path()).join(&sha)).unwrap(),
            b"photo"
        );
        assert!(matches!(
            put(dir.path(), &vec![0; MAX_BLOB_BYTES + 1], "image/jpeg"),
            Err(BlobError::TooLarge(_))
        ));
        assert_eq!(pending(dir.path()).unwrap().len(), 1);
    }
}
