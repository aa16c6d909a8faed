//! [`Bucket`]: the object-storage operations Thanos' components need, over
//! any `object_store` backend, with errors that say which object and which
//! operation failed.
//!
//! Semantics follow Thanos' `objstore.Bucket` where backends differ:
//! listings are sorted (object_store does not promise an order), a
//! non-recursive listing returns sub-directories with a trailing `/`, and
//! `delete` of a missing object succeeds on every backend (S3 answers 204
//! for it, the local filesystem would say "not found").

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Thanos' default multipart part size (`part_size`, 64 MiB).
pub const DEFAULT_PART_SIZE: usize = 64 << 20;
/// S3 refuses parts smaller than 5 MiB (except the last one).
pub const MIN_PART_SIZE: usize = 5 << 20;
/// Parts of one multipart upload in flight at once; bounds memory to
/// `part_size * MULTIPART_CONCURRENCY` per upload.
const MULTIPART_CONCURRENCY: usize = 4;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The operation that failed, for error messages and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    GetRange,
    Head,
    Upload,
    Delete,
    List,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Get => "get",
            Op::GetRange => "get range of",
            Op::Head => "stat",
            Op::Upload => "upload",
            Op::Delete => "delete",
            Op::List => "list",
        })
    }
}

/// How an object-storage request failed, independent of the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    /// 401/403: wrong or missing credentials, or a bucket policy.
    AccessDenied,
    /// Everything else: network, server errors after retries, timeouts.
    Other,
}

/// Errors of this crate's bucket, block and fetcher operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object-storage request failed.
    #[error("{op} {bucket}/{key}: {}{source}", kind_hint(*kind))]
    Object {
        op: Op,
        /// The bucket's display name (`s3://name`, `file:///dir`, …).
        bucket: String,
        key: String,
        kind: ErrorKind,
        #[source]
        source: object_store::Error,
    },
    /// A local file or directory could not be read or written.
    #[error("{op} {}: {source}", path.display())]
    Local {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An object key that object_store cannot represent.
    #[error("invalid object key {key:?}: {msg}")]
    InvalidKey { key: String, msg: String },
    /// A local block directory that cannot be uploaded.
    #[error("invalid block {}: {msg}", dir.display())]
    InvalidBlock { dir: PathBuf, msg: String },
    /// An object whose content does not parse (meta.json, a marker).
    #[error("{bucket}/{key}: {msg}")]
    Corrupted {
        bucket: String,
        key: String,
        msg: String,
    },
}

fn kind_hint(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "object not found: ",
        ErrorKind::AlreadyExists => "object already exists: ",
        ErrorKind::AccessDenied => "access denied (check the credentials and bucket permissions): ",
        ErrorKind::Other => "",
    }
}

impl Error {
    /// True when the object does not exist (Thanos' `IsObjNotFoundErr`).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Object {
                kind: ErrorKind::NotFound,
                ..
            }
        )
    }

    /// True for 401/403 answers.
    pub fn is_access_denied(&self) -> bool {
        matches!(
            self,
            Error::Object {
                kind: ErrorKind::AccessDenied,
                ..
            }
        )
    }
}

/// Size and modification time of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key relative to the bucket (and its prefix).
    pub key: String,
    pub size: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// How uploads are split; from `part_size` / `disable_multipart` in the S3
/// config, defaults elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadConfig {
    /// Files larger than this are uploaded in parts of this size.
    pub part_size: usize,
    /// Always upload with one PUT (for S3-compatible stores without
    /// multipart support).
    pub disable_multipart: bool,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            part_size: DEFAULT_PART_SIZE,
            disable_multipart: false,
        }
    }
}

/// An object-storage bucket (optionally under a prefix). Cheap to clone.
#[derive(Clone)]
pub struct Bucket {
    name: Arc<str>,
    store: Arc<dyn ObjectStore>,
    upload: UploadConfig,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The name only: stores may hold credentials in their Debug output.
        write!(f, "Bucket({})", self.name)
    }
}

impl Bucket {
    /// Wraps a store. `name` is only used in messages, e.g. `s3://thanos`.
    pub fn new(name: impl Into<String>, store: Arc<dyn ObjectStore>) -> Self {
        Bucket {
            name: name.into().into(),
            store,
            upload: UploadConfig::default(),
        }
    }

    /// An in-memory bucket, for tests and tools.
    pub fn in_memory() -> Self {
        Self::new("memory://", Arc::new(object_store::memory::InMemory::new()))
    }

