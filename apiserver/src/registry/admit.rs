//! Admission of a request body for the URL's resource: its `apiVersion` and `kind` must
//! match, and fields its schema does not know are refused, warned about or dropped as the
//! client's `fieldValidation` asks.

use serde_json::{Value, json};
use skiff_api::{ResourceInfo, strategy};

use crate::error::{ApiError, ApiResult};
use crate::request::FieldValidation;

/// Decodes and strictness-checks a body through the kind's schema.
pub(super) fn admit_schema(
    info: &ResourceInfo,
    obj: Value,
    fv: FieldValidation,
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    let (obj, unknown) = strategy::normalize(info, obj).map_err(ApiError::bad_request)?;
    if !unknown.is_empty() {
        match fv {
            FieldValidation::Strict => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => {
                warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")))
            }
            FieldValidation::Ignore => {}
        }
    }
    Ok(obj)
}

/// Checks (and fills in) `apiVersion` and `kind` against the URL's resource.
pub(super) fn check_type(info: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    let want_av = info.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(want_av),
        Some(av) if av == want_av => {}
        Some(av) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(info.kind),
        Some(k) if k == info.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    Ok(())
}
