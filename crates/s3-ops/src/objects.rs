//! Object operations: streamed upload and download, list, head, delete, usage.

use std::collections::HashMap;
use std::pin::Pin;

use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use aws_sdk_s3::types::CompletedPart;
use bytes::{Bytes, BytesMut};
use futures::{FutureExt, Stream, StreamExt};

use crate::client::BucketClient;
use crate::error::{Error, Result};

/// Downloads are passed on in pieces of up to this much that have already arrived.
const COALESCE: usize = 256 * 1024;

/// Characters a copy source keeps as they are (`/` separates the key's parts).
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// A body stream: chunks or the error that ended it.
pub type BodyStream =
    Pin<Box<dyn Stream<Item = std::result::Result<Bytes, BoxError>> + Send + 'static>>;

/// Any error a body stream can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Part size of multipart uploads. At most two parts are in memory per upload (one being
/// uploaded, one being read), so an upload of any size holds at most 16 MiB.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// The largest body sent as one PUT; larger ones go multipart. S3 would take 5 GiB in one PUT,
/// but engines hold a single PUT in memory several times over: SeaweedFS in its 512 MiB
/// container was OOM-killed by 64 MiB PUTs, while 8 MiB parts keep it flat.
pub const MAX_SINGLE_PUT: u64 = PART_SIZE as u64;

/// What S3 says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag as the server gave it (quoted).
    pub etag: Option<String>,
    /// Last modification, RFC 3339.
    pub last_modified: Option<String>,
    /// Last modification as an HTTP date, for headers.
    pub last_modified_http: Option<String>,
    /// Content type (only from HEAD/GET).
    pub content_type: Option<String>,
    /// User metadata (only from HEAD/GET).
    pub metadata: HashMap<String, String>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Objects of this page.
    pub objects: Vec<ObjectInfo>,
    /// Common prefixes (with a delimiter).
    pub prefixes: Vec<String>,
    /// Continuation token of the next page.
    pub next_token: Option<String>,
}

/// A download in progress: headers and the streamed body.
pub struct Download {
    /// Object info from the GET answer.
    pub info: ObjectInfo,
    /// Bytes in this answer (the range's length for a range request).
    pub content_length: u64,
    /// `Content-Range` of a range answer.
    pub content_range: Option<String>,
    /// The body, streamed from the S3 server.
    pub body: BodyStream,
}

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// ETag of the new object.
    pub etag: Option<String>,
    /// Bytes stored.
    pub size: u64,
}

fn fmt_time(t: Option<&DateTime>, format: DateTimeFormat) -> Option<String> {
    t.and_then(|t| t.fmt(format).ok())
}

impl ObjectInfo {
    /// From the fields S3 answers carry (HEAD, GET, list entries alike).
    fn new(
        key: &str,
        size: Option<i64>,
        etag: Option<String>,
        last_modified: Option<&DateTime>,
        content_type: Option<String>,
        metadata: Option<HashMap<String, String>>,
    ) -> Self {
        ObjectInfo {
            key: key.to_string(),
            size: size.unwrap_or(0).max(0) as u64,
            etag,
            last_modified: fmt_time(last_modified, DateTimeFormat::DateTime),
            last_modified_http: fmt_time(last_modified, DateTimeFormat::HttpDate),
            content_type,
            metadata: metadata.unwrap_or_default(),
        }
    }
}

impl BucketClient {
    /// Uploads a body. A body of known length up to [`MAX_SINGLE_PUT`] streams as one PUT;
    /// anything else goes multipart in [`PART_SIZE`] parts. On any failure (including an error
    /// from `body`) nothing is stored and a started multipart upload is aborted.
    pub async fn put_object(
        &self,
        key: &str,
        content_type: Option<&str>,
        length: Option<u64>,
        body: BodyStream,
    ) -> Result<Uploaded> {
        match length {
            Some(len) if len <= MAX_SINGLE_PUT => {
                self.put_single(key, content_type, len, body).await
            }
            _ => self.put_multipart(key, content_type, body).await,
        }
    }

    async fn put_single(
        &self,
        key: &str,
        content_type: Option<&str>,
        len: u64,
        body: BodyStream,
    ) -> Result<Uploaded> {
        let frames = body.map(|chunk| chunk.map(http_body::Frame::data));
        let stream = sync_wrapper::SyncStream::new(frames);
        let body = ByteStream::from_body_1_x(http_body_util::StreamBody::new(stream));
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(content_type.map(String::from))
            .content_length(len as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| Error::from_sdk("PutObject", &self.endpoint, e))?;
        Ok(Uploaded {
            etag: out.e_tag,
            size: len,
        })
    }

