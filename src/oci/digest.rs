//! Content digests as the OCI image specification writes them, `algorithm:encoded`. A digest
//! from a registry, a manifest or a header is parsed here before any use, so it is data and
//! never a path: only `sha256` (64 lowercase hex digits) and `sha512` (128) exist, and a file
//! named after a blob takes its name from the parsed hex alone ([`Digest::file_name`]).
//! A leaf module: it imports nothing of forge's but the quoting bound.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// The digest algorithms of the OCI image specification that registries use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A parsed digest: `sha256:<64 hex>` or `sha512:<128 hex>`, lowercase.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// Text that is not a digest; it quotes at most [`crate::limits::EXCERPT_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a digest: a digest is sha256:<64 lowercase hex digits> or sha512:<128>")]
pub struct DigestError(String);

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        let refuse = || DigestError(crate::limits::clip(text).into_owned());
        let (algorithm, hex) = text.split_once(':').ok_or_else(refuse)?;
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(refuse()),
        };
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if hex.len() != algorithm.hex_len() || !hex.bytes().all(lower_hex) {
            return Err(refuse());
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(Algorithm::Sha256);
        hasher.update(bytes);
        hasher.finish()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded part: lowercase hex digits only.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as Docker shortens image IDs.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// A file name for the content: `sha256-<hex>`, made of the parsed parts only.
    pub fn file_name(&self) -> String {
        format!("{}-{}", self.algorithm.name(), self.hex)
    }

    /// A hasher of this digest's algorithm, to check content against it.
    pub fn hasher(&self) -> Hasher {
        Hasher::new(self.algorithm)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(text: &str) -> Result<Digest, DigestError> {
        Digest::parse(text)
    }
}

impl PartialEq<str> for Digest {
    fn eq(&self, other: &str) -> bool {
        other.split_once(':') == Some((self.algorithm.name(), self.hex.as_str()))
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Hashes content in pieces into a [`Digest`] of one algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_the_two_algorithms_registries_use() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d, Digest::sha256(b""));
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.short(), "e3b0c44298fc");
        assert_eq!(d.file_name(), EMPTY.replace(':', "-"));
        let sha512 = format!("sha512:{}", "0a".repeat(64));
        assert_eq!(
            Digest::parse(&sha512).unwrap().algorithm(),
            Algorithm::Sha512
        );
        assert!(&d == EMPTY);
    }

    #[test]
    fn anything_else_is_refused_and_never_a_path() {
        let long = format!("sha256:{}", "a".repeat(10_000));
        for bad in [
            "",
            "/etc/passwd",
            "../../../../tmp/x",
            "sha256:../../etc/passwd",
            &EMPTY.to_uppercase(),
            &EMPTY.replace("sha256", "md5"),
            &format!("{EMPTY}/x"),
            &EMPTY[..70],
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85\u{e9}",
            &long,
        ] {
            let err = Digest::parse(bad).unwrap_err().to_string();
            assert!(err.contains("is not a digest"), "{err}");
            assert!(err.chars().count() < 300, "quotes too much: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_to_a_file_name_of_hex_or_are_refused(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            prefix in "sha(256|512):[0-9a-f]{0,130}",
        ) {
            for text in [String::from_utf8_lossy(&bytes).into_owned(), prefix] {
                if let Ok(digest) = Digest::parse(&text) {
                    proptest::prop_assert_eq!(digest.to_string(), text);
                    let name = digest.file_name();
                    proptest::prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
                }
            }
        }
    }

    #[test]
    fn hashes_in_pieces_with_the_digest_s_algorithm() {
        let whole = Digest::sha256(b"hello world");
        let mut pieces = whole.hasher();
        pieces.update(b"hello ");
        pieces.update(b"world");
        assert_eq!(pieces.finish(), whole);
        let json = serde_json::to_string(&whole).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), whole);
        assert!(serde_json::from_str::<Digest>("\"/tmp/x\"").is_err());
    }
}
