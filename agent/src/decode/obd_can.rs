//! OBD-II directly on CAN (ISO 15765-4): ISO-TP (ISO 15765-2) reassembly and the
//! request/response identifiers, on top of [`super::obd`].
//!
//! 11-bit: requests on 7DF (functional) or 7E0-7E7, replies on 7E8-7EF.
//! 29-bit: requests on 18DB33F1 or 18DAxxF1, replies on 18DAF1xx.

use std::collections::HashMap;

use fleet_hal::CanFrame;

use super::obd::{decode_response, ObdError, Response};

/// N_Cr: the longest wait for the next consecutive frame (ISO 15765-2).
pub const CONSECUTIVE_FRAME_TIMEOUT_US: u64 = 1_000_000;
/// The largest payload a classic ISO-TP first frame can announce.
pub const MAX_PAYLOAD: usize = 4095;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsoTpError {
    #[error("frame has no PCI byte")]
    Empty,
    #[error("PCI type 0x{0:X} is not an ISO-TP frame type")]
    UnknownPci(u8),
    #[error("single frame announces {len} bytes but carries {carried}")]
    BadSingleLength { len: usize, carried: usize },
    #[error("first frame announces {0} bytes, which needs no segmentation or is too long")]
    BadFirstLength(usize),
    #[error("consecutive frame without a first frame")]
    UnexpectedConsecutive,
    #[error("consecutive frame {got} where {expected} was expected; message dropped")]
    BadSequence { expected: u8, got: u8 },
    #[error("message abandoned: no consecutive frame within N_Cr, {received} of {len} bytes")]
    Timeout { received: usize, len: usize },
}

/// What one frame did to its sender's reassembly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsoTpOutcome {
    /// A whole message, PCI removed and padding cut.
    Complete(Vec<u8>),
    /// A first or consecutive frame of a message still incomplete.
    Pending,
    /// A flow control frame (the receiver's side of a segmented transfer).
    FlowControl,
}

#[derive(Debug)]
struct Partial {
    len: usize,
    data: Vec<u8>,
    next_seq: u8,
    last_us: u64,
}

/// Reassembles ISO-TP messages per sender id. Each error drops only the affected
/// message; the next first or single frame starts clean.
#[derive(Debug, Default)]
pub struct IsoTpReassembler {
    partial: HashMap<u32, Partial>,
    abandoned: u64,
}

