//! X.509 certificates (from a TLS server's `Certificate` message) described as Suricata
//! describes them: subject and issuer as `C=US, O=..., CN=...`, the serial as upper-case hex
//! pairs joined by `:`, the SHA-1 fingerprint as lower-case ones, and the validity. Parsed with
//! the x509-parser crate (which Suricata uses too, so the names are written alike).

use sha1::{Digest, Sha1};
use x509_parser::prelude::{ASN1Time, FromDer, X509Certificate};

/// What rules and eve.json see of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFields {
    pub subject: String,
    pub issuer: String,
    /// `0A:E1:E6:...`
    pub serial: String,
    /// SHA-1 of the DER: `4a:a3:66:...`
    pub fingerprint: String,
    /// Validity bounds as `2016-07-14T00:00:00` (UTC).
    pub not_before: String,
    pub not_after: String,
}

/// The fields of the certificate `der`; `None` when it is not a certificate x509-parser reads.
pub fn certificate_fields(der: &[u8]) -> Option<CertificateFields> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let validity = cert.validity();
    Some(CertificateFields {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: hex_pairs(cert.raw_serial(), true),
        fingerprint: hex_pairs(&Sha1::digest(der), false),
        not_before: iso_time(&validity.not_before),
        not_after: iso_time(&validity.not_after),
    })
}

/// Bytes as hex pairs joined by `:`.
fn hex_pairs(bytes: &[u8], upper: bool) -> String {
    let digits: &[u8; 16] = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(digits[usize::from(b >> 4)]));
        out.push(char::from(digits[usize::from(b & 15)]));
    }
    out
}

/// A certificate's time as `YYYY-MM-DDTHH:MM:SS` (UTC).
fn iso_time(time: &ASN1Time) -> String {
    let t = time.to_datetime();
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_times_as_suricata_writes_them() {
        assert_eq!(hex_pairs(&[0x0a, 0xe1, 0x00], true), "0A:E1:00");
        assert_eq!(hex_pairs(&[0x4a, 0xa3], false), "4a:a3");
        assert_eq!(hex_pairs(&[], true), "");
        let at = |s| iso_time(&ASN1Time::from_timestamp(s).unwrap());
        assert_eq!(at(0), "1970-01-01T00:00:00");
        assert_eq!(at(1_468_454_400), "2016-07-14T00:00:00");
        assert_eq!(at(951_782_400 + 3661), "2000-02-29T01:01:01");
    }

    #[test]
    fn not_a_certificate() {
        assert_eq!(certificate_fields(b""), None);
        assert_eq!(certificate_fields(b"\x30\x03\x02\x01\x00"), None);
    }
}
