//! Device request signatures.
//!
//! Every device request carries
//! `Authorization: FleetDevice id=<uuid>,ts=<unix ms>,nonce=<32 hex>,sig=<base64>`
//! where `sig` is the device's Ed25519 signature over [`signing_message`]. The
//! server checks the key it registered at enrollment, that `ts` is within
//! [`MAX_SKEW_MS`] of its own clock, and that it has not seen the nonce before, so
//! a captured request can't be replayed. No secret is shared between devices.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;
use uuid::Uuid;

pub const SCHEME: &str = "FleetDevice";
/// How far a request's timestamp may be from the server's clock.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing or malformed device authorization header")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("bad public key")]
    BadKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuth {
    pub device_id: Uuid,
    pub ts_ms: i64,
    pub nonce: String,
    pub signature: Signature,
}

pub fn body_digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The exact bytes a device signs for one request.
pub fn signing_message(
    method: &str,
    path_and_query: &str,
    ts_ms: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    format!(
        "fleet-sync-v1\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path_and_query,
        ts_ms,
        nonce,
        body_digest(body)
    )
    .into_bytes()
}

/// What a new device signs at enrollment to prove it holds its key.
pub fn enroll_message(token: &str, public_key_b64: &str) -> Vec<u8> {
    format!("fleet-enroll-v1\n{token}\n{public_key_b64}").into_bytes()
}

pub fn new_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

pub fn sign_request(
    key: &SigningKey,
    device_id: Uuid,
    method: &str,
    path_and_query: &str,
    ts_ms: i64,
    body: &[u8],
) -> String {
    let nonce = new_nonce();
    let sig = key.sign(&signing_message(
        method,
        path_and_query,
        ts_ms,
        &nonce,
        body,
    ));
    format!(
        "{SCHEME} id={device_id},ts={ts_ms},nonce={nonce},sig={}",
        B64.encode(sig.to_bytes())
    )
}

pub fn parse_header(value: &str) -> Result<DeviceAuth, AuthError> {
    let rest = value
        .strip_prefix(SCHEME)
        .ok_or(AuthError::Malformed)?
        .trim_start();
    let (mut id, mut ts, mut nonce, mut sig) = (None, None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(AuthError::Malformed)?;
        match k {
            "id" => id = Uuid::parse_str(v).ok(),
            "ts" => ts = v.parse::<i64>().ok(),
            "nonce" if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                nonce = Some(v.to_owned())
            }
            "sig" => {
                let bytes = B64.decode(v).map_err(|_| AuthError::Malformed)?;
                let arr: [u8; 64] = bytes.try_into().map_err(|_| AuthError::Malformed)?;
                sig = Some(Signature::from_bytes(&arr));
            }
            _ => return Err(AuthError::Malformed),
        }
    }
    Ok(DeviceAuth {
        device_id: id.ok_or(AuthError::Malformed)?,
        ts_ms: ts.ok_or(AuthError::Malformed)?,
        nonce: nonce.ok_or(AuthError::Malformed)?,
        signature: sig.ok_or(AuthError::Malformed)?,
    })
}

pub fn decode_public_key(b64: &str) -> Result<VerifyingKey, AuthError> {
    let bytes = B64.decode(b64.trim()).map_err(|_| AuthError::BadKey)?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| AuthError::BadKey)?;
    VerifyingKey::from_bytes(&arr).map_err(|_| AuthError::BadKey)
}

pub fn encode_public_key(key: &VerifyingKey) -> String {
    B64.encode(key.to_bytes())
}

pub fn verify(key: &VerifyingKey, message: &[u8], sig: &Signature) -> Result<(), AuthError> {
    key.verify(message, sig)
        .map_err(|_| AuthError::BadSignature)
}

pub fn sign_b64(key: &SigningKey, message: &[u8]) -> String {
    B64.encode(key.sign(message).to_bytes())
}

pub fn decode_signature(b64: &str) -> Result<Signature, AuthError> {
    let bytes = B64.decode(b64.trim()).map_err(|_| AuthError::Malformed)?;
    let arr: [u8; 64] = bytes.try_into().map_err(|_| AuthError::Malformed)?;
    Ok(Signature::from_bytes(&arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_verifies_and_a_changed_body_does_not() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let id = Uuid::new_v4();
        let header = sign_request(&key, id, "POST", "/sync/v1/batches", 1_000, b"body");
        let auth = parse_header(&header).unwrap();
        assert_eq!(auth.device_id, id);
        let msg = signing_message("POST", "/sync/v1/batches", auth.ts_ms, &auth.nonce, b"body");
        verify(&key.verifying_key(), &msg, &auth.signature).unwrap();
        let tampered =
            signing_message("POST", "/sync/v1/batches", auth.ts_ms, &auth.nonce, b"bodY");
        assert_eq!(
            verify(&key.verifying_key(), &tampered, &auth.signature),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn headers_with_missing_or_extra_fields_are_malformed() {
        assert_eq!(parse_header("Bearer x"), Err(AuthError::Malformed));
        assert_eq!(
            parse_header("FleetDevice id=nope"),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            parse_header("FleetDevice id=1,ts=2,nonce=3,sig=4,evil=5"),
            Err(AuthError::Malformed)
        );
    }
}
