//! A small HTTP(S) GET client for HLS playlists and segments.
//!
//! hyper's pooled client with rustls (the AWS SDK's TLS stack, so nothing new is
//! compiled), native root certificates, and a deadline per request. Status codes other
//! than 2xx are errors that keep the code, so callers can tell an expired session (403)
//! from a missing playlist (404).

use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server answered with a non-success status.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The URL without its query (session tokens stay out of logs).
        url: String,
        /// The status code.
        status: u16,
    },
    /// No complete answer: connection refused, reset, truncated body, bad URL.
    #[error("GET {url}: {message}")]
    Transport {
        /// The URL without its query.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// No complete answer within the deadline.
    #[error("GET {url}: no complete answer within {timeout_ms} ms")]
    Timeout {
        /// The URL without its query.
        url: String,
        /// The deadline.
        timeout_ms: u64,
    },
}

/// A pooled HTTP/1.1 client for `http://` and `https://` URLs.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// A client whose requests (headers and body) must complete within `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, HttpError> {
        let provider = || std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider())
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "No system root certificates; https:// URLs will fail (http:// works).");
                let config = rustls::ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| HttpError::Transport {
                        url: String::new(),
                        message: format!("TLS setup failed: {e}"),
                    })?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }

    /// GETs `url` and returns its whole body.
    pub async fn get(&self, url: &str) -> Result<Bytes, HttpError> {
        let shown = redact(url);
        let transport = |message: String| HttpError::Transport {
            url: shown.clone(),
            message,
        };
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| transport(format!("bad URL: {e}")))?;
        let fetch = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|e| transport(error_chain(&e)))?;
            let status = response.status();
            if !status.is_success() {
                return Err(HttpError::Status {
                    url: shown.clone(),
                    status: status.as_u16(),
                });
            }
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(format!("body: {}", error_chain(&e))))?;
            Ok(body.to_bytes())
        };
        match tokio::time::timeout(self.timeout, fetch).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout {
                url: shown.clone(),
                timeout_ms: self.timeout.as_millis() as u64,
            }),
        }
    }
}

/// `url` without its query string.
pub fn redact(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

/// An error and its sources, joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Resolves a playlist reference against the URL it came from (RFC 3986 for the forms
/// HLS uses: absolute, host-relative, and relative to the playlist's directory).
pub fn resolve(base: &str, reference: &str) -> Result<String, String> {
    let base = url::Url::parse(base).map_err(|e| format!("bad base URL {}: {e}", redact(base)))?;
    base.join(reference)
        .map(String::from)
        .map_err(|e| format!("bad reference {reference:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_like_a_browser() {
        let base = "https://b-1234.kinesisvideo.us-east-1.amazonaws.com/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=abc";
        assert_eq!(
            resolve(base, "getHLSMediaPlaylist.m3u8?SessionToken=abc").unwrap(),
            "https://b-1234.kinesisvideo.us-east-1.amazonaws.com/hls/v1/getHLSMediaPlaylist.m3u8?SessionToken=abc"
        );
        assert_eq!(
            resolve(base, "/x/seg.ts").unwrap(),
            "https://b-1234.kinesisvideo.us-east-1.amazonaws.com/x/seg.ts"
        );
        assert_eq!(resolve(base, "http://o/s.ts").unwrap(), "http://o/s.ts");
        assert_eq!(
            redact(base),
            "https://b-1234.kinesisvideo.us-east-1.amazonaws.com/hls/v1/getHLSMasterPlaylist.m3u8"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transport_error_and_statuses_are_kept() {
        let client = HttpClient::new(Duration::from_secs(2)).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = client
            .get(&format!("http://127.0.0.1:{port}/a.m3u8?SessionToken=s"))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Transport { .. }), "{err}");
        assert!(!err.to_string().contains("SessionToken"), "{err}");

        // A server that answers 403 to everything.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read as _, Write as _};
            for mut s in listener.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
            }
        });
        let err = client.get(&format!("http://{addr}/x")).await.unwrap_err();
        assert!(
            matches!(err, HttpError::Status { status: 403, .. }),
            "{err}"
        );
    }
}
