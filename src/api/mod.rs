//! The operator API's JSON contract (`/api/v1`): the request and response
//! bodies, as serde types shared by the server (`http::api*`), the client
//! (`client`, the CLI) and the tests. Field names here are the wire names.
//!
//! The types import nothing from the rest of the crate: they are plain data
//! (strings, numbers, maps). Internal types (`inventory`, `store`, `engine`)
//! do not derive serde; they are converted into these at the edge.

use serde::{Deserialize, Serialize};

/// Every refusal: `{"error": {"code", "message", "errors"?}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable: `not_found`, `bad_request`, `unauthorized`, `invalid_config`, …
    pub code: String,
    pub message: String,
    /// One per problem, where the refusal is about files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// One configuration problem: the file, the key in it, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    pub file: String,
    pub key: String,
    pub reason: String,
    /// Admin edits: the problem was already in the files before the edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preexisting: Option<bool>,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ApiError {
                code: code.into(),
                message: message.into(),
                errors: None,
            },
        }
    }
}
