//! Every request's body is read whole before anything answers it.
//!
//! HTTP/1.1 keeps a connection for the next request only if the server has read this one's
//! body to its end: otherwise the next request's first bytes are somewhere in the unread rest.
//! hyper then closes the connection after the answer, but without saying `Connection: close`,
//! so a client that reuses it gets EPIPE on its next request. That happened whenever an answer
//! came before a handler read the body: a 404, a 405, a 401 from the guard, a 400 on a bad
//! query. And a body over the limit was refused from its `Content-Length` while the client was
//! still sending it, so the client saw EPIPE instead of the 413.
//!
//! This layer, outermost, fixes both: it reads the body (up to [`MAX_BODY_BYTES`]) and hands the
//! rest of the stack a complete one, so any answer leaves the connection reusable. A body over
//! the limit is read and thrown away (up to [`DRAIN_BYTES`], within [`DRAIN_TIME`]) so the
//! client gets to read its 413, which says `Connection: close`. A client that asked
//! `Expect: 100-continue` is answered at once, before it sends anything.

use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::{ApiError, MAX_BODY_BYTES};

/// The most of an oversized body read (and dropped) so that its sender sees the 413.
const DRAIN_BYTES: usize = 4 * MAX_BODY_BYTES;

/// The longest an oversized body is read for.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The middleware: see the module's documentation.
pub(crate) async fn read_whole(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if HttpBody::size_hint(&body).exact() == Some(0) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        let continues = parts
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !continues {
            drain(body).await;
        }
        return too_large();
    }
    match collect(body).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(Unread::TooLarge(rest)) => {
            drain(rest).await;
            too_large()
        }
        Err(Unread::Broken) => closing(ApiError::bad(
            "body",
            "the request body could not be read to its end",
        )),
    }
}

/// Why [`collect`] stopped.
enum Unread {
    /// Past the limit; the rest of the body, still unread.
    TooLarge(Body),
    /// The client stopped sending, or sent something that is not HTTP.
    Broken,
}

async fn collect(mut body: Body) -> Result<Bytes, Unread> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Unread::Broken)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_BODY_BYTES {
                return Err(Unread::TooLarge(body));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// Reads and drops what is left of `body`, within the drain bounds.
async fn drain(mut body: Body) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                read += data.len();
                if read > DRAIN_BYTES {
                    break;
                }
            }
        }
    })
    .await;
}

fn too_large() -> Response {
    closing(ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        Some("body"),
        format!("larger than {MAX_BODY_BYTES} bytes"),
    ))
}

/// An error answer after which the connection is closed, and which says so.
fn closing(err: ApiError) -> Response {
    let mut response = err.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