impl IsoTpReassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one frame from `id`, received at `at_us` (microseconds on any clock;
    /// pass the same value for every frame when times are unknown).
    pub fn push(&mut self, id: u32, data: &[u8], at_us: u64) -> Result<IsoTpOutcome, IsoTpError> {
        let (&pci, rest) = data.split_first().ok_or(IsoTpError::Empty)?;
        let expired = match self.partial.get(&id) {
            Some(p) if at_us.saturating_sub(p.last_us) > CONSECUTIVE_FRAME_TIMEOUT_US => {
                self.abandoned += 1;
                self.partial.remove(&id)
            }
            _ => None,
        };
        match pci >> 4 {
            0x0 => {
                let len = usize::from(pci & 0x0F);
                if len == 0 || len > rest.len() {
                    return Err(IsoTpError::BadSingleLength {
                        len,
                        carried: rest.len(),
                    });
                }
                self.abandon(id);
                Ok(IsoTpOutcome::Complete(rest[..len].to_vec()))
            }
            0x1 => {
                let len = usize::from(pci & 0x0F) << 8 | usize::from(*rest.first().unwrap_or(&0));
                if len < 8 || rest.is_empty() {
                    return Err(IsoTpError::BadFirstLength(len));
                }
                self.abandon(id);
                let chunk = &rest[1..];
                self.partial.insert(
                    id,
                    Partial {
                        len,
                        data: chunk[..chunk.len().min(len)].to_vec(),
                        next_seq: 1,
                        last_us: at_us,
                    },
                );
                Ok(IsoTpOutcome::Pending)
            }
            0x2 => match expired {
                Some(p) => Err(IsoTpError::Timeout {
                    received: p.data.len(),
                    len: p.len,
                }),
                None => self.consecutive(id, pci & 0x0F, rest, at_us),
            },
            0x3 => Ok(IsoTpOutcome::FlowControl),
            other => Err(IsoTpError::UnknownPci(other)),
        }
    }

    /// A new message from `id` replaces one still incomplete, which is counted.
    fn abandon(&mut self, id: u32) {
        if self.partial.remove(&id).is_some() {
            self.abandoned += 1;
        }
    }

    /// Incomplete messages given up: timed out, or replaced by a new first or
    /// single frame from the same sender.
    pub fn abandoned(&self) -> u64 {
        self.abandoned
    }

    fn consecutive(
        &mut self,
        id: u32,
        seq: u8,
        rest: &[u8],
        at_us: u64,
    ) -> Result<IsoTpOutcome, IsoTpError> {
        let Some(p) = self.partial.get_mut(&id) else {
            return Err(IsoTpError::UnexpectedConsecutive);
        };
        if seq != p.next_seq {
            let expected = p.next_seq;
            self.partial.remove(&id);
            return Err(IsoTpError::BadSequence { expected, got: seq });
        }
        let want = p.len - p.data.len();
        p.data.extend_from_slice(&rest[..rest.len().min(want)]);
        p.next_seq = (p.next_seq + 1) & 0x0F;
        p.last_us = at_us;
        if p.data.len() >= p.len {
            let done = self.partial.remove(&id).map(|p| p.data).unwrap_or_default();
            return Ok(IsoTpOutcome::Complete(done));
        }
        Ok(IsoTpOutcome::Pending)
    }

    /// Messages still waiting for consecutive frames.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

/// Which side of an OBD-II exchange a CAN id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObdId {
    /// A tester request: functional (all ECUs) or physical to one ECU.
    Request { functional: bool },
    /// An ECU's reply.
    Reply,
}

/// Classifies an id per ISO 15765-4; `None` for traffic that is not OBD-II.
pub fn classify_id(id: u32, extended: bool) -> Option<ObdId> {
    if extended {
        match id & 0x1FFF_FF00 {
            0x18DB_3300 if id & 0xFF == 0xF1 => Some(ObdId::Request { functional: true }),
            0x18DA_F100 => Some(ObdId::Reply),
            _ if id & 0x1FFF_00FF == 0x18DA_00F1 => Some(ObdId::Request { functional: false }),
            _ => None,
        }
    } else {
        match id {
            0x7DF => Some(ObdId::Request { functional: true }),
            0x7E0..=0x7E7 => Some(ObdId::Request { functional: false }),
            0x7E8..=0x7EF => Some(ObdId::Reply),
            _ => None,
        }
    }
}

/// One decoded OBD-II item from the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum ObdCanItem {
    /// A tester asked for `service` (and `pids`, for modes 01, 02 and 09).
    Request {
        at_us: u64,
        target: u32,
        service: u8,
        pids: Vec<u8>,
    },
    Response {
        at_us: u64,
        ecu: u32,
        response: Response,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObdCanError {
    #[error("ISO-TP from {id:03X}: {source}")]
    IsoTp { id: u32, source: IsoTpError },
    #[error("OBD payload from {id:03X} ({payload}): {source}")]
    Decode {
        id: u32,
        payload: String,
        source: ObdError,
    },
}

/// Counts of what the decoder saw; every dropped message is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ObdCanStats {
    pub frames: u64,
    pub requests: u64,
    pub responses: u64,
    pub flow_control: u64,
    pub isotp_errors: u64,
    /// Segmented replies given up (timed out or replaced by a new message).
    pub abandoned: u64,
    pub decode_errors: u64,
    pub other_traffic: u64,
}

/// Decodes OBD-II requests and replies from a stream of CAN frames.
#[derive(Debug, Default)]
pub struct ObdCanDecoder {
    isotp: IsoTpReassembler,
    stats: ObdCanStats,
}

