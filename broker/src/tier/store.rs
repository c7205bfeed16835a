//! Opening the object store a `--tier-url` names (a local directory, with
//! uploads hard-linked where the filesystem allows, or S3 and compatibles).

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path as ObjPath;

use super::{TierError, TierSettings};

/// Opens the store named by `s.url`; a `file://` directory is created.
pub(super) fn open_store(s: &TierSettings) -> Result<(Arc<dyn ObjectStore>, ObjPath), TierError> {
    if let Some(path) = s.url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(TierError::Config(format!(
                "object-store '{}': a file store needs an absolute path (file:///dir)",
                s.url
            )));
        }
        std::fs::create_dir_all(path)
            .map_err(|e| TierError::Config(format!("object-store {path}: {e}")))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
            .map_err(|e| TierError::Config(format!("object-store {path}: {e}")))?
            .with_automatic_cleanup(true);
        return Ok((Arc::new(fs), ObjPath::default()));
    }
    if let Some(rest) = s.url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(TierError::Config(format!(
                "object-store '{}': expected s3://bucket[/prefix]",
                s.url
            )));
        }
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        // Client options replace the builder's HTTP settings as a whole:
        // plain HTTP is allowed there.
        let mut client = object_store::ClientOptions::new()
            .with_timeout(Duration::from_secs(60))
            .with_connect_timeout(Duration::from_secs(3));
        let env_http = std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v == "true");
        if let Some(e) = &s.endpoint {
            b = b.with_endpoint(e);
            b = b.with_virtual_hosted_style_request(!s.path_style.unwrap_or(true));
            client = client.with_allow_http(s.allow_http.unwrap_or(e.starts_with("http://")));
        } else {
            if let Some(p) = s.path_style {
                b = b.with_virtual_hosted_style_request(!p);
            }
            client = client.with_allow_http(s.allow_http.unwrap_or(env_http));
        }
        if let Some(r) = &s.region {
            b = b.with_region(r);
        }
        // Hashing every body for the signature costs a core-second per
        // ~300 MB uploaded; the data carries its own CRCs (checked before
        // upload and on every read) and TLS protects it in transit.
        b = b.with_unsigned_payload(!s.signed_payload);
        if let Some(k) = &s.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &s.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        // Uploads retry on their own schedule; reads fail fast.
        let retry = object_store::RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        b = b.with_retry(retry).with_client_options(client);
        let store = b
            .build()
            .map_err(|e| TierError::Config(format!("object-store '{}': {e}", s.url)))?;
        return Ok((Arc::new(store), ObjPath::from(prefix)));
    }
    Err(TierError::Config(format!(
        "object-store '{}': expected file:///path or s3://bucket/prefix",
        s.url
    )))
}

/// Puts a sealed segment file into a `file://` store as a hard link: no
/// copy of the data, which stays put while the local segment is deleted
/// later. Only when the store is on the same filesystem and the file holds
/// exactly the uploaded bytes; false means "copy it instead".
pub(super) fn link_object(
    root: &std::path::Path,
    key: &ObjPath,
    src: &std::path::Path,
    size: u64,
) -> bool {
    let dest = key
        .parts()
        .fold(root.to_path_buf(), |p, part| p.join(part.as_ref()));
    let linked = (|| {
        if std::fs::metadata(src)?.len() != size {
            return Ok(false);
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::hard_link(src, &dest)?;
        Ok::<_, std::io::Error>(true)
    })();
    match linked {
        Ok(done) => done,
        Err(e) => {
            tracing::debug!(src = %src.display(), dest = %dest.display(), error = %e,
                "cannot link the segment into the store; copying it");
            false
        }
    }
}
