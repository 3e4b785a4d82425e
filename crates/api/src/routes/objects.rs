//! Object routes: upload (form and raw), list, download with Range, HEAD, metadata, delete
//! (presigned URLs are in `presign`, usage stats in `stats`). Keys are one path segment: a `/` inside a key is sent as `%2F`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Multipart, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::{Error, Result};
use crate::extract::{body_error, PathParams, QueryParams};
use crate::openapi::{Failed, Refused};
use kalpana_domain::upload::{self, Stored};
use kalpana_domain::validate::KeyUse;
use kalpana_domain::{usage, validate};

/// Largest page of a listing.
const MAX_LIST: usize = 1000;

/// Turns a missing key or a bad range into the answer the client should see.
fn s3_error(e: kalpana_s3_ops::Error) -> Error {
    match &e {
        kalpana_s3_ops::Error::S3 { status: 404, .. } => Error::NotFound("object"),
        kalpana_s3_ops::Error::S3 { status: 416, .. } => {
            crate::error::Domain::RangeNotSatisfiable.into()
        }
        _ => e.into(),
    }
}

/// The longest key segment the bucket's engine stores.
pub(crate) fn key_segment_max(b: &kalpana_domain::model::BucketRecord) -> usize {
    b.engine.profile().max_key_segment_bytes
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `PUT /api/buckets/{id}/objects/{key}`: stores the raw request body, streamed.
#[utoipa::path(
    put,
    path = "/api/buckets/{id}/objects/{key}",
    tag = "objects",
    operation_id = "put_object",
    params(("id" = String, Path, description = "bucket id"), ("key" = String, Path, description = "object key: one percent-encoded path segment")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the object's bytes, streamed"),
    responses(
        (status = 201, description = "stored", body = Stored),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, key)): PathParams<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Stored>)> {
    let (b, _awake) = kalpana_domain::sleep::serving(&state, &caller, &id, Access::Write).await?;
    validate::object_key(&key, key_segment_max(&b), KeyUse::Write)?;
    let length = match header_str(&headers, header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| Error::BadRequest("Content-Length is not a number".into()))?,
        ),
        None => None,
    };
    let up = upload::prepare(&state, &b, &key).await?;
    let mut source = body.into_data_stream();
    let stored = upload::store(
        &state,
        &b,
        &key,
        header_str(&headers, header::CONTENT_TYPE),
        length,
        up,
        &mut source,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// `POST /api/buckets/{id}/objects`: a multipart form with `key` (and optionally
/// `contentType`) before `file`; the file part is streamed.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/objects",
    tag = "objects",
    operation_id = "upload_object_form",
    params(("id" = String, Path, description = "bucket id")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "stored", body = Stored),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn upload_form(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    form: std::result::Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(StatusCode, Json<Stored>)> {
    let (b, _awake) = kalpana_domain::sleep::serving(&state, &caller, &id, Access::Write).await?;
    let mut form = form.map_err(|e| Error::BadRequest(e.body_text()))?;
    let bad_form = |e: axum::extract::multipart::MultipartError| match body_error(&e) {
        Error::BadRequest(_) => {
            Error::BadRequest(format!("malformed multipart form: {}", e.body_text()))
        }
        timed_out => timed_out,
    };
    let mut key: Option<String> = None;
    let mut content_type: Option<String> = None;
    while let Some(mut field) = form.next_field().await.map_err(bad_form)? {
        match field.name() {
            Some("key") => {
                key = Some(capped_text(&mut field, "key", MAX_KEY_FIELD, bad_form).await?)
            }
            Some("contentType") => {
                content_type = Some(
                    capped_text(&mut field, "contentType", MAX_CONTENT_TYPE_FIELD, bad_form)
                        .await?,
                )
            }
            Some("file") => {
                let key = key.take().ok_or_else(|| {
                    Error::BadRequest(
                        "the form must send the `key` field before the `file` field".into(),
                    )
                })?;
                validate::object_key(&key, key_segment_max(&b), KeyUse::Write)?;
                let content_type = content_type
                    .take()
                    .or_else(|| field.content_type().map(str::to_string));
                let up = upload::prepare(&state, &b, &key).await?;
                let stored =
                    upload::store(&state, &b, &key, content_type, None, up, &mut field).await?;
                return Ok((StatusCode::CREATED, Json(stored)));
            }
            _ => {}
        }
    }
    Err(Error::BadRequest(
        "the form has no `file` field: send `key`, then `file`".into(),
    ))
}

/// Longest `key` field a form may send: a key is at most 1,024 bytes, so anything past this is
/// refused before it is read further.
const MAX_KEY_FIELD: usize = 4096;
/// Longest `contentType` field a form may send.
const MAX_CONTENT_TYPE_FIELD: usize = 256;

/// A text field of a form, read chunk by chunk and refused (400) as soon as it passes `max`
/// bytes: a field of any size costs at most `max` plus one chunk of memory.
async fn capped_text(
    field: &mut axum::extract::multipart::Field<'_>,
    name: &str,
    max: usize,
    bad_form: impl Fn(axum::extract::multipart::MultipartError) -> Error,
) -> Result<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(&bad_form)? {
        if bytes.len() + chunk.len() > max {
            return Err(Error::BadRequest(format!(
                "the `{name}` field is longer than {max} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| Error::BadRequest(format!("the `{name}` field is not UTF-8")))
}

/// The form of `POST /api/buckets/{id}/objects` (for the API description; the handler reads it
/// as a stream, `key` first).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// Object key; must come before `file`.
    key: String,
    /// Content type to store (default: the file part's).
    #[schema(rename = "contentType")]
    content_type: Option<String>,
    /// The bytes.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Query of `GET /api/buckets/{id}/objects`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    prefix: Option<String>,
    delimiter: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// One object in a listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectView {
    key: String,
    size: u64,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// A page of objects.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectPage {
    objects: Vec<ObjectView>,
    prefixes: Vec<String>,
    next_cursor: Option<String>,
}

/// `GET /api/buckets/{id}/objects`: one page; follow `nextCursor` for the next.
#[utoipa::path(
    get,
    path = "/api/buckets/{id}/objects",
    tag = "objects",
    operation_id = "list_objects",
    params(("id" = String, Path, description = "bucket id"), ListQuery),
    responses(
        (status = 200, description = "one page of objects", body = ObjectPage),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<ObjectPage>> {
    let (b, _awake) = kalpana_domain::sleep::serving(&state, &caller, &id, Access::Read).await?;
    let limit = q.limit.unwrap_or(MAX_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(Error::BadRequest(format!(
            "limit must be between 1 and {MAX_LIST}"
        )));
    }
    for (what, v) in [("prefix", &q.prefix), ("delimiter", &q.delimiter)] {
        if v.as_deref()
            .is_some_and(|v| v.len() > 1024 || v.chars().any(char::is_control))
        {
            return Err(Error::BadRequest(format!(
                "{what} must be at most 1024 bytes without control characters"
            )));
        }
    }
    let token = q
        .cursor
        .as_deref()
        .map(|c| {
            URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|t| String::from_utf8(t).ok())
                // The API never hands out an empty cursor (S3 refuses an empty token).
                .filter(|t| !t.is_empty())
                .ok_or_else(|| Error::BadRequest("cursor is not one this API handed out".into()))
        })
        .transpose()?;
    let page = kalpana_domain::clients::s3(&state, &b)?
        .list_objects(
            q.prefix.as_deref().filter(|p| !p.is_empty()),
            q.delimiter.as_deref().filter(|d| !d.is_empty()),
            limit as i32,
            token.as_deref(),
        )
        .await?;
    Ok(Json(ObjectPage {
        objects: page
            .objects
            .into_iter()
            .map(|o| ObjectView {
                key: o.key,
                size: o.size,
                etag: o.etag,
                last_modified: o.last_modified,
            })
            .collect(),
        prefixes: page.prefixes,
        next_cursor: page.next_token.map(|t| URL_SAFE_NO_PAD.encode(t)),
    }))
}

fn object_headers(h: &mut HeaderMap, info: &kalpana_s3_ops::ObjectInfo, length: u64) -> Result<()> {
    let value = |s: &str| {
        HeaderValue::from_str(s)
            .map_err(|_| Error::Internal("the S3 server sent an invalid header value".into()))
    };
    h.insert(
        header::CONTENT_TYPE,
        value(
            info.content_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
        )?,
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(etag) = &info.etag {
        h.insert(header::ETAG, value(etag)?);
    }
    if let Some(lm) = &info.last_modified_http {
        h.insert(header::LAST_MODIFIED, value(lm)?);
    }
    Ok(())
}

/// `GET /api/buckets/{id}/objects/{key}`: the object, streamed; `Range` gives 206.
#[utoipa::path(
    get,
    path = "/api/buckets/{id}/objects/{key}",
    tag = "objects",
    operation_id = "get_object",
    params(("id" = String, Path, description = "bucket id"), ("key" = String, Path, description = "object key: one percent-encoded path segment"), ("Range" = Option<String>, Header, description = "bytes=start-end, bytes=start- or bytes=-suffix")),
    responses(
        (status = 200, description = "the object's bytes, with the content type it was stored with", content_type = "*/*", body = Vec<u8>),
        (status = 206, description = "the requested range", content_type = "*/*", body = Vec<u8>),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, key)): PathParams<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let (b, awake) = kalpana_domain::sleep::serving(&state, &caller, &id, Access::Read).await?;
    validate::object_key(&key, key_segment_max(&b), KeyUse::Read)?;
    let range = header_str(&headers, header::RANGE).filter(|r| validate::byte_range(r));
    let d = kalpana_domain::clients::s3(&state, &b)?
        .get_object(&key, range.as_deref())
        .await
        .map_err(s3_error)?;
    // The bucket stays awake while the body streams: every chunk is activity.
    let mut resp = Body::from_stream(d.body.map(move |chunk| {
        if let Some(a) = &awake {
            a.touch();
        }
        chunk
    }))
    .into_response();
    object_headers(resp.headers_mut(), &d.info, d.content_length)?;
    if let Some(cr) = d.content_range.filter(|_| range.is_some()) {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        resp.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&cr)
                .map_err(|_| Error::Internal("bad Content-Range from the S3 server".into()))?,
        );
    }
    Ok(resp)
}

/// `HEAD /api/buckets/{id}/objects/{key}`: the headers of a GET, no body.
#[utoipa::path(
    head,
    path = "/api/buckets/{id}/objects/{key}",
    tag = "objects",
    operation_id = "head_object",
    params(("id" = String, Path, description = "bucket id"), ("key" = String, Path, description = "object key: one percent-encoded path segment")),
    responses(
        (status = 200, description = "the object's headers, no body"),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn head(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, key)): PathParams<(String, String)>,
) -> Result<Response> {
    let (b, _awake) = kalpana_domain::sleep::serving(&state, &caller, &id, Access::Read).await?;
    validate::object_key(&key, key_segment_max(&b), KeyUse::Read)?;
    let info = kalpana_domain::clients::s3(&state, &b)?
        .head_object(&key)
        .await?
        .ok_or(Error::NotFound("object"))?;
    let mut resp = StatusCode::OK.into_response();
    object_headers(resp.headers_mut(), &info, info.size)?;
    Ok(resp)
}

/// Metadata of one object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetadataView {
    key: String,
    size: u64,
    content_type: Option<String>,
    etag: Option<String>,
    last_modified: Option<String>,
    metadata: HashMap<String, String>,
}

