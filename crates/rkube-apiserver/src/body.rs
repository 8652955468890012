//! Request bodies: read only for requests that are authenticated and authorized, within
//! [`BODY_BYTES_MAX`](crate::BODY_BYTES_MAX), a deadline, and a budget of memory shared by
//! every request, so no number of connections can make the server hold more than
//! [`BODY_MEMORY_MAX`] bytes of bodies. A body takes its whole share (the declared length,
//! or the limit when none is declared) before the first byte is read, so bodies never wait
//! on each other half-read; `system:masters` is outside the budget, as it is outside the
//! in-flight limits, so the admin is never refused.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rkube_api::{ApiError, ApiResult};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most body bytes held by all requests together.
pub const BODY_MEMORY_MAX: usize = 256 << 20;
/// How long a client may take to send a body (kube-apiserver's request timeout).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// What is read and thrown away of the body of a refused request, so a client that sends
/// its whole body before reading the answer still sees the answer (Go's net/http does
/// the same, up to 256 KiB). An authorized request whose body is too large is drained
/// further, so its client sees the 413 rather than a reset stream.
pub const DRAIN_BYTES: usize = 256 << 10;
pub const DRAIN_AUTHORIZED_BYTES: usize = 64 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a body waits for room in the budget before the request is refused (429).
const BUDGET_WAIT: Duration = Duration::from_secs(10);

/// The memory budget all bodies share.
pub fn budget() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(BODY_MEMORY_MAX))
}

/// A body read into memory, with its share of the budget (given back when dropped).
pub struct Read {
    pub bytes: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

/// Reads a whole body. Refused: a declared or actual length over the limit (413, as
/// kube-apiserver), a client too slow to send it (408), no memory left in the budget
/// by the deadline (429).
pub async fn read(budget: &Arc<Semaphore>, exempt: bool, headers: &HeaderMap, body: &mut Incoming) -> ApiResult<Read> {
    let limit = crate::BODY_BYTES_MAX;
    use http_body::Body as _;
    let declared = if body.is_end_stream() {
        Some(0)
    } else {
        headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .or(body.size_hint().exact())
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let held = if exempt { None } else { Some(reserve(budget, declared.map_or(limit, |n| n as usize)).await?) };
    match tokio::time::timeout(BODY_READ_TIMEOUT, read_within(declared, body, limit)).await {
        Ok(Ok(bytes)) => Ok(Read { bytes, _held: held }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ApiError::new(
            408,
            "Timeout",
            format!("the request body was not received within {}s", BODY_READ_TIMEOUT.as_secs()),
        )),
    }
}

async fn read_within(declared: Option<u64>, body: &mut Incoming, limit: usize) -> ApiResult<Bytes> {
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("error reading request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

async fn reserve(budget: &Arc<Semaphore>, n: usize) -> ApiResult<OwnedSemaphorePermit> {
    let n = u32::try_from(n.max(1)).map_err(|_| ApiError::too_large(crate::BODY_BYTES_MAX))?;
    let busy = || ApiError::too_many_requests("Too many requests, please try again later.");
    match tokio::time::timeout(BUDGET_WAIT, budget.clone().acquire_many_owned(n)).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(busy()),
    }
}

/// Reads and drops what is left of a refused request's body, up to `max` bytes.
pub async fn drain(mut body: Incoming, max: usize) {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > max {
                    break;
                }
            }
        }
    })
    .await;
}
