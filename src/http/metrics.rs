//! `GET /metrics` on the API listener: Prometheus text format 0.0.4 (see
//! `crate::metrics`). No token for now: it carries counts, never secrets nor
//! (by default) per-machine labels; scoped tokens will cover it later.

use crate::metrics::{Exporter, CONTENT_TYPE};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub fn router(exporter: Arc<Exporter>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(exporter)
}

async fn metrics(State(e): State<Arc<Exporter>>) -> Response {
    match e.render() {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot encode metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode metrics (see daemon log)\n",
            )
                .into_response()
        }
    }
}