    pub fn with_upload_config(mut self, upload: UploadConfig) -> Self {
        self.upload = upload;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying store, for operations this wrapper does not cover.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn path(&self, key: &str) -> Result<ObjectPath> {
        ObjectPath::parse(key).map_err(|e| Error::InvalidKey {
            key: key.to_string(),
            msg: e.to_string(),
        })
    }

    fn err(&self, op: Op, key: &str, source: object_store::Error) -> Error {
        use object_store::Error as E;
        let kind = match &source {
            E::NotFound { .. } => ErrorKind::NotFound,
            E::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => ErrorKind::AccessDenied,
            _ => ErrorKind::Other,
        };
        Error::Object {
            op,
            bucket: self.name.to_string(),
            key: key.to_string(),
            kind,
            source,
        }
    }

    /// Writes an object in one request.
    pub async fn upload(&self, key: &str, data: impl Into<Bytes>) -> Result<()> {
        let path = self.path(key)?;
        let payload = PutPayload::from(data.into());
        self.store
            .put(&path, payload)
            .await
            .map_err(|e| self.err(Op::Upload, key, e))?;
        Ok(())
    }

    /// Uploads a local file: one request up to `part_size`, a multipart
    /// upload above it. Returns the number of bytes uploaded.
    pub async fn upload_file(&self, local: &Path, key: &str) -> Result<u64> {
        let path = self.path(key)?;
        let local_err = |op, source| Error::Local {
            op,
            path: local.to_path_buf(),
            source,
        };
        let mut f = tokio::fs::File::open(local)
            .await
            .map_err(|e| local_err("open", e))?;
        let size = f.metadata().await.map_err(|e| local_err("stat", e))?.len();
        if self.upload.disable_multipart || size <= self.upload.part_size as u64 {
            let mut buf = Vec::with_capacity(size as usize);
            f.read_to_end(&mut buf)
                .await
                .map_err(|e| local_err("read", e))?;
            let n = buf.len() as u64;
            self.store
                .put(&path, PutPayload::from(buf))
                .await
                .map_err(|e| self.err(Op::Upload, key, e))?;
            return Ok(n);
        }

        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| self.err(Op::Upload, key, e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, self.upload.part_size);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let res: Result<()> = async {
            loop {
                let n = f.read(&mut buf).await.map_err(|e| local_err("read", e))?;
                if n == 0 {
                    return Ok(());
                }
                w.wait_for_capacity(MULTIPART_CONCURRENCY)
                    .await
                    .map_err(|e| self.err(Op::Upload, key, e))?;
                w.write(&buf[..n]);
                total += n as u64;
            }
        }
        .await;
        match res {
            Ok(()) => {
                w.finish().await.map_err(|e| self.err(Op::Upload, key, e))?;
                Ok(total)
            }
            Err(e) => {
                // Leave no half-finished multipart upload behind (S3 bills
                // for stored parts until a lifecycle rule removes them).
                if let Err(abort) = w.abort().await {
                    tracing::warn!(bucket = %self.name, key, error = %abort, "aborting multipart upload failed");
                }
                Err(e)
            }
        }
    }

    /// Uploads every file under `local_dir` (recursively) to `prefix/…`, in
    /// sorted order. Returns the keys written.
    pub async fn upload_dir(&self, local_dir: &Path, prefix: &str) -> Result<Vec<String>> {
        let mut files = Vec::new();
        walk(local_dir, Path::new(""), &mut files)?;
        files.sort();
        let mut keys = Vec::with_capacity(files.len());
        for rel in files {
            let key = join_key(prefix, &rel_to_key(&rel));
            self.upload_file(&local_dir.join(&rel), &key).await?;
            keys.push(key);
        }
        Ok(keys)
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let path = self.path(key)?;
        let r = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.err(Op::Get, key, e))?;
        r.bytes().await.map_err(|e| self.err(Op::Get, key, e))
    }

