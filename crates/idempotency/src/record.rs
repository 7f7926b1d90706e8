//! What a store keeps under a key, and its byte encoding (for stores outside the process).

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::fingerprint::Fingerprint;

/// Identifies one execution's claim on a key, so that only its owner can complete or
/// release it: a first execution whose lease ran out cannot overwrite the claim of the one
/// that took the key over.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(pub(crate) u128);

impl Token {
    /// A new random token: 128 bits, so two executions never share one.
    pub fn random() -> Self {
        let mut rng = tower_bulwark_core::SeededRng::from_entropy();
        Token(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({:032x})", self.0)
    }
}

/// What is recorded under a key: the request's fingerprint and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The fingerprint of the request that claimed the key (method, path, body).
    pub fingerprint: Fingerprint,
    /// How far that request got.
    pub state: RecordState,
}

/// How far the request that claimed a key got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// It is running, under the claim of `token` (until its lease ends).
    Running(Token),
    /// It ran, and this is its answer.
    Done(Box<StoredResponse>),
    /// It ran and answered with this status, but the answer was not kept (its body was
    /// over the size limit, or the client left before reading it all): a repeat is refused
    /// rather than run twice.
    NotKept(StatusCode),
}

/// A response as kept for replay: status, headers (without the hop-by-hop ones), body and
/// trailers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// The trailers, if the body had any (a gRPC status).
    pub trailers: Option<HeaderMap>,
}

/// The encoding's version; a record of another version is not read.
const VERSION: u8 = 1;
const RUNNING: u8 = b'R';
const DONE: u8 = b'D';
const NOT_KEPT: u8 = b'N';

/// The length of [`running_tag`]: version, kind and token.
#[cfg(any(feature = "redis", test))]
pub(crate) const TAG_LEN: usize = 18;

/// The first bytes of the encoding of a record that `token` is running: a store compares a
/// stored value's prefix with it to know the claim is still the caller's.
#[cfg(any(feature = "redis", test))]
pub(crate) fn running_tag(token: Token) -> [u8; TAG_LEN] {
    let mut tag = [0; TAG_LEN];
    tag[0] = VERSION;
    tag[1] = RUNNING;
    tag[2..].copy_from_slice(&token.0.to_be_bytes());
    tag
}

/// A stored record could not be read: written by another version, or damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreadable idempotency record: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

impl Record {
    /// The bytes a store outside the process keeps: a version, the kind, the token (zero
    /// once done), the fingerprint, then the response.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(64 + self.answer_len());
        out.put_u8(VERSION);
        match &self.state {
            RecordState::Running(token) => {
                out.put_u8(RUNNING);
                out.put_u128(token.0);
                out.put_slice(self.fingerprint.as_bytes());
            }
            RecordState::Done(response) => {
                out.put_u8(DONE);
                out.put_u128(0);
                out.put_slice(self.fingerprint.as_bytes());
                out.put_u16(response.status.as_u16());
                put_headers(&mut out, &response.headers);
                match &response.trailers {
                    Some(trailers) => {
                        out.put_u8(1);
                        put_headers(&mut out, trailers);
                    }
                    None => out.put_u8(0),
                }
                out.put_slice(&response.body);
            }
            RecordState::NotKept(status) => {
                out.put_u8(NOT_KEPT);
                out.put_u128(0);
                out.put_slice(self.fingerprint.as_bytes());
                out.put_u16(status.as_u16());
            }
        }
        out.to_vec()
    }

    /// Reads bytes written by [`encode`](Record::encode); never panics on damaged input.
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        let mut input = bytes;
        let version = take_u8(&mut input)?;
        if version != VERSION {
            return Err(DecodeError("unknown version"));
        }
        let kind = take_u8(&mut input)?;
        let token = Token(take_u128(&mut input)?);
        let fingerprint = Fingerprint::from_bytes(take_array(&mut input)?);
        let state = match kind {
            RUNNING => RecordState::Running(token),
            DONE => {
                let status = take_status(&mut input)?;
                let headers = take_headers(&mut input)?;
                let trailers = match take_u8(&mut input)? {
                    0 => None,
                    1 => Some(take_headers(&mut input)?),
                    _ => return Err(DecodeError("bad trailers flag")),
                };
                let body = Bytes::copy_from_slice(input);
                input = &[];
                RecordState::Done(Box::new(StoredResponse {
                    status,
                    headers,
                    body,
                    trailers,
                }))
            }
            NOT_KEPT => RecordState::NotKept(take_status(&mut input)?),
            _ => return Err(DecodeError("unknown kind")),
        };
        if !input.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Record { fingerprint, state })
    }

    /// The bytes of the answer it holds: body, headers and trailers.
    pub(crate) fn answer_len(&self) -> usize {
        let headers = |map: &HeaderMap| -> usize {
            map.iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 8)
                .sum()
        };
        match &self.state {
            RecordState::Done(response) => {
                response.body.len()
                    + headers(&response.headers)
                    + response.trailers.as_ref().map_or(0, headers)
            }
            _ => 0,
        }
    }
}

