//! Token signing keys: `moat token keygen` (and `moat up`) write an ES256
//! key pair for `moat token issue` and `auth.tokens.keys`.

use std::path::Path;

use super::ca::new_key;
use super::files::write_atomic;
use super::PkiError;

/// A token signing key pair (ES256), PEM.
#[derive(Debug, Clone)]
pub struct TokenKeyPair {
    /// PKCS#8 private key: for `moat token issue --key`.
    pub private_pem: String,
    /// SubjectPublicKeyInfo: for `auth.tokens.keys[].file` with
    /// `algorithm: ES256`.
    pub public_pem: String,
}

/// A fresh ES256 key pair for signing bearer tokens.
pub fn generate_token_key() -> Result<TokenKeyPair, PkiError> {
    let key = new_key()?;
    Ok(TokenKeyPair {
        private_pem: key.serialize_pem(),
        public_pem: key.public_key_pem(),
    })
}

/// Writes a fresh ES256 token key pair to `private` (0600) and `public`.
pub fn write_token_key(private: &Path, public: &Path) -> Result<TokenKeyPair, PkiError> {
    let pair = generate_token_key()?;
    write_atomic(private, pair.private_pem.as_bytes(), 0o600)?;
    write_atomic(public, pair.public_pem.as_bytes(), 0o644)?;
    Ok(pair)
}
