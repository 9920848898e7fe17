//! The artifact store: model files, plots and datasets, in a local folder or a cloud bucket.
//!
//! One type, [`ArtifactStore`], over the `object_store` crate: a local directory by default, or
//! `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` (and the other Azure
//! spellings object_store knows), configured from the usual environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...).
//!
//! Guarantees:
//! - Every path is an [`ArtifactPath`] (no `..`, no absolute paths, no encoded tricks) under the
//!   store's root; on a local disk, a path through a symbolic link is refused as well.
//! - Writes are atomic: object_store's local backend writes a hidden staging file and renames it
//!   when complete, and cloud uploads only appear when finished. A crash mid-upload leaves nothing
//!   visible under the target name.
//! - Bodies stream in both directions: uploads are written in chunks of [`UPLOAD_CHUNK_BYTES`],
//!   downloads are read in chunks, so memory does not grow with file size.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::{Path as ObjectPath, PathPart};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use shipyard_core::artifact_path::ArtifactPath;
use shipyard_core::entities::FileInfo;
use shipyard_core::{Error, Result};

/// Size of the parts an upload is written in; also S3's minimum multipart part size.
pub const UPLOAD_CHUNK_BYTES: usize = 5 * 1024 * 1024;

/// A readable artifact: its size and its bytes as a stream.
pub struct ArtifactDownload {
    /// Size in bytes.
    pub size: u64,
    /// The content, chunk by chunk.
    pub stream: BoxStream<'static, Result<Bytes>>,
}

/// Where artifacts live and how to reach them.
#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// Path inside the bucket (empty for local folders, which are rooted by the backend).
    prefix: ObjectPath,
    /// Canonical root folder for a local store (symbolic-link checks), `None` for cloud stores.
    local_root: Option<PathBuf>,
    /// The destination as configured, for messages.
    uri: String,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore").field("uri", &self.uri).finish()
    }
}

impl ArtifactStore {
    /// Opens a destination: a local path (created if missing), `file:///path`, or a cloud URI.
    pub async fn open(destination: &str) -> Result<Self> {
        let cloud_scheme = ["s3://", "s3a://", "gs://", "az://", "azure://", "abfs://", "abfss://", "adl://"]
            .iter()
            .any(|s| destination.starts_with(s))
            || (destination.starts_with("https://")
                && (destination.contains(".blob.core.windows.net") || destination.contains(".dfs.core.windows.net")));
        if cloud_scheme {
            return Self::open_cloud(destination);
        }
        let local = destination.strip_prefix("file://").unwrap_or(destination);
        if local.contains("://") {
            return Err(Error::invalid(format!(
                "unsupported artifact destination '{destination}': use a local path, file://, s3://, gs:// or az://"
            )));
        }
        Self::open_local(PathBuf::from(local)).await
    }

    async fn open_local(root: PathBuf) -> Result<Self> {
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(|e| Error::Internal(format!("cannot create artifact root {}: {e}", root.display())))?;
        let canonical = tokio::fs::canonicalize(&root)
            .await
            .map_err(|e| Error::Internal(format!("cannot resolve artifact root {}: {e}", root.display())))?;
        let fs = LocalFileSystem::new_with_prefix(&canonical).map_err(store_error)?.with_automatic_cleanup(true);
        Ok(ArtifactStore {
            store: Arc::new(fs),
            prefix: ObjectPath::default(),
            uri: canonical.display().to_string(),
            local_root: Some(canonical),
        })
    }

