//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) on the server
//! side, and the stored credentials they check against. Pure: no I/O, the
//! caller supplies nonces and looks users up; decoders never panic.
//!
//! A broker stores, per user and mechanism, only the salt, the iteration
//! count, `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` and
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`: the password itself
//! never reaches the replicated metadata. SASL/PLAIN checks a password
//! against the same SCRAM-SHA-256 credential.

use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

/// Iterations of a credential created without a count (Kafka's default).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Kafka's bounds on the iteration count.
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            Mechanism::Sha256 => hmac::HMAC_SHA256,
            Mechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2_alg(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::Sha256 => &digest::SHA256,
            Mechanism::Sha512 => &digest::SHA512,
        }
    }

    fn len(self) -> usize {
        self.digest_alg().output_len()
    }
}

/// Why a SCRAM exchange (or a PLAIN check) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("authentication failed: invalid credentials")]
    Failed,
    #[error("iterations must be in [{MIN_ITERATIONS}, {MAX_ITERATIONS}]")]
    Iterations,
}

/// What the broker keeps of a user's password for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub mechanism: Mechanism,
    #[serde(with = "crate::hex")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "crate::hex")]
    pub stored_key: Vec<u8>,
    #[serde(with = "crate::hex")]
    pub server_key: Vec<u8>,
}

fn hmac_of(m: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(m.hmac_alg(), key), data)
        .as_ref()
        .to_vec()
}

fn salted_password(m: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; m.len()];
    let n = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    pbkdf2::derive(m.pbkdf2_alg(), n, salt, password, &mut out);
    out
}

/// Constant-time equality.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ScramCredential {
    /// Derives the credential of `password` (the salt is the caller's:
    /// random bytes).
    pub fn new(
        m: Mechanism,
        password: &str,
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<Self, ScramError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations);
        }
        let salted = salted_password(m, password.as_bytes(), &salt, iterations);
        Self::from_salted(m, &salted, salt, iterations)
    }

    /// The credential of a password the client already salted (Kafka's
    /// AlterUserScramCredentials sends `Hi(password, salt, iterations)`,
    /// never the password).
    pub fn from_salted(
        m: Mechanism,
        salted: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<Self, ScramError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations);
        }
        if salt.is_empty() || salted.len() != m.len() {
            return Err(ScramError::Malformed("salt or salted password"));
        }
        let client_key = hmac_of(m, salted, b"Client Key");
        Ok(Self {
            mechanism: m,
            stored_key: digest::digest(m.digest_alg(), &client_key)
                .as_ref()
                .to_vec(),
            server_key: hmac_of(m, salted, b"Server Key"),
            salt,
            iterations,
        })
    }

    /// Whether `password` is the one this credential was made of (SASL/PLAIN).
    pub fn verify_password(&self, password: &str) -> bool {
        let m = self.mechanism;
        let salted = salted_password(m, password.as_bytes(), &self.salt, self.iterations);
        let client_key = hmac_of(m, &salted, b"Client Key");
        same(
            digest::digest(m.digest_alg(), &client_key).as_ref(),
            &self.stored_key,
        )
    }
}

/// Base64 (standard alphabet, padded), as SCRAM uses it.
pub mod b64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(b: &[u8]) -> String {
        let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
        for chunk in b.chunks(3) {
            let n = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(s: &str) -> Option<Vec<u8>> {
        let s = s.as_bytes();
        if !s.len().is_multiple_of(4) {
            return None;
        }
        let val = |c: u8| ALPHABET.iter().position(|a| *a == c).map(|p| p as u32);
        let mut out = Vec::with_capacity(s.len() / 4 * 3);
        for (i, chunk) in s.chunks(4).enumerate() {
            let last = i == s.len() / 4 - 1;
            let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
            if pad > 2 || (pad > 0 && !last) {
                return None;
            }
            let mut n = 0u32;
            for (j, c) in chunk.iter().enumerate() {
                let v = if j >= 4 - pad { 0 } else { val(*c)? };
                n = (n << 6) | v;
            }
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..3 - pad]);
        }
        Some(out)
    }
}

/// The server's side of one exchange, between the client's first and
/// final messages.
#[derive(Debug, Clone)]
pub struct Exchange {
    user: String,
    credential: ScramCredential,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// Splits `k=v` attributes of a SCRAM message.
fn attrs(msg: &str) -> impl Iterator<Item = (char, &str)> {
    msg.split(',').filter_map(|a| {
        let mut c = a.chars();
        let k = c.next()?;
        (c.next() == Some('=')).then(|| (k, &a[2..]))
    })
}

/// A SCRAM user name: `=2C` is `,` and `=3D` is `=`.
fn unescape(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in the user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Exchange {
    /// Handles the client's first message; `lookup` finds the user's
    /// credential, `server_nonce` is fresh randomness (printable, no `,`).
    /// Returns the exchange and the server's first message.
    pub fn start(
        m: Mechanism,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<(Self, Vec<u8>), ScramError> {
        let msg =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2 header: "n,," (no binding) or "y,," (client could bind);
        // "p=" asks for channel binding, which is not offered.
        let (flag, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad gs2 flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        if !authzid.is_empty() && !authzid.starts_with("a=") {
            return Err(ScramError::Malformed("bad authzid"));
        }
        let mut user = None;
        let mut client_nonce = None;
        for (k, v) in attrs(bare) {
            match k {
                'n' => user = Some(unescape(v)?),
                'r' => client_nonce = Some(v),
                'm' => return Err(ScramError::Malformed("mandatory extension")),
                _ => {}
            }
        }
        let user = user.ok_or(ScramError::Malformed("no user name"))?;
        let client_nonce = client_nonce
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("no nonce"))?;
        let credential = lookup(&user)
            .filter(|c| c.mechanism == m)
            .ok_or(ScramError::Failed)?;
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            b64::encode(&credential.salt),
            credential.iterations
        );
        let out = server_first.clone().into_bytes();
        Ok((
            Self {
                user,
                credential,
                client_first_bare: bare.to_owned(),
                server_first,
                nonce,
            },
            out,
        ))
    }

    /// Handles the client's final message: the user and the server's final
    /// message when the proof holds.
    pub fn finish(self, client_final: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let msg =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut nonce = None;
        let mut binding = None;
        for (k, v) in attrs(without_proof) {
            match k {
                'c' => binding = Some(v),
                'r' => nonce = Some(v),
                _ => {}
            }
        }
        // Without channel binding the client sends its gs2 header back.
        let binding = binding
            .and_then(b64::decode)
            .ok_or(ScramError::Malformed("no channel binding attribute"))?;
        if !binding.starts_with(b"n,") && !binding.starts_with(b"y,") {
            return Err(ScramError::ChannelBinding);
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Failed);
        }
        let proof = b64::decode(proof).ok_or(ScramError::Malformed("bad proof"))?;
        let m = self.credential.mechanism;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac_of(m, &self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::Failed);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let stored = digest::digest(m.digest_alg(), &client_key);
        if !same(stored.as_ref(), &self.credential.stored_key) {
            return Err(ScramError::Failed);
        }
        let server_signature = hmac_of(m, &self.credential.server_key, auth_message.as_bytes());
        Ok((
            self.user,
            format!("v={}", b64::encode(&server_signature)).into_bytes(),
        ))
    }
}

/// A SASL/PLAIN message: `authzid NUL user NUL password` (the authzid
/// empty or the user itself).
pub fn parse_plain(msg: &[u8]) -> Result<(String, String), ScramError> {
    let mut parts = msg.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ScramError::Malformed(
            "PLAIN needs authzid, user and password",
        ));
    };
    let text =
        |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| ScramError::Malformed("not UTF-8"));
    let (authzid, user, password) = (text(authzid)?, text(user)?, text(password)?);
    if user.is_empty() || (!authzid.is_empty() && authzid != user) {
        return Err(ScramError::Failed);
    }
    Ok((user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange (SCRAM-SHA-256, user "user", password
    /// "pencil").
    #[test]
    fn rfc7677_exchange() {
        let salt = b64::decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = ScramCredential::new(Mechanism::Sha256, "pencil", salt, 4096).unwrap();
        let (ex, first) = Exchange::start(
            Mechanism::Sha256,
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            |u| (u == "user").then(|| cred.clone()),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(first).unwrap(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (user, last) = ex
            .clone()
            .finish(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(user, "user");
        assert_eq!(
            String::from_utf8(last).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // A wrong proof, a wrong nonce.
        assert_eq!(
            ex.clone()
                .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
                .unwrap_err(),
            ScramError::Failed
        );
        assert_eq!(
            ex.finish(b"c=biws,r=other,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
                .unwrap_err(),
            ScramError::Failed
        );
    }

    #[test]
    fn plain_checks_the_scram_credential() {
        let cred =
            ScramCredential::new(Mechanism::Sha256, "s3cret", b"salt".to_vec(), 4096).unwrap();
        assert!(cred.verify_password("s3cret"));
        assert!(!cred.verify_password("s3cret "));
        assert_eq!(
            parse_plain(b"\0alice\0s3cret").unwrap(),
            ("alice".into(), "s3cret".into())
        );
        assert!(
            parse_plain(b"bob\0alice\0pw").is_err(),
            "authzid must be the user"
        );
        assert!(parse_plain(b"alice\0pw").is_err());
        assert!(parse_plain(b"\0alice\0pw\0extra").is_err());
    }

    #[test]
    fn hostile_messages_are_refused() {
        let cred = ScramCredential::new(Mechanism::Sha512, "pw", b"s".to_vec(), 4096).unwrap();
        let look = |_: &str| Some(cred.clone());
        for bad in [
            &b""[..],
            b"n",
            b"n,,",
            b"x,,n=u,r=abc",
            b"n,,r=abc",
            b"n,,n=u",
            b"n,,n=u=ZZ,r=a",
            b"\xff\xfe",
            b"n,,m=ext,n=u,r=a",
        ] {
            assert!(
                Exchange::start(Mechanism::Sha512, bad, look, "s").is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            Exchange::start(Mechanism::Sha512, b"p=tls-unique,,n=u,r=a", look, "s").unwrap_err(),
            ScramError::ChannelBinding
        );
        // The other mechanism's credential does not do.
        assert_eq!(
            Exchange::start(Mechanism::Sha256, b"n,,n=u,r=a", look, "s").unwrap_err(),
            ScramError::Failed
        );
        let (ex, _) = Exchange::start(Mechanism::Sha512, b"n,,n=u,r=a", look, "s").unwrap();
        for bad in [&b""[..], b"c=biws", b"c=biws,r=as,p=!!!!", b"r=as,p=AAAA"] {
            assert!(ex.clone().finish(bad).is_err(), "{bad:?}");
        }
        assert!(ScramCredential::new(Mechanism::Sha256, "pw", vec![], 10).is_err());
    }

    #[test]
    fn base64_round_trips() {
        for n in 0..40usize {
            let b: Vec<u8> = (0..n as u8).map(|x| x.wrapping_mul(37)).collect();
            assert_eq!(b64::decode(&b64::encode(&b)).unwrap(), b);
        }
        assert_eq!(b64::encode(b"n,,"), "biws");
        assert!(b64::decode("abc").is_none());
        assert!(b64::decode("a===").is_none());
        assert!(b64::decode("ab=c").is_none());
    }
}
