//! Response rendering: JSON, YAML, `Table` and `PartialObjectMetadata` forms of objects and
//! lists, with the headers clients expect.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use skiff_api::{ResourceInfo, table};

use crate::registry::Page;
use crate::request::{Format, Params};

/// A response carrying `body` with `code`, in `format`, plus `Warning` headers.
pub fn respond(code: u16, body: &Value, format: Format, warnings: &[String]) -> Response {
    let (bytes, ct) = match format {
        Format::Yaml => (
            serde_yaml::to_string(body).unwrap_or_default().into_bytes(),
            "application/yaml",
        ),
        _ => (
            serde_json::to_vec(body).unwrap_or_default(),
            "application/json",
        ),
    };
    respond_bytes(code, Body::from(bytes), ct, warnings)
}

/// A JSON body already encoded.
pub fn respond_json(code: u16, json: bytes::Bytes, warnings: &[String]) -> Response {
    respond_bytes(code, Body::from(json), "application/json", warnings)
}

fn respond_bytes(code: u16, body: Body, ct: &'static str, warnings: &[String]) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

pub fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// A `Table` of `objs`, with row objects as `includeObject` asks (Metadata by default).
pub fn table(
    info: &ResourceInfo,
    objs: &[Value],
    rv: Option<String>,
    cont: Option<String>,
    params: &Params,
) -> Value {
    let columns: Vec<Value> = table::columns(info)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let now = now_unix();
    let include = params.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut row = json!({ "cells": table::cells(info, o, now) });
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => row["object"] = partial_metadata(o),
            }
            row
        })
        .collect();
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv);
    }
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// A list page in the requested form.
pub fn list(info: &ResourceInfo, page: Page, format: Format, params: &Params) -> Value {
    let rv = page.resource_version.to_string();
    match format {
        Format::Table => table(info, &page.items, Some(rv), page.continue_token, params),
        Format::Metadata => {
            let items: Vec<Value> = page.items.iter().map(partial_metadata).collect();
            let mut meta = json!({ "resourceVersion": rv });
            if let Some(c) = page.continue_token {
                meta["continue"] = json!(c);
            }
            json!({ "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items })
        }
        Format::Json | Format::Yaml => {
            let mut meta = json!({ "resourceVersion": rv });
            if let Some(c) = page.continue_token {
                meta["continue"] = json!(c);
            }
            if let Some(r) = page.remaining {
                meta["remainingItemCount"] = json!(r);
            }
            json!({ "kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": meta, "items": page.items })
        }
    }
}

/// One object in the requested form.
pub fn object(info: &ResourceInfo, obj: Value, format: Format, params: &Params) -> Value {
    match format {
        Format::Table => {
            let rv = obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(String::from);
            table(info, std::slice::from_ref(&obj), rv, None, params)
        }
        Format::Metadata => partial_metadata(&obj),
        Format::Json | Format::Yaml => obj,
    }
}

/// A `Status` of success, as returned by some deletes and subresource POSTs.
pub fn success(code: u16) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code })
}