impl ObdCanDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> ObdCanStats {
        ObdCanStats {
            abandoned: self.isotp.abandoned(),
            ..self.stats
        }
    }

    /// Feeds one frame. `Ok(None)` for frames that complete nothing (other traffic,
    /// flow control, the middle of a segmented reply); errors are per message.
    pub fn push(&mut self, frame: &CanFrame) -> Result<Option<ObdCanItem>, ObdCanError> {
        self.stats.frames += 1;
        let Some(kind) = classify_id(frame.id, frame.extended) else {
            self.stats.other_traffic += 1;
            return Ok(None);
        };
        let at_us = frame.timestamp_us;
        let outcome = self.isotp.push(frame.id, frame.payload(), at_us);
        let outcome = match outcome {
            Ok(o) => o,
            Err(source) => {
                self.stats.isotp_errors += 1;
                return Err(ObdCanError::IsoTp {
                    id: frame.id,
                    source,
                });
            }
        };
        let payload = match outcome {
            IsoTpOutcome::Complete(p) => p,
            IsoTpOutcome::Pending => return Ok(None),
            IsoTpOutcome::FlowControl => {
                self.stats.flow_control += 1;
                return Ok(None);
            }
        };
        match kind {
            ObdId::Request { .. } => {
                self.stats.requests += 1;
                let (&service, pids) = payload.split_first().unwrap_or((&0, &[]));
                Ok(Some(ObdCanItem::Request {
                    at_us,
                    target: frame.id,
                    service,
                    pids: pids.to_vec(),
                }))
            }
            ObdId::Reply => match decode_response(&payload) {
                Ok(response) => {
                    self.stats.responses += 1;
                    Ok(Some(ObdCanItem::Response {
                        at_us,
                        ecu: frame.id,
                        response,
                    }))
                }
                Err(source) => {
                    self.stats.decode_errors += 1;
                    Err(ObdCanError::Decode {
                        id: frame.id,
                        payload: hex::encode_upper(&payload),
                        source,
                    })
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::obd::{Dtc, Value};

    fn f(id: u32, data: &[u8], at_us: u64) -> CanFrame {
        CanFrame::new(id, false, data, at_us).expect("valid frame")
    }

    #[test]
    fn single_frame_cuts_padding() {
        let mut r = IsoTpReassembler::new();
        assert_eq!(
            r.push(0x7E8, &[0x03, 0x41, 0x0D, 0x32, 0xCC, 0xCC, 0xCC, 0xCC], 0),
            Ok(IsoTpOutcome::Complete(vec![0x41, 0x0D, 0x32]))
        );
    }

    #[test]
    fn segmented_vin_reassembles_across_flow_control() {
        let mut d = ObdCanDecoder::new();
        let frames = [
            f(0x7E8, &[0x10, 0x14, 0x49, 0x02, 0x01, 0x54, 0x4D, 0x42], 0),
            f(0x7E0, &[0x30, 0, 0, 0, 0, 0, 0, 0], 100),
            f(
                0x7E8,
                &[0x21, 0x4A, 0x50, 0x37, 0x4E, 0x58, 0x35, 0x4E],
                200,
            ),
        ];
        for fr in &frames {
            assert_eq!(d.push(fr), Ok(None));
        }
        let last = f(
            0x7E8,
            &[0x22, 0x59, 0x30, 0x38, 0x34, 0x39, 0x32, 0x33],
            300,
        );
        let Some(ObdCanItem::Response { response, .. }) = d.push(&last).unwrap() else {
            panic!("no response")
        };
        assert_eq!(response, Response::Vin("TMBJP7NX5NY084923".into()));
        assert_eq!(d.stats().flow_control, 1);
    }

    #[test]
    fn out_of_order_consecutive_frame_drops_the_message_and_recovers() {
        let mut r = IsoTpReassembler::new();
        r.push(0x7E8, &[0x10, 0x09, 0x43, 0x04, 0x01, 0x33, 0x02, 0x34], 0)
            .unwrap();
        assert_eq!(
            r.push(0x7E8, &[0x22, 1, 2, 3, 4, 5, 6, 7], 10),
            Err(IsoTpError::BadSequence {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(r.pending(), 0);
        assert_eq!(
            r.push(0x7E8, &[0x21, 1, 2, 3, 4, 5, 6, 7], 20),
            Err(IsoTpError::UnexpectedConsecutive)
        );
        assert!(matches!(
            r.push(0x7E8, &[0x02, 0x43, 0x00], 30),
            Ok(IsoTpOutcome::Complete(_))
        ));
    }

    #[test]
    fn consecutive_frame_after_n_cr_is_a_timeout() {
        let mut r = IsoTpReassembler::new();
        assert_eq!(r.abandoned(), 0);
        r.push(0x7E8, &[0x10, 0x09, 0x43, 0x04, 0x01, 0x33, 0x02, 0x34], 0)
            .unwrap();
        assert_eq!(
            r.push(0x7E8, &[0x21, 1, 2, 3, 4, 5, 6, 7], 1_500_000),
            Err(IsoTpError::Timeout {
                received: 6,
                len: 9
            })
        );
        assert_eq!(r.abandoned(), 1);
    }

    #[test]
    fn interleaved_ecus_reassemble_independently() {
        let mut r = IsoTpReassembler::new();
        r.push(0x7E8, &[0x10, 0x08, 0x43, 0x03, 0x01, 0x33, 0x02, 0x34], 0)
            .unwrap();
        r.push(0x7E9, &[0x10, 0x08, 0x43, 0x03, 0xC1, 0x96, 0x01, 0x01], 1)
            .unwrap();
        assert_eq!(
            r.push(0x7E9, &[0x21, 0x01, 0x02, 0, 0, 0, 0, 0], 2),
            Ok(IsoTpOutcome::Complete(vec![
                0x43, 0x03, 0xC1, 0x96, 0x01, 0x01, 0x01, 0x02
            ]))
        );
        let Ok(IsoTpOutcome::Complete(p)) = r.push(0x7E8, &[0x21, 0x04, 0x20, 0, 0, 0, 0, 0], 3)
        else {
            panic!()
        };
        let Response::Dtcs { codes, .. } = decode_response(&p).unwrap() else {
            panic!()
        };
        assert_eq!(codes, vec![Dtc(0x0133), Dtc(0x0234), Dtc(0x0420)]);
    }

    #[test]
    fn ids_classify_per_iso_15765_4() {
        assert_eq!(
            classify_id(0x7DF, false),
            Some(ObdId::Request { functional: true })
        );
        assert_eq!(
            classify_id(0x7E3, false),
            Some(ObdId::Request { functional: false })
        );
        assert_eq!(classify_id(0x7EF, false), Some(ObdId::Reply));
        assert_eq!(
            classify_id(0x18DB33F1, true),
            Some(ObdId::Request { functional: true })
        );
        assert_eq!(
            classify_id(0x18DA10F1, true),
            Some(ObdId::Request { functional: false })
        );
        assert_eq!(classify_id(0x18DAF110, true), Some(ObdId::Reply));
        assert_eq!(classify_id(0x0CF00400, true), None);
        assert_eq!(classify_id(0x123, false), None);
    }

    #[test]
    fn request_and_bad_reply_are_reported_and_counted() {
        let mut d = ObdCanDecoder::new();
        let req = d.push(&f(
            0x7DF,
            &[0x02, 0x01, 0x0C, 0x55, 0x55, 0x55, 0x55, 0x55],
            5,
        ));
        assert_eq!(
            req,
            Ok(Some(ObdCanItem::Request {
                at_us: 5,
                target: 0x7DF,
                service: 1,
                pids: vec![0x0C]
            }))
        );
        let bad = d.push(&f(0x7E8, &[0x02, 0x41, 0x0C, 0, 0, 0, 0, 0], 6));
        assert!(matches!(bad, Err(ObdCanError::Decode { .. })));
        let good = d.push(&f(0x7E8, &[0x03, 0x41, 0x0D, 0x21, 0, 0, 0, 0], 7));
        let Ok(Some(ObdCanItem::Response {
            response: Response::Current(r),
            ..
        })) = good
        else {
            panic!()
        };
        assert_eq!(
            r[0].value,
            Value::Quantity {
                value: 33.0,
                unit: "km/h"
            }
        );
        assert_eq!(d.stats().decode_errors, 1);
        assert_eq!(d.stats().responses, 1);
    }
}