    /// Reads `range` (byte offsets, end exclusive) of an object.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(key)?;
        self.store
            .get_range(&path, range)
            .await
            .map_err(|e| self.err(Op::GetRange, key, e))
    }

    /// Streams an object into a local file (created or truncated), then
    /// fsyncs it. Returns the number of bytes written.
    pub async fn download_file(&self, key: &str, local: &Path) -> Result<u64> {
        let path = self.path(key)?;
        let local_err = |op, source| Error::Local {
            op,
            path: local.to_path_buf(),
            source,
        };
        let r = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.err(Op::Get, key, e))?;
        let mut f = tokio::fs::File::create(local)
            .await
            .map_err(|e| local_err("create", e))?;
        let mut stream = r.into_stream();
        let mut total = 0u64;
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| self.err(Op::Get, key, e))?
        {
            f.write_all(&chunk)
                .await
                .map_err(|e| local_err("write", e))?;
            total += chunk.len() as u64;
        }
        f.sync_all().await.map_err(|e| local_err("fsync", e))?;
        Ok(total)
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.attributes(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Size and modification time of an object.
    pub async fn attributes(&self, key: &str) -> Result<ObjectInfo> {
        let path = self.path(key)?;
        let m = self
            .store
            .head(&path)
            .await
            .map_err(|e| self.err(Op::Head, key, e))?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size: m.size,
            last_modified: m.last_modified,
        })
    }

    /// Deletes an object; deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(Op::Delete, key, e)),
        }
    }

    /// One level of the bucket under `dir` ("" for the root), like Thanos'
    /// `Iter`: object keys, and sub-directories as `dir/sub/`, sorted.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>> {
        let dir = dir.trim_end_matches('/');
        let prefix = if dir.is_empty() {
            None
        } else {
            Some(self.path(dir)?)
        };
        let r = self
            .store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|e| self.err(Op::List, dir, e))?;
        let mut out: Vec<String> = r
            .common_prefixes
            .into_iter()
            .map(|p| format!("{p}/"))
            .chain(r.objects.into_iter().map(|o| o.location.to_string()))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Every object under `dir` ("" for the whole bucket), sorted by key.
    pub async fn list_recursive(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        let dir = dir.trim_end_matches('/');
        let prefix = if dir.is_empty() {
            None
        } else {
            Some(self.path(dir)?)
        };
        let mut out: Vec<ObjectInfo> = self
            .store
            .list(prefix.as_ref())
            .map_ok(|o| ObjectInfo {
                key: o.location.to_string(),
                size: o.size,
                last_modified: o.last_modified,
            })
            .try_collect()
            .await
            .map_err(|e| self.err(Op::List, dir, e))?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// `a` + `/` + `b`, without doubled or leading slashes.
pub(crate) fn join_key(a: &str, b: &str) -> String {
    let a = a.trim_end_matches('/');
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

fn rel_to_key(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Collects regular files under `root`, as paths relative to it.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let rd = std::fs::read_dir(&dir).map_err(|source| Error::Local {
        op: "read directory",
        path: dir.clone(),
        source,
    })?;
    for entry in rd {
        let entry = entry.map_err(|source| Error::Local {
            op: "read directory",
            path: dir.clone(),
            source,
        })?;
        let ft = entry.file_type().map_err(|source| Error::Local {
            op: "stat",
            path: entry.path(),
            source,
        })?;
        let rel = rel.join(entry.file_name());
        if ft.is_dir() {
            walk(root, &rel, out)?;
        } else if ft.is_file() {
            out.push(rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn get_put_list_delete_in_memory() {
        let b = Bucket::in_memory();
        b.upload("a/x", "1").await.unwrap();
        b.upload("a/b/y", "22").await.unwrap();
        b.upload("c", "333").await.unwrap();
        assert_eq!(b.list("").await.unwrap(), vec!["a/", "c"]);
        assert_eq!(b.list("a/").await.unwrap(), vec!["a/b/", "a/x"]);
        let all: Vec<_> = b
            .list_recursive("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        assert_eq!(
            all,
            vec![("a/b/y".into(), 2), ("a/x".into(), 1), ("c".into(), 3)]
        );
        assert_eq!(b.get("a/b/y").await.unwrap(), Bytes::from("22"));
        assert_eq!(b.get_range("c", 1..3).await.unwrap(), Bytes::from("33"));
        assert!(b.exists("c").await.unwrap());
        b.delete("c").await.unwrap();
        b.delete("c").await.unwrap();
        assert!(!b.exists("c").await.unwrap());
        let e = b.get("c").await.unwrap_err();
        assert!(e.is_not_found());
        let msg = e.to_string();
        assert!(
            msg.starts_with("get memory:///c: object not found"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn multipart_upload_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("big");
        // Not a multiple of the part size, so the last part is short.
        let data: Vec<u8> = (0..(MIN_PART_SIZE * 2 + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&file, &data).unwrap();
        let b = Bucket::in_memory().with_upload_config(UploadConfig {
            part_size: MIN_PART_SIZE,
            disable_multipart: false,
        });
        assert_eq!(b.upload_file(&file, "k").await.unwrap(), data.len() as u64);
        assert_eq!(b.get("k").await.unwrap(), Bytes::from(data.clone()));
        let out = d.path().join("out");
        b.download_file("k", &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), data);
    }

    #[tokio::test]
    async fn upload_dir_and_local_errors_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("s/t")).unwrap();
        std::fs::write(d.path().join("s/t/f"), "x").unwrap();
        std::fs::write(d.path().join("s/g"), "y").unwrap();
        let b = Bucket::in_memory();
        let keys = b.upload_dir(&d.path().join("s"), "p/").await.unwrap();
        assert_eq!(keys, vec!["p/g", "p/t/f"]);
        let e = b
            .upload_file(&d.path().join("missing"), "k")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[tokio::test]
    async fn invalid_keys_are_rejected_with_the_key() {
        let b = Bucket::in_memory();
        let e = b.get("a//b").await.unwrap_err();
        assert!(matches!(e, Error::InvalidKey { .. }), "{e}");
        assert!(e.to_string().contains("a//b"), "{e}");
    }
}
