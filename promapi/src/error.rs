//! API error types and their HTTP status codes.

use axum::http::StatusCode;

/// The `errorType` of an error response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// Bad parameters or an unparsable query (400).
    BadData,
    /// The query failed during evaluation (422).
    Execution,
    /// The query ran out of time (503).
    Timeout,
    /// The query was canceled (499, nginx' "client closed request", as
    /// Prometheus 3 answers).
    Canceled,
    /// A storage or server fault (500).
    Internal,
    /// The storage is not ready (500: Prometheus has no special code for it).
    Unavailable,
    /// An unknown object was asked for (404).
    NotFound,
}

impl ErrorType {
    /// The wire name, e.g. `bad_data`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
            ErrorType::NotFound => "not_found",
        }
    }

    /// The HTTP status Prometheus answers with (`getDefaultErrorCode`).
    pub fn status_code(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            // 499 is a valid code number, so this cannot fail; the fallback is
            // only there to avoid an unwrap.
            ErrorType::Canceled => {
                StatusCode::from_u16(499).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            ErrorType::Internal | ErrorType::Unavailable => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answered as `{"status":"error","errorType":…,"error":…}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{typ}: {message}")]
pub struct ApiError {
    pub typ: ErrorType,
    pub message: String,
}

impl ApiError {
    pub fn new(typ: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            typ,
            message: message.into(),
        }
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        Self::new(ErrorType::BadData, message)
    }

    pub fn execution(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Execution, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Timeout, message)
    }

    /// `invalid parameter "<name>": <message>`, Prometheus' wording for a
    /// parameter that does not parse.
    pub fn invalid_param(name: &str, message: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter \"{name}\": {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(ErrorType::BadData.status_code().as_u16(), 400);
        assert_eq!(ErrorType::Execution.status_code().as_u16(), 422);
        assert_eq!(ErrorType::Timeout.status_code().as_u16(), 503);
        assert_eq!(ErrorType::Canceled.status_code().as_u16(), 499);
        assert_eq!(ErrorType::Internal.status_code().as_u16(), 500);
        assert_eq!(ErrorType::Unavailable.status_code().as_u16(), 500);
        assert_eq!(ErrorType::NotFound.status_code().as_u16(), 404);
    }
}
