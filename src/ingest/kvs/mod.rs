//! Kinesis Video Streams sources: [`hls`] (the seed's path) and [`getmedia`].
//!
//! Both start at the control plane: `GetDataEndpoint` for the API they use, on the
//! region's endpoint or `endpoint_url` when set. Credentials and region come from the
//! standard AWS chain, as for the publishers. Errors keep the stream's name and the
//! service's own message, and are what the camera supervisor reconnects on.

pub mod getmedia;
pub mod hls;

use aws_sdk_kinesisvideo::error::DisplayErrorContext;
use aws_sdk_kinesisvideo::types::ApiName;

use super::live::SharedCursor;
use super::{FrameSource, IngestError};
use crate::config::{KvsMode, KvsSourceConfig};
use crate::telemetry::CameraMetrics;

/// A KVS stream's control-plane handle.
pub struct Kvs {
    config: KvsSourceConfig,
    sdk: aws_config::SdkConfig,
    control: aws_sdk_kinesisvideo::Client,
}

impl Kvs {
    /// Loads AWS settings for `config`'s region and endpoint.
    pub async fn new(config: &KvsSourceConfig) -> Self {
        let sdk = crate::aws::sdk_config(config.region.as_deref()).await;
        let mut builder = aws_sdk_kinesisvideo::config::Builder::from(&sdk);
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        Self {
            config: config.clone(),
            control: aws_sdk_kinesisvideo::Client::from_conf(builder.build()),
            sdk,
        }
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.config.stream_name
    }

    /// The stream's settings.
    pub fn config(&self) -> &KvsSourceConfig {
        &self.config
    }

    /// The AWS settings the data-plane clients are built from.
    pub fn sdk(&self) -> &aws_config::SdkConfig {
        &self.sdk
    }

    /// `GetDataEndpoint` for `api`.
    pub async fn data_endpoint(&self, api: ApiName) -> Result<String, IngestError> {
        let out = self
            .control
            .get_data_endpoint()
            .stream_name(&self.config.stream_name)
            .api_name(api.clone())
            .send()
            .await
            .map_err(|e| {
                self.error(format!(
                    "GetDataEndpoint({api}) failed: {}",
                    DisplayErrorContext(&e)
                ))
            })?;
        out.data_endpoint
            .filter(|e| !e.is_empty())
            .ok_or_else(|| self.error(format!("GetDataEndpoint({api}) returned no endpoint")))
    }

    /// A stream error naming this stream.
    pub fn error(&self, message: impl Into<String>) -> IngestError {
        IngestError::Stream {
            stream: format!("kvs:{}", self.config.stream_name),
            message: message.into(),
        }
    }
}

/// Opens a KVS camera in its configured mode; returns once the video track is known.
pub async fn open(
    config: &KvsSourceConfig,
    cursor: SharedCursor,
    metrics: CameraMetrics,
) -> Result<Box<dyn FrameSource>, IngestError> {
    let kvs = Kvs::new(config).await;
    Ok(match config.mode {
        KvsMode::Hls => Box::new(hls::HlsSource::open(kvs, cursor, metrics).await?),
        KvsMode::Getmedia => Box::new(getmedia::GetMediaSource::open(kvs, cursor, metrics).await?),
    })
}
