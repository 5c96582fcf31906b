//! LEB128 unsigned varints and zigzag signed varints, the integer coding of the batch format.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum VarintError {
    #[error("input ended inside a value")]
    Truncated,
    #[error("varint longer than 10 bytes")]
    Overlong,
}

pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, zigzag(v));
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over a byte slice that never reads past its end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn u8(&mut self) -> Result<u8, VarintError> {
        let b = *self.buf.get(self.pos).ok_or(VarintError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], VarintError> {
        if self.remaining() < n {
            return Err(VarintError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u64(&mut self) -> Result<u64, VarintError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(VarintError::Overlong);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(VarintError::Overlong)
    }

    pub fn i64(&mut self) -> Result<i64, VarintError> {
        self.u64().map(unzigzag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn unsigned_round_trips(v: u64) {
            let mut out = Vec::new();
            put_u64(&mut out, v);
            prop_assert_eq!(Reader::new(&out).u64().unwrap(), v);
        }

        #[test]
        fn signed_round_trips(v: i64) {
            let mut out = Vec::new();
            put_i64(&mut out, v);
            prop_assert_eq!(Reader::new(&out).i64().unwrap(), v);
        }
    }

    #[test]
    fn eleven_continuation_bytes_are_refused() {
        let bytes = [0xffu8; 11];
        assert_eq!(Reader::new(&bytes).u64(), Err(VarintError::Overlong));
    }

    #[test]
    fn a_cut_varint_is_truncated_not_zero() {
        assert_eq!(Reader::new(&[0x80]).u64(), Err(VarintError::Truncated));
    }
}