    fn open_cloud(destination: &str) -> Result<Self> {
        ensure_tls_provider();
        let url = url::Url::parse(destination)
            .map_err(|e| Error::invalid(format!("invalid artifact destination '{destination}': {e}")))?;
        let bad = |e: object_store::Error| {
            Error::invalid(format!("cannot configure artifact destination '{destination}': {e}"))
        };
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" | "s3a" => {
                Arc::new(object_store::aws::AmazonS3Builder::from_env().with_url(destination).build().map_err(bad)?)
            }
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(destination).build().map_err(bad)?,
            ),
            _ => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env().with_url(destination).build().map_err(bad)?,
            ),
        };
        // The bucket or container is the URL's host (or, for abfss, its user part); what follows
        // is our prefix inside it.
        let prefix = ObjectPath::parse(url.path().trim_matches('/'))
            .map_err(|e| Error::invalid(format!("invalid prefix in artifact destination '{destination}': {e}")))?;
        Ok(ArtifactStore { store, prefix, local_root: None, uri: destination.to_owned() })
    }

    /// The destination as configured.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn object_path(&self, path: &ArtifactPath) -> ObjectPath {
        let mut out = self.prefix.clone();
        for seg in path.segments() {
            out = out.join(PathPart::from(seg.as_str()));
        }
        out
    }

    /// Refuses a local path that goes through a symbolic link (which could point outside the root).
    async fn check_no_symlinks(&self, path: &ArtifactPath) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let mut current = root.clone();
        for seg in path.segments() {
            // The on-disk name is the object_store encoding of the segment.
            current.push(PathPart::from(seg.as_str()).as_ref());
            match tokio::fs::symlink_metadata(&current).await {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(Error::invalid(format!(
                        "Invalid artifact path '{path}': it goes through a symbolic link"
                    )));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => {
                    return Err(Error::Internal(format!("cannot inspect artifact path '{path}': {e}")));
                }
            }
        }
        Ok(())
    }

    /// Writes `body` to `path`, replacing any previous file, and returns the number of bytes.
    /// Nothing is visible at `path` until the whole body has been written. If the body fails
    /// (client gone, size limit), the partial upload is discarded and the error returned.
    pub async fn put<S, E>(&self, path: &ArtifactPath, body: S) -> Result<u64>
    where
        S: futures::Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: Into<Error>,
    {
        if path.is_root() {
            return Err(Error::invalid("Invalid artifact path: a file name is required"));
        }
        self.check_no_symlinks(path).await?;
        let location = self.object_path(path);
        let mut body = std::pin::pin!(body);
        // Small files (the common case) are one `put`; larger ones switch to a multipart upload.
        let mut first: Vec<Bytes> = Vec::new();
        let mut buffered = 0usize;
        while buffered < UPLOAD_CHUNK_BYTES {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(Into::into)?;
                    buffered += chunk.len();
                    first.push(chunk);
                }
                None => {
                    let payload = PutPayload::from_iter(first);
                    self.store.put(&location, payload).await.map_err(store_error)?;
                    return Ok(buffered as u64);
                }
            }
        }
        let upload = self.store.put_multipart(&location).await.map_err(store_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK_BYTES);
        for chunk in first {
            writer.put(chunk);
        }
        let mut total = buffered as u64;
        loop {
            // At most two parts in flight: bounded memory whatever the file size.
            if let Err(e) = writer.wait_for_capacity(2).await {
                return Err(store_error(e));
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    total += chunk.len() as u64;
                    writer.put(chunk);
                }
                Some(Err(e)) => {
                    let _ = writer.abort().await;
                    return Err(e.into());
                }
                None => break,
            }
        }
        writer.finish().await.map_err(store_error)?;
        Ok(total)
    }

    /// Opens the file at `path` for reading. A folder or a missing file is `NotFound`.
    pub async fn get(&self, path: &ArtifactPath) -> Result<ArtifactDownload> {
        if path.is_root() {
            return Err(Error::not_found("No such artifact: ''"));
        }
        self.check_no_symlinks(path).await?;
        if let Some(root) = &self.local_root {
            // object_store reports a folder as an I/O error; MLflow's answer is "no such file".
            let on_disk = path.segments().iter().fold(root.clone(), |p, s| p.join(PathPart::from(s.as_str()).as_ref()));
            match tokio::fs::metadata(&on_disk).await {
                Ok(m) if m.is_file() => {}
                _ => return Err(Error::not_found(format!("No such artifact: '{path}'"))),
            }
        }
        let result = match self.store.get(&self.object_path(path)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::not_found(format!("No such artifact: '{path}'")));
            }
            Err(e) => return Err(store_error(e)),
        };
        let size = result.meta.size;
        let stream = result.into_stream().map_err(store_error).boxed();
        Ok(ArtifactDownload { size, stream })
    }

    /// The whole file at `path`, in memory (for small files: profiles, reports, configs).
    pub async fn read_all(&self, path: &ArtifactPath) -> Result<Vec<u8>> {
        use futures::TryStreamExt;
        let download = self.get(path).await?;
        let chunks: Vec<bytes::Bytes> = download.stream.try_collect().await?;
        Ok(chunks.concat())
    }

    /// Lists the direct children of the folder `dir`, sorted by name. A missing folder, or a
    /// file, lists as empty (as MLflow answers).
    pub async fn list(&self, dir: &ArtifactPath) -> Result<Vec<FileInfo>> {
        self.check_no_symlinks(dir).await?;
        let prefix = self.object_path(dir);
        let listing = match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(store_error(e)),
        };
        let name_of = |p: &ObjectPath| -> Option<String> {
            let raw = p.filename()?;
            Some(percent_encoding::percent_decode_str(raw).decode_utf8_lossy().into_owned())
        };
        let mut out: Vec<FileInfo> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| name_of(p).map(|name| FileInfo { path: name, is_dir: true, file_size: None }))
            .chain(listing.objects.iter().filter_map(|o| {
                name_of(&o.location).map(|name| FileInfo { path: name, is_dir: false, file_size: Some(o.size) })
            }))
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Deletes the file at `path`, or everything under it if it is a folder. Deleting what does
    /// not exist is not an error.
    pub async fn delete(&self, path: &ArtifactPath) -> Result<()> {
        self.check_no_symlinks(path).await?;
        let location = self.object_path(path);
        if !path.is_root() {
            match self.store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                // A folder on a local disk: its files are deleted below.
                Err(_) if self.local_root.is_some() => {}
                Err(e) => return Err(store_error(e)),
            }
        }
        let children = self.store.list(Some(&location)).map_ok(|m| m.location).boxed();
        let mut deleted = self.store.delete_stream(children);
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
        Ok(())
    }

    /// Copies every file under `from` to the same relative place under `to` (used to copy a
    /// model's files between artifact roots). Returns the number of files.
    pub async fn copy_tree(&self, from: &ArtifactPath, to: &ArtifactPath) -> Result<usize> {
        self.check_no_symlinks(from).await?;
        self.check_no_symlinks(to).await?;
        let src = self.object_path(from);
        let dst = self.object_path(to);
        let objects: Vec<_> = self.store.list(Some(&src)).try_collect().await.map_err(store_error)?;
        for meta in &objects {
            let rel = meta.location.prefix_match(&src).map(|parts| parts.collect::<Vec<_>>()).unwrap_or_default();
            let target = rel.into_iter().fold(dst.clone(), |p, part| p.join(part));
            self.store.copy(&meta.location, &target).await.map_err(store_error)?;
        }
        Ok(objects.len())
    }
}

