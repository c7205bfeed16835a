//! A bounds check of every Kafka request frame, before any decoder sees it.
//!
//! The Kafka listener decodes requests with the `kafka-protocol` crate, whose
//! decoders trust the lengths they read off the wire: an array count becomes
//! `Vec::with_capacity(count)` before a single element is read (a 20-byte
//! frame claiming 2^31 elements makes the process try to allocate hundreds of
//! gigabytes and abort), a string or bytes length becomes `vec![0; len]`, and
//! its request-header helper slices the frame without checking its length.
//! So [`check_request`] walks each frame first, against a schema of its own
//! (`schema.rs`, one table per request message and version, transcribed from
//! the crate's generated decoders), and only a frame that passes goes on to
//! the crate.
//!
//! What the walk checks:
//! - the request header: api key, api version, correlation id, the client id
//!   (a nullable i16-length string in every header version) and, for header
//!   v2 (the flexible versions of each API), its tagged fields; an api key or
//!   version outside the table is refused with its correlation id, so the
//!   caller can answer (ApiVersions with an unknown version included);
//! - then the whole body, field by field for that version: every string,
//!   bytes and array length (i16/i32, or compact: unsigned varint of n+1)
//!   must fit in the bytes that remain, only a nullable field may be null and
//!   no length may be otherwise negative; varints are at most 5 bytes and fit
//!   32 bits; every array element is walked (nested arrays too), after a
//!   first test that the count times the element's smallest wire size fits;
//!   every tagged-field section (the message's and every struct's, flexible
//!   versions only) is walked as a count and (tag, size, content) entries
//!   whose size must fit, and a tag the crate decodes by type must have
//!   exactly `size` bytes of well-formed content.
//!
//! So every length the crate reads from an accepted frame is at most the
//! bytes left after it, and what the crate allocates is bounded by a small
//! multiple of the frame size. Bytes after the body are allowed (the crate
//! ignores them too). The frame-size cap itself ([`MAX_FRAME`]) is the
//! listener's to enforce, before it reads a frame.
//!
//! Pure code, no I/O, and no input makes it panic: every read goes through a
//! bounds-checked cursor and all length arithmetic is checked.

mod schema;
#[cfg(test)]
mod tests;

use schema::{APIS, Api, Field, Struct, Tagged, Ty};

/// The default cap on a request frame (the bytes after the 4-byte size).
pub const MAX_FRAME: usize = 100 << 20;

/// What the guard read of a request header that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// 1, or 2 for the flexible versions of the API (with tagged fields): the
    /// version to decode the header with (`RequestHeader::decode`).
    pub header_version: i16,
    /// Bytes of the header, tagged fields included: the body starts there.
    pub header_len: usize,
}

/// Why a request frame was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    /// Fewer than the 8 bytes of api key, api version and correlation id.
    #[error("request frame of {len} bytes is shorter than a request header")]
    FrameTooShort { len: usize },
    #[error("unknown api key {api_key}")]
    UnknownApi { api_key: i16, correlation_id: i32 },
    #[error("{} (api key {api_key}) version {api_version} is not supported", api_name(*api_key).unwrap_or("?"))]
    UnsupportedVersion {
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
    },
    /// A length, count or varint at byte `at` of the frame (after the size
    /// prefix), in `field`, is out of bounds or invalid.
    #[error("malformed {} v{api_version} request: {what} (`{field}` at byte {at})", api_name(*api_key).unwrap_or("?"))]
    Malformed {
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
        at: usize,
        field: &'static str,
        what: &'static str,
    },
}

impl GuardError {
    /// The request's correlation id, when the frame was long enough to have one.
    pub fn correlation_id(&self) -> Option<i32> {
        match self {
            GuardError::FrameTooShort { .. } => None,
            GuardError::UnknownApi { correlation_id, .. }
            | GuardError::UnsupportedVersion { correlation_id, .. }
            | GuardError::Malformed { correlation_id, .. } => Some(*correlation_id),
        }
    }
}

