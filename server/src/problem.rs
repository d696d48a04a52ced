//! Errors as `application/problem+json` (RFC 9457): a stable `type` URI a
//! client can branch on, a human `title` and `detail`, and the status.

use axum::Json;
use axum::body::HttpBody as _;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The problem document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable identifier, `https://stampede.dev/problems/<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong with this request, and how to fix it.
    pub detail: String,
    /// When to retry, seconds: sent as the `Retry-After` header, not in the body.
    #[serde(skip)]
    pub retry_after_s: Option<u64>,
}

/// The `type` URI prefix.
pub const PROBLEM_BASE: &str = "https://stampede.dev/problems/";

impl Problem {
    /// A problem with type slug `slug`.
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("{PROBLEM_BASE}{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    /// Tells the client to retry after `ms` (rounded up to whole seconds,
    /// at least 1: `Retry-After` counts seconds).
    pub fn retry_after_ms(mut self, ms: u64) -> Problem {
        self.retry_after_s = Some(ms.div_ceil(1_000).max(1));
        self
    }

    /// The slug after [`PROBLEM_BASE`].
    pub fn slug(&self) -> &str {
        self.kind.strip_prefix(PROBLEM_BASE).unwrap_or(&self.kind)
    }

    /// 400 with slug `slug`.
    pub fn bad_request(slug: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, slug, "Bad request", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 405: the path exists but not with this method (a router's
    /// `method_not_allowed_fallback`; axum adds the `Allow` header).
    pub fn method_not_allowed() -> Problem {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this endpoint does not take that method",
        )
    }

    /// 503: the store or another dependency is unavailable; retry later.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after_s;
        let mut response = (status, Json(self)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110 §11.6.1: a 401 names the scheme that would be accepted.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Most bytes of a declared oversized body read (and dropped) before the
/// 413 goes out; a longer one is refused without reading any of it.
pub const OVERSIZED_DRAIN_BYTES_MAX: u64 = 8 << 20;

/// Longest time spent reading a declared oversized body before the 413.
pub const OVERSIZED_DRAIN_MS: u64 = 2_000;

/// A router's body limit and how it names a body over it (each API keeps
/// its own problem type for a 413).
#[derive(Clone, Copy, Debug)]
pub struct BodyCap {
    /// Most bytes a request body may have.
    pub limit: usize,
    /// The 413 problem's slug.
    pub slug: &'static str,
    /// The 413 problem's title.
    pub title: &'static str,
}

/// Middleware: a request whose declared `Content-Length` is over the cap is
/// answered 413 problem+json without reaching its handler — but only after
/// its body has been read and dropped (up to [`OVERSIZED_DRAIN_BYTES_MAX`]
/// bytes and [`OVERSIZED_DRAIN_MS`]). A client still sending the body when
/// the answer went out would otherwise see its connection reset by the
/// close that follows, and lose the answer with it. A client that asked
/// `Expect: 100-continue` has sent no body yet and is answered at once.
/// A body that declares no length (chunked) is read here up to the cap and
/// handed on whole; past the cap it is drained within the same bounds and
/// refused the same way. Other requests pass.
pub async fn refuse_oversized(
    State(cap): State<BodyCap>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let length = match declared {
        Some(length) if length > cap.limit as u64 => length,
        Some(_) => return next.run(request).await,
        // No body at all (a GET): nothing to read. (Reading it would find none either.)
        None if request.body().is_end_stream() => return next.run(request).await,
        None => {
            let (parts, body) = request.into_parts();
            return match read_within(body, cap.limit, OVERSIZED_DRAIN_BYTES_MAX).await {
                Ok(bytes) => {
                    next.run(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
                Err(Unread::Oversized) => Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    cap.slug,
                    cap.title,
                    format!("the body is over {} bytes, the most accepted", cap.limit),
                )
                .into_response(),
                Err(Unread::Broken(e)) => Problem::bad_request(
                    "unreadable-body",
                    format!("the body could not be read: {e}"),
                )
                .into_response(),
            };
        }
    };
    let waits_to_send = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waits_to_send && length <= OVERSIZED_DRAIN_BYTES_MAX {
        // hyper hands over no more than the declared length, so that bounds the bytes read;
        // the timeout bounds the wait for a client that stops sending.
        let mut body = request.into_body();
        let drain = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(Duration::from_millis(OVERSIZED_DRAIN_MS), drain).await;
    }
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        cap.slug,
        cap.title,
        format!(
            "the body is {length} bytes; at most {} are accepted",
            cap.limit
        ),
    )
    .into_response()
}

/// Why a body of no declared length was not handed on.
enum Unread {
    /// Over the cap (and drained within the bounds).
    Oversized,
    /// The client's stream failed.
    Broken(axum::Error),
}

/// Reads a body of no declared length, up to `limit` bytes. Past the limit it
/// goes on reading and dropping, until more than `drain_max` bytes were read
/// in all ([`OVERSIZED_DRAIN_BYTES_MAX`]) or [`OVERSIZED_DRAIN_MS`] passed, so
/// the 413 reaches a client still sending.
async fn read_within(mut body: Body, limit: usize, drain_max: u64) -> Result<Bytes, Unread> {
    let mut kept = BytesMut::new();
    loop {
        match body.frame().await {
            None => return Ok(kept.freeze()),
            Some(Err(e)) => return Err(Unread::Broken(e)),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if kept.len() + data.len() > limit {
                    let mut read = (kept.len() + data.len()) as u64;
                    let drain = async {
                        while read <= drain_max {
                            match body.frame().await {
                                Some(Ok(frame)) => {
                                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                                }
                                _ => break,
                            }
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_millis(OVERSIZED_DRAIN_MS), drain)
                        .await;
                    return Err(Unread::Oversized);
                }
                kept.extend_from_slice(&data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::post;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMIT: usize = 16;

    /// A server whose one route answers 200 behind the cap.
    async fn serve() -> SocketAddr {
        let cap = BodyCap {
            limit: LIMIT,
            slug: "body-too-large",
            title: "Body too large",
        };
        let app = Router::new()
            .route(
                "/",
                post(|body: Bytes| async move { format!("ok {}", body.len()) }),
            )
            .layer(axum::middleware::from_fn_with_state(cap, refuse_oversized));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// Sends `head` (and `body`), keeps the connection open, and returns the
    /// answer's first bytes and how long (on the paused clock) it took.
    async fn ask(addr: SocketAddr, headers: &str, body: &[u8]) -> (String, Duration) {
        let start = tokio::time::Instant::now();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("POST / HTTP/1.1\r\nhost: x\r\n{headers}\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut answer = vec![0; 4096];
        let n = stream.read(&mut answer).await.unwrap();
        (
            String::from_utf8_lossy(&answer[..n]).into_owned(),
            start.elapsed(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_declared_oversized_body_is_read_within_bounds_then_refused_413() {
        // Proves: a body of exactly the limit reaches the handler; one byte more is refused
        // 413 problem+json once the body is read (at once when it was all sent; after the drain
        // time when it never comes); a body declared over the drain bound, or one whose client
        // waits for `100 Continue`, is refused at once without reading.
        let addr = serve().await;
        let drain = Duration::from_millis(OVERSIZED_DRAIN_MS);
        let length = |n: u64| format!("content-length: {n}\r\n");
        let (answer, _) = ask(addr, &length(16), &[b'x'; LIMIT]).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let (answer, took) = ask(addr, &length(17), &[b'x'; LIMIT + 1]).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(answer.contains("problems/body-too-large"), "{answer}");
        assert!(
            answer.contains("the body is 17 bytes; at most 16"),
            "{answer}"
        );
        assert!(took < drain, "all sent: answered at once ({took:?})");
        let (answer, took) = ask(addr, &length(17), b"").await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(took >= drain, "never sent: waited for it ({took:?})");
        let (answer, took) = ask(addr, &length(OVERSIZED_DRAIN_BYTES_MAX), b"").await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(took >= drain, "at the drain bound: waited ({took:?})");
        let (answer, took) = ask(addr, &length(OVERSIZED_DRAIN_BYTES_MAX + 1), b"").await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(took < drain, "over the drain bound: not read ({took:?})");
        let expecting = format!("{}expect: 100-continue\r\n", length(17));
        let (answer, took) = ask(addr, &expecting, b"").await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(
            took < drain,
            "waiting for 100 Continue: not read ({took:?})"
        );
    }

    /// A body of `frames`, then either its end or (`ends` false) nothing ever again.
    fn frames(frames: &[usize], ends: bool) -> Body {
        let data: Vec<Result<Bytes, std::io::Error>> = frames
            .iter()
            .map(|&n| Ok(Bytes::from(vec![b'x'; n])))
            .collect();
        let stream = futures_util::stream::iter(data);
        if ends {
            Body::from_stream(stream)
        } else {
            Body::from_stream(futures_util::StreamExt::chain(
                stream,
                futures_util::stream::pending(),
            ))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_limit_a_body_is_drained_until_the_drain_bound_or_time() {
        // Proves: within the limit the frames are joined whole; past it the rest is read until
        // more than the drain bound was read in all, counting the frame that crossed the limit
        // (17 + 8 = 25 > 24: answered at once; 17 + 7 = 24: still waiting for more, so until the
        // drain time), and every later frame counts (17 + 4 + 4 = 25: at once).
        let drain = Duration::from_millis(OVERSIZED_DRAIN_MS);
        let joined = read_within(frames(&[10, 6], true), LIMIT, 24).await;
        assert_eq!(joined.ok().map(|b| b.len()), Some(LIMIT));
        for (sent, waits) in [
            (&[17, 8][..], false),
            (&[17, 7][..], true),
            (&[17, 4, 4][..], false),
            (&[17, 4, 3][..], true),
        ] {
            let start = tokio::time::Instant::now();
            let refused = read_within(frames(sent, false), LIMIT, 24).await;
            assert!(matches!(refused, Err(Unread::Oversized)), "{sent:?}");
            assert_eq!(
                start.elapsed() >= drain,
                waits,
                "{sent:?}: {:?}",
                start.elapsed()
            );
        }
    }

    /// `body` as one HTTP/1.1 chunk, then (when `end`) the last chunk.
    fn chunked(body: &[u8], end: bool) -> Vec<u8> {
        let mut wire = format!("{:x}\r\n", body.len()).into_bytes();
        wire.extend_from_slice(body);
        wire.extend_from_slice(b"\r\n");
        if end {
            wire.extend_from_slice(b"0\r\n\r\n");
        }
        wire
    }

    #[tokio::test(start_paused = true)]
    async fn a_chunked_body_is_handed_on_within_the_limit_and_refused_413_past_it() {
        // Proves: a body that declares no length reaches the handler whole when it is exactly
        // the limit (and when it is empty); one byte more is refused 413 problem+json once the
        // client has sent it all (at once), or after the drain time when the client stops
        // sending — never before the rest was given its chance to arrive.
        let addr = serve().await;
        let drain = Duration::from_millis(OVERSIZED_DRAIN_MS);
        let te = "transfer-encoding: chunked\r\n";
        let mut two = chunked(&[b'x'; LIMIT - 1], false);
        two.extend(chunked(b"y", true));
        let (answer, _) = ask(addr, te, &two).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&format!("ok {LIMIT}")), "{answer}");
        let (answer, _) = ask(addr, te, b"0\r\n\r\n").await;
        assert!(answer.ends_with("ok 0"), "{answer}");
        let (answer, took) = ask(addr, te, &chunked(&[b'x'; LIMIT + 1], true)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(answer.contains("problems/body-too-large"), "{answer}");
        assert!(answer.contains("over 16 bytes"), "{answer}");
        assert!(took < drain, "all sent: answered at once ({took:?})");
        let (answer, took) = ask(addr, te, &chunked(&[b'x'; LIMIT + 1], false)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(
            took >= drain,
            "still sending: waited for the rest ({took:?})"
        );
    }
}