/// Installs rustls' ring provider for the process (object_store's and the CLI's HTTPS clients
/// are built without a provider of their own). Idempotent.
pub fn ensure_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Maps an object_store failure: a missing object is `NotFound`, the rest is internal and logged.
fn store_error(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { path, .. } => Error::not_found(format!("No such artifact: '{path}'")),
        other => {
            tracing::error!(error = %other, "artifact store error");
            Error::Internal(format!("artifact store error: {other}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ArtifactPath {
        ArtifactPath::parse(s).unwrap()
    }

    async fn put_bytes(store: &ArtifactStore, path: &str, data: Vec<u8>) -> u64 {
        let stream = futures::stream::iter(
            data.chunks(7919).map(|c| Ok::<_, Error>(Bytes::copy_from_slice(c))).collect::<Vec<_>>(),
        );
        store.put(&p(path), stream).await.unwrap()
    }

    async fn read_all(store: &ArtifactStore, path: &str) -> Vec<u8> {
        let d = store.get(&p(path)).await.unwrap();
        let chunks: Vec<Bytes> = d.stream.try_collect().await.unwrap();
        chunks.concat()
    }

    #[tokio::test]
    async fn round_trip_nested_and_binary() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().to_str().unwrap()).await.unwrap();
        let binary: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        assert_eq!(put_bytes(&store, "1/r/artifacts/bin/model.bin", binary.clone()).await, 100_000);
        put_bytes(&store, "1/r/artifacts/notes.txt", b"hello".to_vec()).await;
        put_bytes(&store, "1/r/artifacts/with space & [brackets].txt", b"x".to_vec()).await;
        assert_eq!(read_all(&store, "1/r/artifacts/bin/model.bin").await, binary);
        let listing = store.list(&p("1/r/artifacts")).await.unwrap();
        let names: Vec<_> = listing.iter().map(|f| (f.path.as_str(), f.is_dir, f.file_size)).collect();
        assert_eq!(
            names,
            vec![("bin", true, None), ("notes.txt", false, Some(5)), ("with space & [brackets].txt", false, Some(1))]
        );
        assert!(store.list(&p("1/missing")).await.unwrap().is_empty());
        // A folder is not a file.
        assert!(matches!(store.get(&p("1/r/artifacts/bin")).await, Err(Error::NotFound(_))));
        store.delete(&p("1/r/artifacts/bin")).await.unwrap();
        assert!(matches!(store.get(&p("1/r/artifacts/bin/model.bin")).await, Err(Error::NotFound(_))));
        assert_eq!(store.list(&p("1/r/artifacts")).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn large_files_stream_through_multipart() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().to_str().unwrap()).await.unwrap();
        let big: Vec<u8> = (0..(UPLOAD_CHUNK_BYTES * 2 + 12345)).map(|i| (i % 251) as u8).collect();
        assert_eq!(put_bytes(&store, "big/file.bin", big.clone()).await, big.len() as u64);
        assert_eq!(read_all(&store, "big/file.bin").await, big);
    }

    #[tokio::test]
    async fn failed_upload_leaves_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().to_str().unwrap()).await.unwrap();
        for size in [10usize, UPLOAD_CHUNK_BYTES + 10] {
            let chunks: Vec<std::result::Result<Bytes, Error>> =
                vec![Ok(Bytes::from(vec![1u8; size])), Err(Error::TooLarge("client went away".into()))];
            let err = store.put(&p("x/partial.bin"), futures::stream::iter(chunks)).await.unwrap_err();
            assert!(matches!(err, Error::TooLarge(_)));
            assert!(matches!(store.get(&p("x/partial.bin")).await, Err(Error::NotFound(_))));
            assert!(store.list(&p("x")).await.unwrap().is_empty());
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlinks_out_of_the_root_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let store = ArtifactStore::open(dir.path().to_str().unwrap()).await.unwrap();
        let err = store.get(&p("link/secret.txt")).await.err().unwrap();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(store.list(&p("link")).await.is_err());
        let write =
            store.put(&p("link/new.txt"), futures::stream::iter(vec![Ok::<_, Error>(Bytes::from_static(b"x"))])).await;
        assert!(write.is_err());
        assert!(!outside.path().join("new.txt").exists());
        assert!(store.delete(&p("link")).await.is_err());
        assert!(outside.path().join("secret.txt").exists());
    }
}
