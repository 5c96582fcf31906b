//! What a reply means for the outbox, and what to do after a failure. Pure: the
//! sync loop feeds in what happened and carries out the answer.

use crate::sync::client::RequestError;

/// The outcome of an ack for a batch that covered `..=sent_last`, when the device
/// had durably recorded `acked` before sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Record this as the new durable ack and send what follows it.
    Advance(u64),
    /// The server stored nothing past what was already acked (it stopped at a gap
    /// or replayed an old answer): send again after a pause.
    NoProgress,
    /// The server claims less than this device already had acknowledged: it lost
    /// data. The device keeps its own ack; acked events may be gone already.
    Behind { server_acked: u64 },
}

pub fn apply_ack(acked: u64, sent_last: u64, server_acked: u64) -> AckOutcome {
    if server_acked < acked {
        AckOutcome::Behind { server_acked }
    } else if server_acked == acked {
        AckOutcome::NoProgress
    } else {
        // An ack past what was sent can only come from a server that has a later
        // batch from an earlier attempt; take only what this batch covered, the
        // rest is resent and deduplicated.
        AckOutcome::Advance(server_acked.min(sent_last))
    }
}

/// What to do after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The server told us its time; the request will now be signed correctly.
    Now,
    /// A transient failure: wait a jittered, growing delay.
    Backoff,
    /// Retrying won't help until someone acts (revoked device, a rejected batch
    /// that is a bug): wait the maximum delay, keep every event, try again.
    Stuck,
}

/// `skew_retries` counts clock-skew answers in a row, so a server whose clock
/// jumps around can't make the device spin.
pub fn after_error(err: &RequestError, skew_retries: u32) -> Retry {
    match err {
        RequestError::Status {
            code,
            server_time_ms: Some(_),
            ..
        } if code == "clock_skew" => {
            if skew_retries < 2 {
                Retry::Now
            } else {
                Retry::Backoff
            }
        }
        e if e.is_transient() => Retry::Backoff,
        _ => Retry::Stuck,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: &str, server_time_ms: Option<i64>) -> RequestError {
        RequestError::Status {
            status,
            code: code.into(),
            message: String::new(),
            server_time_ms,
            acked_seq: None,
        }
    }

    #[test]
    fn an_ack_below_what_was_sent_resumes_from_the_ack() {
        assert_eq!(apply_ack(100, 200, 150), AckOutcome::Advance(150));
        assert_eq!(apply_ack(100, 200, 200), AckOutcome::Advance(200));
    }

    #[test]
    fn an_ack_past_the_batch_is_clamped_to_what_was_sent() {
        assert_eq!(apply_ack(100, 200, 900), AckOutcome::Advance(200));
    }

    #[test]
    fn a_stale_or_replayed_ack_never_moves_the_ack_back() {
        assert_eq!(apply_ack(100, 200, 100), AckOutcome::NoProgress);
        assert_eq!(
            apply_ack(100, 200, 40),
            AckOutcome::Behind { server_acked: 40 }
        );
    }

    #[test]
    fn clock_skew_is_retried_at_once_but_not_forever() {
        let skew = status(401, "clock_skew", Some(1));
        assert_eq!(after_error(&skew, 0), Retry::Now);
        assert_eq!(after_error(&skew, 1), Retry::Now);
        assert_eq!(after_error(&skew, 2), Retry::Backoff);
    }

    #[test]
    fn server_failures_back_off_and_client_errors_wait_for_an_operator() {
        assert_eq!(
            after_error(&status(500, "internal", None), 0),
            Retry::Backoff
        );
        assert_eq!(
            after_error(&status(503, "http_503", None), 0),
            Retry::Backoff
        );
        assert_eq!(
            after_error(&status(429, "rate_limited", None), 0),
            Retry::Backoff
        );
        assert_eq!(
            after_error(&RequestError::BadResponse("garbled".into()), 0),
            Retry::Backoff
        );
        assert_eq!(
            after_error(&status(401, "device_revoked", None), 0),
            Retry::Stuck
        );
        assert_eq!(
            after_error(&status(400, "batch_malformed", None), 0),
            Retry::Stuck
        );
        assert_eq!(
            after_error(&status(401, "clock_skew", None), 0),
            Retry::Stuck
        );
    }
}
