//! PEM X.509 certificate checks for registry `certificates`, `site.caCerts` and profile
//! `providerCredentials.certificates`.

use x509_parser::pem::Pem;

use crate::limits::clip;

/// What a PEM bundle holds, as far as validation cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    pub not_after_text: String,
}

impl Certificate {
    /// Why the certificate cannot be used at `now` (seconds since the epoch), if it cannot.
    pub fn validity_problem(&self, now: i64) -> Option<String> {
        if now > self.not_after {
            Some(format!(
                "certificate `{}` expired on {}",
                clip(&self.subject),
                self.not_after_text
            ))
        } else if now < self.not_before {
            Some(format!(
                "certificate `{}` is not valid yet",
                clip(&self.subject)
            ))
        } else {
            None
        }
    }
}

/// Parse every certificate in a PEM text. Garbage, a non-certificate block or no block at all
/// is an error saying which.
pub fn parse_bundle(text: &str) -> Result<Vec<Certificate>, String> {
    let mut certificates = Vec::new();
    for (i, block) in Pem::iter_from_buffer(text.trim().as_bytes()).enumerate() {
        let block = block.map_err(|e| format!("PEM block {} is malformed ({e})", i + 1))?;
        if block.label != "CERTIFICATE" {
            return Err(format!(
                "PEM block {} is a `{}`, not a CERTIFICATE",
                i + 1,
                clip(&block.label)
            ));
        }
        let x509 = block
            .parse_x509()
            .map_err(|e| format!("PEM block {} is not an X.509 certificate ({e})", i + 1))?;
        let validity = x509.validity();
        certificates.push(Certificate {
            subject: x509.subject().to_string(),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            not_after_text: validity.not_after.to_string(),
        });
    }
    if certificates.is_empty() {
        return Err("no -----BEGIN CERTIFICATE----- block found".into());
    }
    Ok(certificates)
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_and_empty_text() {
        assert!(parse_bundle("not a certificate")
            .unwrap_err()
            .contains("no -----BEGIN"));
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(parse_bundle(bad).unwrap_err().contains("not an X.509"));
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(parse_bundle(key).unwrap_err().contains("PRIVATE KEY"));
    }
}