/// `GET /api/buckets/{id}/objects/{key}/metadata`.
#[utoipa::path(
    get,
    path = "/api/buckets/{id}/objects/{key}/metadata",
    tag = "objects",
    operation_id = "object_metadata",
    params(("id" = String, Path, description = "bucket id"), ("key" = String, Path, description = "object key: one percent-encoded path segment")),
    responses(
        (status = 200, description = "size, type, ETag, time, user metadata", body = MetadataView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn metadata(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, key)): PathParams<(String, String)>,
) -> Result<Json<MetadataView>> {
    let (b, _awake) = kalpana_domain::sleep::serving(&state, &caller, &id, Access::Read).await?;
    validate::object_key(&key, key_segment_max(&b), KeyUse::Read)?;
    let o = kalpana_domain::clients::s3(&state, &b)?
        .head_object(&key)
        .await?
        .ok_or(Error::NotFound("object"))?;
    Ok(Json(MetadataView {
        key: o.key,
        size: o.size,
        content_type: o.content_type,
        etag: o.etag,
        last_modified: o.last_modified,
        metadata: o.metadata,
    }))
}

/// `DELETE /api/buckets/{id}/objects/{key}`: 204, also when there was no such key.
#[utoipa::path(
    delete,
    path = "/api/buckets/{id}/objects/{key}",
    tag = "objects",
    operation_id = "delete_object",
    params(("id" = String, Path, description = "bucket id"), ("key" = String, Path, description = "object key: one percent-encoded path segment")),
    responses(
        (status = 204, description = "deleted (or was not there)"),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, key)): PathParams<(String, String)>,
) -> Result<StatusCode> {
    let (b, _awake) = kalpana_domain::sleep::serving(&state, &caller, &id, Access::Write).await?;
    validate::object_key(&key, key_segment_max(&b), KeyUse::Read)?;
    let client = kalpana_domain::clients::s3(&state, &b)?;
    let old = client.head_object(&key).await?;
    client.delete_object(&key).await?;
    if let Some(old) = old {
        usage::adjust(&state, &b, -1, -(old.size as i64)).await?;
        tracing::info!(bucket = %b.id, key, size = old.size, "object deleted");
    }
    Ok(StatusCode::NO_CONTENT)
}
