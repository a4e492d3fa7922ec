//! Request bodies are JSON, and must say so: a `POST`, `PUT` or `PATCH` whose body comes as
//! `text/plain`, as a form, or without a `Content-Type` is refused with 415
//! `UNSUPPORTED_MEDIA_TYPE` before any handler sees it, so nothing runs and nothing changes.
//!
//! Why refuse a body that would parse: the handlers read JSON whatever the header says, and a
//! browser sends `text/plain` and form bodies to another site without asking it first (a CORS
//! "simple request", no preflight). A page anywhere could then make a visitor's browser post
//! JSON-looking text to the platform. A body declared `application/json` needs the preflight,
//! which the platform never grants. And an integration that sends the wrong type learns it on
//! its first call instead of depending on our leniency.
//!
//! One layer for every route, the REST API's and the consoles' (`/console/api/...`): see
//! [`require_json`].

use crate::error::Failure;
use axum::body::HttpBody;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dtenge_core::{Error, ErrorCode};

/// The one media type the platform accepts in request bodies.
pub const JSON_MEDIA_TYPE: &str = "application/json";

/// How much of a refused `Content-Type` the error message repeats.
const SHOWN_CONTENT_TYPE_CHARS_MAX: usize = 80;

/// Middleware: refuse a body that is not declared JSON (see [`check_media_type`]). Add it with
/// `router.route_layer(axum::middleware::from_fn(dtenge_api::require_json))`, so that unknown
/// routes still get `NOT_FOUND` and wrong methods `METHOD_NOT_ALLOWED`.
pub async fn require_json(request: Request, next: Next) -> Response {
    // The body's framing is known from the head (Content-Length, Transfer-Encoding, HTTP/2's
    // end of stream): whether there is one is decided without reading it.
    let body = request.body();
    let has_body = !(body.is_end_stream() || body.size_hint().exact() == Some(0));
    if let Err(e) = check_media_type(request.method(), request.headers(), has_body) {
        return Failure(e).into_response();
    }
    next.run(request).await
}

/// Whether a request may go on to its handler. Only `POST`, `PUT` and `PATCH` carry bodies
/// here (the `GET` routes read none). Such a request must declare `application/json`
/// (parameters such as `charset=utf-8` are allowed); without a `Content-Type` it may only
/// come without a body (e.g. `POST /v1/operator/checkpoints`, a console's sign-out).
pub fn check_media_type(method: &Method, headers: &HeaderMap, has_body: bool) -> Result<(), Error> {
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        return Ok(());
    }
    match headers.get(header::CONTENT_TYPE) {
        None if !has_body => Ok(()),
        None => Err(Error::new(
            ErrorCode::UnsupportedMediaType,
            format!("the request body must be JSON, sent with 'Content-Type: {JSON_MEDIA_TYPE}'; this request has no Content-Type"),
        )),
        Some(value) if is_json(value) => Ok(()),
        Some(value) => {
            let shown: String =
                String::from_utf8_lossy(value.as_bytes()).chars().take(SHOWN_CONTENT_TYPE_CHARS_MAX).collect();
            Err(Error::new(
                ErrorCode::UnsupportedMediaType,
                format!("the request body must be JSON, sent with 'Content-Type: {JSON_MEDIA_TYPE}'; this request says '{shown}'"),
            ))
        }
    }
}

/// `application/json`, in any letter case, with or without parameters.
fn is_json(value: &HeaderValue) -> bool {
    let Ok(text) = value.to_str() else { return false };
    let essence = text.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case(JSON_MEDIA_TYPE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        headers
    }

    #[test]
    fn json_with_or_without_parameters_is_accepted() {
        for accepted in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            " application/json ; charset=\"utf-8\"; profile=x",
        ] {
            for method in [Method::POST, Method::PUT, Method::PATCH] {
                assert_eq!(check_media_type(&method, &with_type(accepted), true), Ok(()), "{method} {accepted}");
            }
        }
    }

    #[test]
    fn a_body_of_another_type_is_refused_with_unsupported_media_type() {
        for refused in [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/json-seq",
            "application/problem+json",
            "json",
            "",
        ] {
            let e = check_media_type(&Method::POST, &with_type(refused), true).unwrap_err();
            assert_eq!(e.code, ErrorCode::UnsupportedMediaType, "{refused}");
            assert!(e.message.contains(&format!("'{refused}'")), "{}", e.message);
            // A declared type is checked even without a body: it says what the client meant.
            assert!(check_media_type(&Method::PUT, &with_type(refused), false).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_body_without_content_type_is_refused_but_no_body_needs_none() {
        let none = HeaderMap::new();
        let e = check_media_type(&Method::POST, &none, true).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedMediaType);
        assert!(e.message.contains("no Content-Type"), "{}", e.message);
        assert_eq!(check_media_type(&Method::POST, &none, false), Ok(()));
    }

    #[test]
    fn reads_are_not_checked() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::DELETE] {
            assert_eq!(check_media_type(&method, &with_type("text/plain"), true), Ok(()), "{method}");
        }
    }

    #[test]
    fn a_long_refused_type_is_shortened_in_the_message() {
        let long = format!("text/{}", "x".repeat(500));
        let e = check_media_type(&Method::POST, &with_type(&long), true).unwrap_err();
        assert!(e.message.len() < 300, "{}", e.message);
    }
}
