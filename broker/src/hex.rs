//! Bytes as lowercase hex strings in the JSON records of the replicated
//! state (`#[serde(with = "crate::hex")]`): opaque group metadata and
//! assignments, SCRAM salts and keys.

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return Err(serde::de::Error::custom("bad hex"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(serde::de::Error::custom))
        .collect()
}
