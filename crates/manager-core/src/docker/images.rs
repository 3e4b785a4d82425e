//! Engine images: present locally, or pulled with progress under a time limit.

use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;

use super::{DockerClient, PullProgress};
use crate::error::{Error, Result};

impl DockerClient {
    /// Whether the image is present locally.
    pub async fn image_present(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) => match Error::docker("inspect image", e) {
                e if e.is_not_found() => Ok(false),
                e => Err(e),
            },
        }
    }

    /// Makes sure the image is present, pulling it if needed and reporting each pull step to
    /// `progress`. A pull that fails or times out is [`Error::ImageUnavailable`] naming the image.
    pub async fn ensure_image(
        &self,
        image: &str,
        mut progress: impl FnMut(PullProgress) + Send,
    ) -> Result<()> {
        if self.image_present(image).await? {
            return Ok(());
        }
        let unavailable = |reason: String| Error::ImageUnavailable {
            image: image.to_string(),
            reason,
        };
        let opts = CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        progress(PullProgress {
            image: image.to_string(),
            status: "image not present; pulling".to_string(),
            layer: None,
            current: None,
            total: None,
        });
        let pull = async {
            let mut stream = self.docker.create_image(Some(opts), None, None);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(info) => progress(PullProgress {
                        image: image.to_string(),
                        status: info.status.unwrap_or_default(),
                        layer: info.id,
                        current: info.progress_detail.as_ref().and_then(|d| d.current),
                        total: info.progress_detail.as_ref().and_then(|d| d.total),
                    }),
                    Err(e) => {
                        return Err(match Error::docker("pull image", e) {
                            Error::Docker { message, .. } => unavailable(message),
                            other => other,
                        })
                    }
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.pull_timeout, pull)
            .await
            .map_err(|_| unavailable(format!("pull timed out after {:?}", self.pull_timeout)))??;
        if self.image_present(image).await? {
            Ok(())
        } else {
            Err(unavailable(
                "the pull ended but the image is still missing".into(),
            ))
        }
    }
}
