//! The AWS settings every client shares (the publishers' sinks and the KVS sources):
//! the standard credential and region chain, tight timeouts so an unreachable endpoint
//! fails an attempt quickly, and no SDK retries (callers retry and count).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Loads the AWS config from the standard chain, with `region` when given. The SDK's
/// own retries are off: each sink retries inside an attempt and its queue across
/// attempts, so every failure is seen and counted.
pub async fn sdk_config(region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(15))
                .build(),
        );
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    loader.load().await
}
