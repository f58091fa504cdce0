//! A tiny DER reader/writer, just enough to give a client certificate a
//! subject with several O (organization) attributes.
//!
//! rcgen's `DistinguishedName` keeps one value per attribute type, but moat
//! (like Kubernetes and cfssl) reads a user's groups from *all* subject O
//! values. So [`super::issue()`] lets rcgen build and sign the certificate,
//! then [`replace_subject`] swaps the subject for one written here and signs
//! the new `TBSCertificate` again with the CA key. Everything else (serial,
//! validity, extensions, signature algorithm) is kept byte for byte.

/// Why a certificate could not be rewritten. Only rcgen output is ever fed
/// in, so any of these means a bug, not bad user input.
#[derive(Debug, thiserror::Error)]
pub enum DerError {
    #[error("malformed DER: {0}")]
    Malformed(&'static str),
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_UTF8STRING: u8 = 0x0c;
const TAG_BIT_STRING: u8 = 0x03;
/// `[0] EXPLICIT Version` at the start of a v3 TBSCertificate.
const TAG_VERSION: u8 = 0xa0;

/// id-at-commonName, 2.5.4.3.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// id-at-organizationName, 2.5.4.10.
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];

/// One element: its tag, the whole encoding, and its contents.
struct Tlv<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
}

/// Reads the element at the start of `input`; returns it and the rest.
fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), DerError> {
    let (&tag, rest) = input
        .split_first()
        .ok_or(DerError::Malformed("truncated tag"))?;
    if tag & 0x1f == 0x1f {
        return Err(DerError::Malformed("multi-byte tags are not expected"));
    }
    let (&first, rest) = rest
        .split_first()
        .ok_or(DerError::Malformed("truncated length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(DerError::Malformed("bad length"));
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return Err(DerError::Malformed("element longer than its input"));
    }
    let header = input.len() - rest.len();
    let whole = &input[..header + len];
    Ok((
        Tlv {
            tag,
            whole,
            content: &rest[..len],
        },
        &rest[len..],
    ))
}

/// Splits a constructed element's contents into its children.
fn children(mut content: &[u8]) -> Result<Vec<Tlv<'_>>, DerError> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tlv, rest) = read(content)?;
        out.push(tlv);
        content = rest;
    }
    Ok(out)
}

/// Encodes one element with a definite (minimal) length.
fn write(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// One RDN holding one `type = UTF8String value` attribute.
fn rdn(oid: &[u8], value: &str) -> Vec<u8> {
    let mut atv = write(TAG_OID, oid);
    atv.extend(write(TAG_UTF8STRING, value.as_bytes()));
    write(TAG_SET, &write(TAG_SEQUENCE, &atv))
}

/// A Name `O=<group>, …, CN=<user>`: one RDN per group (the layout
/// Kubernetes and cfssl use), then the common name.
pub(super) fn subject_name(common_name: &str, organizations: &[String]) -> Vec<u8> {
    let mut rdns = Vec::new();
    for o in organizations {
        rdns.extend(rdn(OID_O, o));
    }
    rdns.extend(rdn(OID_CN, common_name));
    write(TAG_SEQUENCE, &rdns)
}

/// Returns `cert_der` with its subject replaced by `subject` (a DER Name),
/// re-signed with `sign` (which must use the certificate's own signature
/// algorithm, i.e. the issuer's key).
pub fn replace_subject<E>(
    cert_der: &[u8],
    subject: &[u8],
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Result<Vec<u8>, E>, DerError> {
    let (cert, rest) = read(cert_der)?;
    if cert.tag != TAG_SEQUENCE || !rest.is_empty() {
        return Err(DerError::Malformed("certificate is not one SEQUENCE"));
    }
    let parts = children(cert.content)?;
    let [tbs, sig_alg, _sig] = parts.as_slice() else {
        return Err(DerError::Malformed("certificate does not have three parts"));
    };
    let fields = children(tbs.content)?;
    // version?, serial, signature, issuer, validity, subject, ...
    let subject_at = if fields.first().map(|f| f.tag) == Some(TAG_VERSION) {
        5
    } else {
        4
    };
    if fields.len() <= subject_at || fields[subject_at].tag != TAG_SEQUENCE {
        return Err(DerError::Malformed("TBSCertificate has no subject"));
    }
    let mut tbs_content = Vec::with_capacity(tbs.content.len() + subject.len());
    for (i, f) in fields.iter().enumerate() {
        if i == subject_at {
            tbs_content.extend_from_slice(subject);
        } else {
            tbs_content.extend_from_slice(f.whole);
        }
    }
    let new_tbs = write(TAG_SEQUENCE, &tbs_content);
    let signature = match sign(&new_tbs) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0); // no unused bits
    bits.extend(signature);
    let mut body = new_tbs;
    body.extend_from_slice(sig_alg.whole);
    body.extend(write(TAG_BIT_STRING, &bits));
    Ok(Ok(write(TAG_SEQUENCE, &body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 70000] {
            let content = vec![7u8; len];
            let enc = write(TAG_SEQUENCE, &content);
            let (tlv, rest) = read(&enc).unwrap();
            assert!(rest.is_empty());
            assert_eq!(tlv.content.len(), len);
            assert_eq!(tlv.whole.len(), enc.len());
        }
    }

    #[test]
    fn truncated_input_is_an_error() {
        let enc = write(TAG_SEQUENCE, &[1, 2, 3]);
        assert!(read(&enc[..enc.len() - 1]).is_err());
        assert!(read(&[]).is_err());
    }
}