/// Checks a request frame (the bytes after the 4-byte size prefix): its
/// header, and its whole body against the schema of its api key and version.
/// On success the crate's decoders may be run on it.
pub fn check_request(frame: &[u8]) -> Result<RequestHead, GuardError> {
    check_request_consumed(frame).map(|(head, _)| head)
}

/// [`check_request`], also returning how many body bytes the walk consumed
/// (the body is `frame[head.header_len..]`; the rest is trailing bytes).
pub(crate) fn check_request_consumed(frame: &[u8]) -> Result<(RequestHead, usize), GuardError> {
    let mut cur = Cursor::new(frame);
    let (Ok(api_key), Ok(api_version), Ok(correlation_id)) = (
        cur.i16("api_key"),
        cur.i16("api_version"),
        cur.i32("correlation_id"),
    ) else {
        return Err(GuardError::FrameTooShort { len: frame.len() });
    };
    let Some(api) = find(api_key) else {
        return Err(GuardError::UnknownApi {
            api_key,
            correlation_id,
        });
    };
    if !(api.min..=api.max).contains(&api_version) {
        return Err(GuardError::UnsupportedVersion {
            api_key,
            api_version,
            correlation_id,
        });
    }
    let malformed = |fail: Fail| GuardError::Malformed {
        api_key,
        api_version,
        correlation_id,
        at: fail.at,
        field: fail.field,
        what: fail.what,
    };
    let flexible = api_version >= api.flexible;
    let client_id = client_id(&mut cur).map_err(malformed)?;
    if flexible {
        walk_tagged(&mut cur, &[], api_version, "request header").map_err(malformed)?;
    }
    let header_len = cur.pos;
    walk_struct(&mut cur, &api.body, api_version, flexible).map_err(malformed)?;
    let head = RequestHead {
        api_key,
        api_version,
        correlation_id,
        client_id,
        header_version: if flexible { 2 } else { 1 },
        header_len,
    };
    Ok((head, cur.pos.saturating_sub(header_len)))
}

/// Whether the guard (and so the listener) knows this api key and version.
pub fn is_known(api_key: i16, api_version: i16) -> bool {
    find(api_key).is_some_and(|api| (api.min..=api.max).contains(&api_version))
}

/// The versions the guard knows of an api key, `(min, max)`.
pub fn supported_versions(api_key: i16) -> Option<(i16, i16)> {
    find(api_key).map(|api| (api.min, api.max))
}

/// Every api the guard knows: `(api_key, min_version, max_version)`, by api
/// key (what an ApiVersions response lists, at most).
pub fn supported_apis() -> impl Iterator<Item = (i16, i16, i16)> {
    APIS.iter().map(|api| (api.key, api.min, api.max))
}

/// The Kafka name of a known api key ("Produce", "Fetch", ...).
pub fn api_name(api_key: i16) -> Option<&'static str> {
    find(api_key).map(|api| api.name)
}

fn find(api_key: i16) -> Option<&'static Api> {
    APIS.iter().copied().find(|api| api.key == api_key)
}

/// Where and why the walk stopped; the caller adds the request's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fail {
    at: usize,
    field: &'static str,
    what: &'static str,
}

const TRUNCATED: &str = "frame ends inside the field";
const NOT_NULLABLE: &str = "null in a non-nullable field";

fn fail(at: usize, field: &'static str, what: &'static str) -> Fail {
    Fail { at, field, what }
}

