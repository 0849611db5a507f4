//! Serves the OpenAPI v3 documents (`/openapi/v3`, `/openapi/v3/<group-version>`) that kubectl
//! reads before it validates and applies, and `/openapi/v2` in the protobuf form older kubectl
//! (1.27) insists on.

use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use skiff_api::openapi;

use crate::error::{ApiError, ApiResult};

pub fn serve(path: &str, _headers: &HeaderMap) -> ApiResult<Response> {
    if path == "/openapi/v2" {
        return Ok((
            [(
                http::header::CONTENT_TYPE,
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            )],
            openapi::v2_protobuf(),
        )
            .into_response());
    }
    let doc = match path.strip_prefix("/openapi/v3") {
        Some("") | Some("/") => openapi::index(),
        Some(rest) => openapi::by_path(rest).ok_or_else(ApiError::path_not_found)?,
        None => return Err(ApiError::path_not_found()),
    };
    let body = serde_json::to_vec(&doc).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(([(http::header::CONTENT_TYPE, "application/json")], body).into_response())
}
