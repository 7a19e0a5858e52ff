//! Certificates made at run time for the TLS tests: a CA, a server certificate for
//! `localhost` / `127.0.0.1` and client certificates with a chosen subject, written as PEM
//! files into a directory the test owns.

use std::path::{Path, PathBuf};

pub use rcgen::DnType;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair,
};

/// A test CA that signs server and client certificates.
#[derive(Debug)]
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate in PEM.
    pub cert_pem: String,
}

/// PEM files of one issued certificate.
#[derive(Debug, Clone)]
pub struct IssuedFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        }
    }

    /// Writes the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.cert_pem).expect("write CA");
        path.to_owned()
    }

    /// Issues a server certificate for `localhost` and `127.0.0.1` with common name `cn`,
    /// written as `<dir>/<stem>.pem` and `<dir>/<stem>.key`.
    pub fn server(&self, dir: &Path, stem: &str, cn: &str) -> IssuedFiles {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(dir, stem, params)
    }

    /// Issues a client certificate whose subject is `subject` (type, value pairs, in encoding
    /// order: the DN reads them in reverse), written as `<dir>/<stem>.pem` and `.key`.
    pub fn client(&self, dir: &Path, stem: &str, subject: &[(DnType, &str)]) -> IssuedFiles {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        // rcgen's default subject holds a common name, which would keep its first place.
        params.distinguished_name = DistinguishedName::new();
        for (ty, value) in subject {
            params.distinguished_name.push(ty.clone(), *value);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(dir, stem, params)
    }

    fn issue(&self, dir: &Path, stem: &str, params: CertificateParams) -> IssuedFiles {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        let files = IssuedFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        // Written to a temporary name and renamed, so a watcher never sees half a file.
        let tmp = dir.join(format!(".{stem}.tmp"));
        std::fs::write(&tmp, cert.pem()).expect("write cert");
        std::fs::rename(&tmp, &files.cert).expect("rename cert");
        std::fs::write(&tmp, key.serialize_pem()).expect("write key");
        std::fs::rename(&tmp, &files.key).expect("rename key");
        files
    }
}