    async fn put_multipart(
        &self,
        key: &str,
        content_type: Option<&str>,
        body: BodyStream,
    ) -> Result<Uploaded> {
        let mut body = PartReader {
            body,
            leftover: None,
        };
        let first = body.next_part().await?;
        if first.len() < PART_SIZE {
            // The whole body fit in one part: a plain PUT, no multipart bookkeeping.
            let len = first.len() as u64;
            let out = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .set_content_type(content_type.map(String::from))
                .body(ByteStream::from(first))
                .send()
                .await
                .map_err(|e| Error::from_sdk("PutObject", &self.endpoint, e))?;
            return Ok(Uploaded {
                etag: out.e_tag,
                size: len,
            });
        }
        let upload_id = self.start_multipart(key, content_type).await?;
        match self.upload_parts(key, &upload_id, first, &mut body).await {
            Ok(done) => Ok(done),
            Err(e) => {
                if let Err(abort) = self.abort_multipart(key, &upload_id).await {
                    tracing::warn!(bucket = %self.bucket, key, error = %abort, "aborting a failed multipart upload failed");
                }
                Err(e)
            }
        }
    }

    /// Uploads `first` and the rest of `body` as parts, reading the next part while the previous
    /// one is in flight.
    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        first: Bytes,
        body: &mut PartReader,
    ) -> Result<Uploaded> {
        let mut parts = Vec::new();
        let mut size = 0u64;
        let mut next = Some(first);
        let mut number = 1i32;
        while let Some(chunk) = next.take() {
            size += chunk.len() as u64;
            let full = chunk.len() == PART_SIZE;
            let client = self.clone();
            let (key_owned, id_owned) = (key.to_string(), upload_id.to_string());
            let in_flight = tokio::spawn(async move {
                client
                    .upload_part(&key_owned, &id_owned, number, chunk)
                    .await
            });
            let read = if full {
                Some(body.next_part().await)
            } else {
                None
            };
            let etag = in_flight.await.map_err(|e| Error::Body(e.to_string()))??;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(etag)
                    .build(),
            );
            number += 1;
            if let Some(read) = read {
                let chunk = read?;
                if !chunk.is_empty() {
                    next = Some(chunk);
                }
            }
        }
        let etag = self.complete_parts(key, upload_id, parts).await?;
        Ok(Uploaded { etag, size })
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        chunk: Bytes,
    ) -> Result<Option<String>> {
        let len = chunk.len() as i64;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(len)
            .body(ByteStream::from(chunk))
            .customize()
            // Hashing every part for the signature costs CPU for nothing a TCP checksum and
            // the part's length do not already give on this hop.
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| Error::from_sdk("UploadPart", &self.endpoint, e))?;
        Ok(out.e_tag)
    }

    /// Starts a download; `range` is an HTTP `Range` header value passed through to S3.
    pub async fn get_object(&self, key: &str, range: Option<&str>) -> Result<Download> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range.map(String::from))
            .send()
            .await
            .map_err(|e| Error::from_sdk("GetObject", &self.endpoint, e))?;
        let info = ObjectInfo::new(
            key,
            out.content_length,
            out.e_tag.clone(),
            out.last_modified.as_ref(),
            out.content_type.clone(),
            out.metadata.clone(),
        );
        let body = futures::stream::unfold((out.body, None), |(mut s, failed)| async move {
            if let Some(e) = failed {
                return Some((Err(e), (s, None)));
            }
            let first = match s.next().await? {
                Ok(c) => c,
                Err(e) => return Some((Err(Box::new(e) as BoxError), (s, None))),
            };
            if first.len() >= COALESCE {
                return Some((Ok(first), (s, None)));
            }
            // Chunks already received are sent on together: fewer, larger writes to the client
            // (the engine's answer arrives in reads of a few KiB).
            let mut buf = BytesMut::from(&first[..]);
            let mut failed = None;
            while buf.len() < COALESCE {
                match s.next().now_or_never() {
                    Some(Some(Ok(more))) => buf.extend_from_slice(&more),
                    Some(Some(Err(e))) => {
                        failed = Some(Box::new(e) as BoxError);
                        break;
                    }
                    _ => break,
                }
            }
            Some((Ok(buf.freeze()), (s, failed)))
        });
        Ok(Download {
            content_length: info.size,
            info,
            content_range: out.content_range,
            body: Box::pin(body),
        })
    }

    /// HEAD of an object; `None` when it does not exist.
    pub async fn head_object(&self, key: &str) -> Result<Option<ObjectInfo>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo::new(
                key,
                out.content_length,
                out.e_tag,
                out.last_modified.as_ref(),
                out.content_type,
                out.metadata,
            ))),
            Err(e) => match Error::from_sdk("HeadObject", &self.endpoint, e) {
                Error::S3 { status: 404, .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Deletes an object; a missing key is success, as in S3.
    pub async fn delete_object(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Error::from_sdk("DeleteObject", &self.endpoint, e))?;
        Ok(())
    }

    /// Copies `source` to `destination` inside this bucket, on the server (no bytes through the
    /// daemon). S3 copies at most 5 GiB this way; callers stream larger objects.
    pub async fn copy_object(&self, source: &str, destination: &str) -> Result<ObjectInfo> {
        let copy_source = format!(
            "{}/{}",
            self.bucket,
            percent_encoding::utf8_percent_encode(source, COPY_SOURCE)
        );
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(destination)
            .copy_source(copy_source)
            .send()
            .await
            .map_err(|e| Error::from_sdk("CopyObject", &self.endpoint, e))?;
        self.head_object(destination).await?.ok_or(Error::S3 {
            op: "CopyObject",
            status: 404,
            code: "NoSuchKey".into(),
            message: "the copy is not there".into(),
        })
    }

    /// Copies `key` of `source_bucket` (on the same server) to the same key in this bucket, on
    /// the server, metadata and all. At most 5 GiB, as every S3 copy.
    pub async fn copy_from(&self, source_bucket: &str, key: &str) -> Result<()> {
        let copy_source = format!(
            "{source_bucket}/{}",
            percent_encoding::utf8_percent_encode(key, COPY_SOURCE)
        );
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(key)
            .copy_source(copy_source)
            .send()
            .await
            .map_err(|e| Error::from_sdk("CopyObject", &self.endpoint, e))?;
        Ok(())
    }

    /// One page of ListObjectsV2.
    pub async fn list_objects(
        &self,
        prefix: Option<&str>,
        delimiter: Option<&str>,
        limit: i32,
        token: Option<&str>,
    ) -> Result<Listing> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix(prefix.map(String::from))
            .set_delimiter(delimiter.map(String::from))
            .max_keys(limit)
            .set_continuation_token(token.map(String::from))
            .send()
            .await
            .map_err(|e| Error::from_sdk("ListObjectsV2", &self.endpoint, e))?;
        let objects = out
            .contents
            .unwrap_or_default()
            .into_iter()
            .map(|o| {
                ObjectInfo::new(
                    o.key.as_deref().unwrap_or_default(),
                    o.size,
                    o.e_tag,
                    o.last_modified.as_ref(),
                    None,
                    None,
                )
            })
            .collect();
        let prefixes = out
            .common_prefixes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.prefix)
            .collect();
        let next_token = if out.is_truncated.unwrap_or(false) {
            out.next_continuation_token
        } else {
            None
        };
        Ok(Listing {
            objects,
            prefixes,
            next_token,
        })
    }

    /// Object count and total bytes of the whole bucket, walking every page, plus the bytes of
    /// the parts of multipart uploads still in progress (they take space but are not listed as
    /// objects). Costs one request per 1,000 objects, one per 1,000 uploads in progress and one
    /// per 1,000 parts of each.
    pub async fn usage(&self) -> Result<(u64, u64)> {
        let (mut count, mut bytes) = (0u64, 0u64);
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_objects(None, None, 1000, token.as_deref())
                .await?;
            count += page.objects.len() as u64;
            bytes += page.objects.iter().map(|o| o.size).sum::<u64>();
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok((count, bytes + self.parts_in_progress().await?))
    }

    /// Bytes held by the parts of unfinished multipart uploads.
    async fn parts_in_progress(&self) -> Result<u64> {
        let mut bytes = 0u64;
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| Error::from_sdk("ListMultipartUploads", &self.endpoint, e))?;
            for upload in out.uploads.unwrap_or_default() {
                let (Some(key), Some(id)) = (upload.key, upload.upload_id) else {
                    continue;
                };
                let mut part_marker: Option<String> = None;
                loop {
                    let parts = match self
                        .client
                        .list_parts()
                        .bucket(&self.bucket)
                        .key(&key)
                        .upload_id(&id)
                        .set_part_number_marker(part_marker.take())
                        .send()
                        .await
                    {
                        Ok(p) => p,
                        Err(e) => match Error::from_sdk("ListParts", &self.endpoint, e) {
                            // Completed or aborted since it was listed, or an entry the engine
                            // lists but cannot describe: it holds no parts to count.
                            Error::S3 { .. } => break,
                            e => return Err(e),
                        },
                    };
                    bytes += parts
                        .parts
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|p| p.size)
                        .map(|s| s.max(0) as u64)
                        .sum::<u64>();
                    match (parts.is_truncated, parts.next_part_number_marker) {
                        (Some(true), Some(m)) => part_marker = Some(m),
                        _ => break,
                    }
                }
            }
            match (
                out.is_truncated,
                out.next_key_marker,
                out.next_upload_id_marker,
            ) {
                (Some(true), Some(k), id) => {
                    key_marker = Some(k);
                    id_marker = id;
                }
                _ => return Ok(bytes),
            }
        }
    }
}

/// Cuts a body into parts of exactly [`PART_SIZE`] bytes (the last one shorter).
struct PartReader {
    body: BodyStream,
    leftover: Option<Bytes>,
}

impl PartReader {
    /// Reads the next part; empty at the end of the body.
    async fn next_part(&mut self) -> Result<Bytes> {
        let mut buf = BytesMut::with_capacity(PART_SIZE);
        while buf.len() < PART_SIZE {
            let chunk = match self.leftover.take() {
                Some(c) => c,
                None => match self.body.next().await {
                    None => break,
                    Some(Ok(c)) => c,
                    Some(Err(e)) => return Err(Error::Body(e.to_string())),
                },
            };
            let room = PART_SIZE - buf.len();
            if chunk.len() <= room {
                buf.extend_from_slice(&chunk);
            } else {
                buf.extend_from_slice(&chunk[..room]);
                self.leftover = Some(chunk.slice(room..));
            }
        }
        Ok(buf.freeze())
    }
}
