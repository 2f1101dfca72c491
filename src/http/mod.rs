//! HTTP: `/healthz` (liveness), `/readyz` (503 until every enabled camera has started)
//! and `/metrics` (Prometheus text). The inference API will live here too.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::pipeline::Readiness;
use crate::telemetry::Telemetry;
use crate::SERVICE_NAME;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Metrics to render.
    pub telemetry: Arc<Telemetry>,
    /// Which cameras have started.
    pub readiness: Arc<Readiness>,
}

/// The server's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "service": SERVICE_NAME }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let waiting = state.readiness.waiting_for();
    if waiting.is_empty() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting", "waiting_for": waiting })),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.telemetry.render() {
        Ok(text) => (
            [(header::CONTENT_TYPE, state.telemetry.content_type())],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Rendering metrics failed.");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}