/// A bounds-checked reader over `buf[pos..]`; positions are frame offsets.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes; `what` says why they are missing.
    fn take(
        &mut self,
        n: usize,
        field: &'static str,
        what: &'static str,
    ) -> Result<&'a [u8], Fail> {
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or_else(|| fail(self.pos, field, what))?;
        self.pos += n;
        Ok(bytes)
    }

    fn fixed<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Fail> {
        let at = self.pos;
        let bytes = self.take(N, field, TRUNCATED)?;
        bytes.try_into().map_err(|_| fail(at, field, TRUNCATED))
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, Fail> {
        self.fixed(field).map(i16::from_be_bytes)
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, Fail> {
        self.fixed(field).map(i32::from_be_bytes)
    }

    /// An unsigned varint of at most 5 bytes that fits 32 bits.
    fn uvarint(&mut self, field: &'static str) -> Result<u32, Fail> {
        let at = self.pos;
        let mut value = 0u32;
        for i in 0..5 {
            let [b] = self.fixed::<1>(field)?;
            if i == 4 && b & 0x80 != 0 {
                return Err(fail(at, field, "varint longer than 5 bytes"));
            }
            if i == 4 && b > 0x0f {
                return Err(fail(at, field, "varint overflows 32 bits"));
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        Ok(value)
    }

    /// Skips `n` bytes of content that the length at `at` announced.
    fn skip(&mut self, n: usize, at: usize, field: &'static str) -> Result<(), Fail> {
        if n > self.remaining() {
            return Err(fail(at, field, "length exceeds the bytes left"));
        }
        self.pos += n;
        Ok(())
    }

    /// A cursor over the next `n` bytes only (a tagged field's content).
    fn window(&self, n: usize, at: usize, field: &'static str) -> Result<Cursor<'a>, Fail> {
        let buf = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(..end))
            .ok_or_else(|| fail(at, field, "tagged field size exceeds the bytes left"))?;
        Ok(Cursor { buf, pos: self.pos })
    }

    /// A length or count: `None` is null. Compact (flexible) lengths are an
    /// unsigned varint of n+1, 0 for null; the others are `I16`/`I32` with
    /// -1 for null.
    fn length(
        &mut self,
        wide: bool,
        compact: bool,
        field: &'static str,
    ) -> Result<Option<usize>, Fail> {
        let at = self.pos;
        let n = if compact {
            match self.uvarint(field)? {
                0 => return Ok(None),
                n => i64::from(n) - 1,
            }
        } else if wide {
            i64::from(self.i32(field)?)
        } else {
            i64::from(self.i16(field)?)
        };
        match n {
            -1 => Ok(None),
            n => usize::try_from(n)
                .map(Some)
                .map_err(|_| fail(at, field, "negative length")),
        }
    }
}

/// The request header's client id: a nullable STRING in every header version.
fn client_id(cur: &mut Cursor<'_>) -> Result<Option<String>, Fail> {
    const FIELD: &str = "client_id";
    let at = cur.pos;
    let Some(len) = cur.length(false, false, FIELD)? else {
        return Ok(None);
    };
    if len > cur.remaining() {
        return Err(fail(at, FIELD, "length exceeds the bytes left"));
    }
    let bytes = cur.take(len, FIELD, TRUNCATED)?;
    let s = std::str::from_utf8(bytes).map_err(|_| fail(at, FIELD, "client id is not UTF-8"))?;
    Ok(Some(s.to_owned()))
}

fn walk_struct(cur: &mut Cursor<'_>, s: &Struct, version: i16, flexible: bool) -> Result<(), Fail> {
    for f in s.fields.iter().filter(|f| f.present(version)) {
        walk_field(cur, f, version, flexible)?;
    }
    if flexible {
        walk_tagged(cur, s.tagged, version, "tagged fields")?;
    }
    Ok(())
}

fn walk_field(cur: &mut Cursor<'_>, f: &Field, version: i16, flexible: bool) -> Result<(), Fail> {
    walk_ty(cur, &f.ty, f.nullable, f.name, version, flexible)
}

fn walk_ty(
    cur: &mut Cursor<'_>,
    ty: &Ty,
    nullable: bool,
    field: &'static str,
    version: i16,
    flexible: bool,
) -> Result<(), Fail> {
    let at = cur.pos;
    match ty {
        Ty::Bool | Ty::Int8 => cur.take(1, field, TRUNCATED).map(|_| ()),
        Ty::Int16 => cur.take(2, field, TRUNCATED).map(|_| ()),
        Ty::Int32 => cur.take(4, field, TRUNCATED).map(|_| ()),
        Ty::Int64 => cur.take(8, field, TRUNCATED).map(|_| ()),
        Ty::Uuid => cur.take(16, field, TRUNCATED).map(|_| ()),
        Ty::Str | Ty::Bytes => match cur.length(matches!(ty, Ty::Bytes), flexible, field)? {
            Some(len) => cur.skip(len, at, field),
            None if nullable => Ok(()),
            None => Err(fail(at, field, NOT_NULLABLE)),
        },
        Ty::Array(elem) => {
            let least = min_size(elem, version, flexible);
            walk_array(cur, nullable, field, flexible, least, |cur| {
                walk_ty(cur, elem, false, field, version, flexible)
            })
        }
        Ty::Structs(s) => {
            let least = struct_min_size(s, version, flexible);
            walk_array(cur, nullable, field, flexible, least, |cur| {
                walk_struct(cur, s, version, flexible)
            })
        }
        Ty::Struct(s) => walk_struct(cur, s, version, flexible),
    }
}

/// An array: its count, then every element by `element`, whose smallest
/// wire size is `least`.
fn walk_array(
    cur: &mut Cursor<'_>,
    nullable: bool,
    field: &'static str,
    flexible: bool,
    least: usize,
    mut element: impl FnMut(&mut Cursor<'_>) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let at = cur.pos;
    let count = match cur.length(true, flexible, field)? {
        Some(count) => count,
        None if nullable => return Ok(()),
        None => return Err(fail(at, field, NOT_NULLABLE)),
    };
    // A cheap first test; every element takes at least one byte.
    if count
        .checked_mul(least.max(1))
        .is_none_or(|need| need > cur.remaining())
    {
        return Err(fail(at, field, "array count exceeds the bytes left"));
    }
    for _ in 0..count {
        element(cur)?;
    }
    Ok(())
}

/// A tagged-field section: a count, then (tag, size, content) per field.
/// Known tags are walked by type and must fill exactly `size` bytes (the
/// crate decodes them from the frame, not from a `size`-byte window); an
/// unknown tag's content is skipped.
fn walk_tagged(
    cur: &mut Cursor<'_>,
    known: &[Tagged],
    version: i16,
    field: &'static str,
) -> Result<(), Fail> {
    let at = cur.pos;
    let count = cur.uvarint(field)?;
    // Every entry takes at least two bytes (a tag and a size).
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if count
        .checked_mul(2)
        .is_none_or(|need| need > cur.remaining())
    {
        return Err(fail(at, field, "tagged field count exceeds the bytes left"));
    }
    for _ in 0..count {
        let at = cur.pos;
        let tag = cur.uvarint(field)?;
        let size = cur.uvarint(field)?;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        match known.iter().find(|t| t.tag == tag) {
            None => cur.skip(size, at, field)?,
            Some(t) if !t.field.present(version) => {
                return Err(fail(at, t.field.name, "tag is not valid in this version"));
            }
            Some(t) => {
                let mut content = cur.window(size, at, t.field.name)?;
                walk_field(&mut content, &t.field, version, true)?;
                if content.remaining() != 0 {
                    return Err(fail(
                        at,
                        t.field.name,
                        "tagged field size does not match its content",
                    ));
                }
                cur.pos = content.pos;
            }
        }
    }
    Ok(())
}

/// The fewest bytes a value of `ty` takes on the wire in `version`.
fn min_size(ty: &Ty, version: i16, flexible: bool) -> usize {
    match ty {
        Ty::Bool | Ty::Int8 => 1,
        Ty::Int16 => 2,
        Ty::Int32 => 4,
        Ty::Int64 => 8,
        Ty::Uuid => 16,
        // A compact length is at least one byte; null takes no content.
        Ty::Str | Ty::Bytes | Ty::Array(_) | Ty::Structs(_) if flexible => 1,
        Ty::Str => 2,
        Ty::Bytes | Ty::Array(_) | Ty::Structs(_) => 4,
        Ty::Struct(s) => struct_min_size(s, version, flexible),
    }
}

/// The fewest bytes a struct takes on the wire in `version`.
fn struct_min_size(s: &Struct, version: i16, flexible: bool) -> usize {
    s.fields
        .iter()
        .filter(|f| f.present(version))
        .map(|f| min_size(&f.ty, version, flexible))
        .fold(usize::from(flexible), usize::saturating_add)
}
