//! The response envelope.
//!
//! `{"status":"success","data":…,"warnings":[…],"infos":[…]}` or
//! `{"status":"error","errorType":…,"error":…}`, keys in Prometheus' order,
//! empty `warnings`/`infos` omitted. Warnings and infos are capped at ten
//! each plus a line counting the rest, as Prometheus' `AsStrings` does, and
//! repeated ones are dropped (Prometheus keeps them in a set).

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::format::{string_array_json, write_json_str};

/// How many warnings (and, separately, infos) a response lists.
const MAX_ANNOTATIONS: usize = 10;

/// A successful result: the JSON of `data` (or `None` for 204 No Content),
/// with its warnings and infos.
#[derive(Clone, Debug, Default)]
pub struct Success {
    pub data: Option<String>,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Success {
    pub fn data(json: String) -> Self {
        Success {
            data: Some(json),
            ..Default::default()
        }
    }

    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }
}

/// The result of a handler.
pub type ApiResult = Result<Success, ApiError>;

fn cap_annotations(items: &[String], kind: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<&String> = items.iter().filter(|s| seen.insert(s.as_str())).collect();
    let mut out: Vec<String> = unique
        .iter()
        .take(MAX_ANNOTATIONS)
        .map(|s| s.to_string())
        .collect();
    if unique.len() > MAX_ANNOTATIONS {
        out.push(format!(
            "{} more {kind} annotations omitted",
            unique.len() - MAX_ANNOTATIONS
        ));
    }
    out
}

/// The success envelope's bytes.
pub fn success_body(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 40);
    out.push_str("{\"status\":\"success\",\"data\":");
    out.push_str(data);
    let warnings = cap_annotations(warnings, "warning");
    if !warnings.is_empty() {
        out.push_str(",\"warnings\":");
        out.push_str(&string_array_json(&warnings));
    }
    let infos = cap_annotations(infos, "info");
    if !infos.is_empty() {
        out.push_str(",\"infos\":");
        out.push_str(&string_array_json(&infos));
    }
    out.push('}');
    out
}

/// The error envelope's bytes.
pub fn error_body(err: &ApiError) -> String {
    let mut out = String::from("{\"status\":\"error\",\"errorType\":");
    write_json_str(&mut out, err.typ.as_str());
    out.push_str(",\"error\":");
    write_json_str(&mut out, &err.message);
    out.push('}');
    out
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Turns a handler result into the HTTP response.
pub fn respond(result: ApiResult) -> Response {
    match result {
        Ok(Success {
            data: Some(data),
            warnings,
            infos,
        }) => json_response(StatusCode::OK, success_body(&data, &warnings, &infos)),
        Ok(Success { data: None, .. }) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            if matches!(
                e.typ,
                crate::error::ErrorType::Internal | crate::error::ErrorType::Unavailable
            ) {
                tracing::warn!(error_type = e.typ.as_str(), error = %e.message, "API request failed");
            }
            json_response(e.typ.status_code(), error_body(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        assert_eq!(
            success_body("[]", &[], &[]),
            r#"{"status":"success","data":[]}"#
        );
        assert_eq!(
            success_body("1", &["w".into(), "w".into()], &["i".into()]),
            r#"{"status":"success","data":1,"warnings":["w"],"infos":["i"]}"#
        );
        let many: Vec<String> = (0..13).map(|i| format!("w{i}")).collect();
        let body = success_body("1", &many, &[]);
        assert!(
            body.ends_with(r#""w9","3 more warning annotations omitted"]}"#),
            "{body}"
        );
        assert_eq!(
            error_body(&ApiError::bad_data("invalid parameter \"x\": <")),
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"x\": \u003c"}"#
        );
    }
}
