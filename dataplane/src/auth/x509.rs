//! The `x509` authenticator: a client whose certificate TLS verified (a
//! listener with `verify_peer = true` and the CA in `cacertfile`) is let in
//! under a name from that certificate (its common name, or its first DNS
//! or e-mail subject alternative name), with no password. That name becomes
//! the client's username for everything after: ACL rules (`%u`), session
//! ownership, bans by username.
//!
//! A client without a verified certificate (plain TCP or WebSocket, or TLS
//! without `verify_peer`), or whose certificate lacks the name, is left to
//! the next authenticator (`Ignore`). A name that could not be a username
//! (empty, or holding NUL) is refused. The certificate's signature was
//! checked by rustls against the configured CA before any of this runs.

use mqtt_codec::ReasonCode;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Tag, Tagged};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

use crate::cluster::access::Grant;
use crate::config::CertName;
use crate::hooks::{Authenticator, ConnectRequest, HookFuture, Verdict};

const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");

/// The `x509` authenticator.
#[derive(Debug)]
pub struct X509Authenticator {
    name: CertName,
    /// The name that becomes the client id too, if any.
    client_id: Option<CertName>,
}

impl X509Authenticator {
    pub fn new(name: CertName, client_id: Option<CertName>) -> X509Authenticator {
        X509Authenticator { name, client_id }
    }

    fn verdict(&self, request: ConnectRequest<'_>) -> Verdict<Grant> {
        let Some(der) = request.certificate else { return Verdict::Ignore };
        let Some(name) = name_in(der, self.name) else { return Verdict::Ignore };
        if name.is_empty() || name.contains('\0') {
            return Verdict::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
        }
        let client_id = match self.client_id {
            None => None,
            Some(which) => match name_in(der, which) {
                Some(id) if !id.is_empty() && !id.contains('\0') => Some(Box::from(id.as_str())),
                // Asked for a client id the certificate does not give.
                _ => return Verdict::Deny(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
            },
        };
        Verdict::Allow(Grant {
            superuser: false,
            credential: None,
            external: true,
            username: Some(name.into()),
            rules: None,
            expires_at: None,
            client_id,
        })
    }
}

impl Authenticator for X509Authenticator {
    fn authenticate<'a>(&'a self, request: ConnectRequest<'a>) -> HookFuture<'a, Verdict<Grant>> {
        let verdict = self.verdict(request);
        Box::pin(async move { verdict })
    }
}

/// The name `which` in the DER certificate, if it has one.
pub fn name_in(der: &[u8], which: CertName) -> Option<String> {
    let certificate = Certificate::from_der(der).ok()?;
    let tbs = certificate.tbs_certificate;
    match which {
        CertName::Cn => tbs.subject.0.iter().flat_map(|rdn| rdn.0.iter()).find_map(|attribute| {
            if attribute.oid != COMMON_NAME {
                return None;
            }
            match attribute.value.tag() {
                Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
                    std::str::from_utf8(attribute.value.value()).ok().map(str::to_owned)
                }
                _ => None,
            }
        }),
        CertName::SanDns | CertName::SanEmail => {
            let extension =
                tbs.extensions?.into_iter().find(|extension| extension.extn_id == SUBJECT_ALT_NAME)?;
            let names = SubjectAltName::from_der(extension.extn_value.as_bytes()).ok()?;
            names.0.into_iter().find_map(|name| match (name, which) {
                (GeneralName::DnsName(dns), CertName::SanDns) => Some(dns.to_string()),
                (GeneralName::Rfc822Name(email), CertName::SanEmail) => Some(email.to_string()),
                _ => None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_from_the_certificate() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["dev.example".to_owned()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "device-7");
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name("ops@example.org".try_into().expect("ia5")));
        let certificate = params.self_signed(&key).expect("certificate");
        let der = certificate.der();
        assert_eq!(name_in(der, CertName::Cn).as_deref(), Some("device-7"));
        assert_eq!(name_in(der, CertName::SanDns).as_deref(), Some("dev.example"));
        assert_eq!(name_in(der, CertName::SanEmail).as_deref(), Some("ops@example.org"));
        assert_eq!(name_in(b"not a certificate", CertName::Cn), None);

        let bare = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        assert_eq!(name_in(bare.der(), CertName::SanDns), None);
    }
}