fn put_headers(out: &mut BytesMut, headers: &HeaderMap) {
    // `HeaderMap::len` counts values, which is what is written.
    out.put_u32(headers.len() as u32);
    for (name, value) in headers {
        out.put_u16(name.as_str().len() as u16);
        out.put_slice(name.as_str().as_bytes());
        out.put_u32(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
}

fn take_u8(input: &mut &[u8]) -> Result<u8, DecodeError> {
    if input.is_empty() {
        return Err(DecodeError("truncated"));
    }
    Ok(input.get_u8())
}

fn take_u16(input: &mut &[u8]) -> Result<u16, DecodeError> {
    if input.len() < 2 {
        return Err(DecodeError("truncated"));
    }
    Ok(input.get_u16())
}

fn take_u32(input: &mut &[u8]) -> Result<u32, DecodeError> {
    if input.len() < 4 {
        return Err(DecodeError("truncated"));
    }
    Ok(input.get_u32())
}

fn take_u128(input: &mut &[u8]) -> Result<u128, DecodeError> {
    if input.len() < 16 {
        return Err(DecodeError("truncated"));
    }
    Ok(input.get_u128())
}

fn take_array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N], DecodeError> {
    let bytes = take_slice(input, N)?;
    let mut array = [0; N];
    array.copy_from_slice(bytes);
    Ok(array)
}

fn take_slice<'a>(input: &mut &'a [u8], len: usize) -> Result<&'a [u8], DecodeError> {
    if input.len() < len {
        return Err(DecodeError("truncated"));
    }
    let (head, tail) = input.split_at(len);
    *input = tail;
    Ok(head)
}

fn take_status(input: &mut &[u8]) -> Result<StatusCode, DecodeError> {
    StatusCode::from_u16(take_u16(input)?).map_err(|_| DecodeError("bad status"))
}

fn take_headers(input: &mut &[u8]) -> Result<HeaderMap, DecodeError> {
    let count = take_u32(input)? as usize;
    // Each header takes at least six bytes: a count larger than that is damage, and must
    // not reserve memory.
    if count > input.len() / 6 {
        return Err(DecodeError("bad header count"));
    }
    // A map holds at most 32,768 entries: reserve little, and let `try_append` refuse.
    let mut headers = HeaderMap::with_capacity(count.min(64));
    for _ in 0..count {
        let name_len = usize::from(take_u16(input)?);
        let name = HeaderName::from_bytes(take_slice(input, name_len)?)
            .map_err(|_| DecodeError("bad header name"))?;
        let value_len = take_u32(input)? as usize;
        let value = HeaderValue::from_bytes(take_slice(input, value_len)?)
            .map_err(|_| DecodeError("bad header value"))?;
        headers
            .try_append(name, value)
            .map_err(|_| DecodeError("too many headers"))?;
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done() -> Record {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        Record {
            fingerprint: Fingerprint::from_bytes([7; 32]),
            state: RecordState::Done(Box::new(StoredResponse {
                status: StatusCode::CREATED,
                headers,
                body: Bytes::from_static(b"{\"charged\":true}"),
                trailers: Some(trailers),
            })),
        }
    }

    #[test]
    fn every_state_survives_encoding() {
        let token = Token(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let records = [
            done(),
            Record {
                fingerprint: Fingerprint::from_bytes([1; 32]),
                state: RecordState::Running(token),
            },
            Record {
                fingerprint: Fingerprint::from_bytes([2; 32]),
                state: RecordState::NotKept(StatusCode::OK),
            },
        ];
        for record in records {
            assert_eq!(Record::decode(&record.encode()), Ok(record));
        }
    }

    #[test]
    fn a_running_record_starts_with_its_tag() {
        let token = Token(42);
        let record = Record {
            fingerprint: Fingerprint::from_bytes([3; 32]),
            state: RecordState::Running(token),
        };
        assert_eq!(record.encode()[..TAG_LEN], running_tag(token));
        assert_ne!(record.encode()[..TAG_LEN], running_tag(Token(43)));
    }

    #[test]
    fn damaged_bytes_are_an_error_never_a_panic() {
        let bytes = done().encode();
        for len in 0..bytes.len() - b"{\"charged\":true}".len() {
            assert!(
                Record::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert_eq!(
            Record::decode(&wrong_version),
            Err(DecodeError("unknown version"))
        );
        // A huge header count must not allocate for it.
        let mut huge = bytes[..52].to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Record::decode(&huge), Err(DecodeError("bad header count")));
        // Every byte flipped: an error or a record, never a panic.
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0xff;
            let _ = Record::decode(&flipped);
        }
    }
}
