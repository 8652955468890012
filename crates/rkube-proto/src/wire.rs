//! The protobuf wire format: varints, keys, length-delimited fields. Every read is bounds
//! checked and fails with an error on truncated or malformed input.

use crate::ProtoError;

pub const VARINT: u8 = 0;
pub const I64: u8 = 1;
pub const LEN: u8 = 2;
pub const I32: u8 = 5;

pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

fn truncated() -> ProtoError {
    ProtoError::Wire("unexpected end of data (truncated message)".into())
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut out: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = *self.data.get(self.pos).ok_or_else(truncated)?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(ProtoError::Wire("varint overflows 64 bits".into()));
            }
            out |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(ProtoError::Wire("varint too long".into()))
    }

    /// (field number, wire type)
    pub fn key(&mut self) -> Result<(u32, u8), ProtoError> {
        let k = self.varint()?;
        let tag = k >> 3;
        if tag == 0 || tag > u32::MAX as u64 {
            return Err(ProtoError::Wire(format!("invalid field number {tag}")));
        }
        Ok((tag as u32, (k & 7) as u8))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], ProtoError> {
        let n = self.varint()? as usize;
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len()).ok_or_else(truncated)?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ProtoError> {
        let end = self.pos.checked_add(N).filter(|e| *e <= self.data.len()).ok_or_else(truncated)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Ok(out)
    }

    pub fn varint_of(&mut self, wt: u8) -> Result<u64, ProtoError> {
        if wt != VARINT {
            return Err(ProtoError::Wire(format!("expected a varint, got wire type {wt}")));
        }
        self.varint()
    }

    pub fn fixed64_of(&mut self, wt: u8) -> Result<u64, ProtoError> {
        if wt != I64 {
            return Err(ProtoError::Wire(format!("expected a 64-bit value, got wire type {wt}")));
        }
        Ok(u64::from_le_bytes(self.fixed::<8>()?))
    }

    pub fn fixed32_of(&mut self, wt: u8) -> Result<u32, ProtoError> {
        if wt != I32 {
            return Err(ProtoError::Wire(format!("expected a 32-bit value, got wire type {wt}")));
        }
        Ok(u32::from_le_bytes(self.fixed::<4>()?))
    }

    pub fn skip(&mut self, wt: u8) -> Result<(), ProtoError> {
        match wt {
            VARINT => {
                self.varint()?;
            }
            I64 => {
                self.fixed::<8>()?;
            }
            LEN => {
                self.bytes()?;
            }
            I32 => {
                self.fixed::<4>()?;
            }
            other => return Err(ProtoError::Wire(format!("unsupported wire type {other}"))),
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// Starts a length-delimited field written in place; returns where its length goes.
    pub fn open(&mut self, tag: u32) -> usize {
        crate::transcode::open(&mut self.buf, tag)
    }

    /// Ends a field started by [`Writer::open`].
    pub fn close(&mut self, at: usize) {
        crate::transcode::close(&mut self.buf, at)
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, tag: u32, wt: u8) {
        self.varint(((tag as u64) << 3) | wt as u64);
    }

    pub fn varint_field(&mut self, tag: u32, v: u64) {
        self.key(tag, VARINT);
        self.varint(v);
    }

    pub fn len_field(&mut self, tag: u32, data: &[u8]) {
        self.key(tag, LEN);
        self.varint(data.len() as u64);
        self.buf.extend_from_slice(data);
    }

    pub fn fixed64_field(&mut self, tag: u32, v: u64) {
        self.key(tag, I64);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn fixed32_field(&mut self, tag: u32, v: u32) {
        self.key(tag, I32);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
}
