//! A multipart upload whose parts are sent by someone else (a node agent with presigned part
//! URLs): started, completed and aborted here, with the credentials, while the bytes go
//! straight from the uploader to the server.

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::client::BucketClient;
use crate::error::{Error, Result};

impl BucketClient {
    /// Starts a multipart upload of `key`; returns its upload id.
    pub async fn start_multipart(&self, key: &str, content_type: Option<&str>) -> Result<String> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(content_type.map(String::from))
            .send()
            .await
            .map_err(|e| Error::from_sdk("CreateMultipartUpload", &self.endpoint, e))?;
        created.upload_id.ok_or_else(|| Error::S3 {
            op: "CreateMultipartUpload",
            status: 200,
            code: "MissingUploadId".into(),
            message: "the server gave no upload id".into(),
        })
    }

    /// Completes upload `upload_id` of `key` from its parts (number, ETag), in order.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<()> {
        let parts: Vec<CompletedPart> = parts
            .iter()
            .map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build())
            .collect();
        self.complete_parts(key, upload_id, parts).await.map(drop)
    }

    /// Completes upload `upload_id` of `key` from `parts`; the object's ETag.
    pub(crate) async fn complete_parts(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<Option<String>> {
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::from_sdk("CompleteMultipartUpload", &self.endpoint, e))?;
        Ok(out.e_tag)
    }

    /// Aborts upload `upload_id` of `key` (its parts are dropped).
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| Error::from_sdk("AbortMultipartUpload", &self.endpoint, e))?;
        Ok(())
    }
}
