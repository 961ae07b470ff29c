//! How the PostgreSQL backend connects: the password from where libpq users keep it (the
//! URI, `PGPASSWORD`, or the password file `PGPASSFILE` / `~/.pgpass`, never a command line
//! that `ps` shows), and TLS as libpq's `sslmode` describes it (`disable`, `prefer`,
//! `require`, `verify-ca`, `verify-full`, with `sslrootcert` or `PGSSLROOTCERT` or
//! `~/.postgresql/root.crt`) through rustls.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{RegistryError, Result};

/// libpq's TLS modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A connection URI split into what the `postgres` crate parses and the TLS settings it
/// does not know.
pub struct Settings {
    pub config: postgres::Config,
    pub ssl: SslMode,
    pub root_cert: Option<PathBuf>,
}

/// Parses `uri` (`shown` is its redacted form, for messages), takes the TLS parameters out
/// of it, and fills in the password from the environment or the password file.
pub fn settings(uri: &str, shown: &str) -> Result<Settings> {
    let invalid = |why: String| RegistryError::invalid("PostgreSQL URI", shown, why);
    let (base, query) = match uri.split_once('?') {
        Some((b, q)) => (b, q),
        None => (uri, ""),
    };
    let (mut ssl, mut root_cert) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => {
                ssl = Some(SslMode::parse(v).ok_or_else(|| {
                    invalid(format!(
                        "sslmode={v} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    ))
                })?)
            }
            Some(("sslrootcert", v)) => root_cert = Some(PathBuf::from(percent_decode(v))),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: postgres::Config = rest
        .parse()
        .map_err(|e: postgres::Error| invalid(e.to_string()))?;
    let ssl = match ssl {
        Some(mode) => mode,
        None => match std::env::var("PGSSLMODE") {
            Ok(v) => SslMode::parse(&v)
                .ok_or_else(|| invalid(format!("PGSSLMODE={v} is not a libpq sslmode")))?,
            Err(_) => SslMode::Prefer,
        },
    };
    config.ssl_mode(match ssl {
        SslMode::Disable => postgres::config::SslMode::Disable,
        SslMode::Prefer => postgres::config::SslMode::Prefer,
        _ => postgres::config::SslMode::Require,
    });
    let root_cert = root_cert
        .or_else(|| std::env::var_os("PGSSLROOTCERT").map(PathBuf::from))
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            let default = Path::new(&home).join(".postgresql/root.crt");
            default.exists().then_some(default)
        });
    if config.get_password().is_none() {
        if let Some(password) = password_from_environment(&config) {
            config.password(password);
        }
    }
    Ok(Settings {
        config,
        ssl,
        root_cert,
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `PGPASSWORD`, else the first matching line of the password file.
fn password_from_environment(config: &postgres::Config) -> Option<Vec<u8>> {
    if let Some(p) = std::env::var_os("PGPASSWORD") {
        return Some(p.into_encoded_bytes());
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
    let text = read_private(&file)?;
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        // libpq matches a socket connection as "localhost"
        _ => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or("").to_string();
    let database = config.get_dbname().unwrap_or(&user).to_string();
    pgpass_lookup(&text, &host, &port, &database, &user).map(String::into_bytes)
}

/// The password file's text, when only its owner can read it (libpq ignores it otherwise,
/// and so do we, saying why on stderr).
fn read_private(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "pilothouse: ignoring the password file {}: others can read it (chmod 0600 it)",
                path.display()
            );
            return None;
        }
    }
    let _ = meta;
    std::fs::read_to_string(path).ok()
}

/// The password of the first `host:port:database:user:password` line that matches (`*`
/// matches anything; `\:` and `\\` escape).
pub fn pgpass_lookup(
    text: &str,
    host: &str,
    port: &str,
    database: &str,
    user: &str,
) -> Option<String> {
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::with_capacity(5);
        let mut field = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        field.push(next);
                    }
                }
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
                c => field.push(c),
            }
        }
        fields.push(field);
        if fields.len() != 5 {
            continue;
        }
        let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        if matches(&fields[0], host)
            && matches(&fields[1], port)
            && matches(&fields[2], database)
            && matches(&fields[3], user)
        {
            return Some(fields.swap_remove(4));
        }
    }
    None
}

/// The TLS connector for the mode: None when TLS is off.
pub fn connector(settings: &Settings, shown: &str) -> Result<Option<MakeRustlsConnect>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::Store(format!("TLS setup: {e}")))?;
    // As libpq: `require` with a root certificate at hand (sslrootcert, PGSSLROOTCERT or
    // ~/.postgresql/root.crt) checks the chain, like verify-ca.
    let mode = match (settings.ssl, &settings.root_cert) {
        (SslMode::Require, Some(_)) => SslMode::VerifyCa,
        (mode, _) => mode,
    };
    let config = match mode {
        SslMode::Disable => return Ok(None),
        // Encrypted, not authenticated (libpq's meaning of prefer and require).
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Relaxed {
                chain: None,
                provider,
            }))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let path = settings.root_cert.as_ref().ok_or_else(|| {
                RegistryError::invalid(
                    "PostgreSQL URI",
                    shown,
                    "sslmode=verify-ca and verify-full need the certificate of the authority that signed the server's: add sslrootcert=/path/to/ca.pem (or set PGSSLROOTCERT)",
                )
            })?;
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                RegistryError::invalid("sslrootcert", path.display().to_string(), e.to_string())
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    RegistryError::invalid("sslrootcert", path.display().to_string(), e.to_string())
                })?;
                roots.add(cert).map_err(|e| {
                    RegistryError::invalid("sslrootcert", path.display().to_string(), e.to_string())
                })?;
            }
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| RegistryError::Store(format!("TLS setup: {e}")))?;
            let verifier: Arc<dyn ServerCertVerifier> = if mode == SslMode::VerifyCa {
                Arc::new(Relaxed {
                    chain: Some(verifier),
                    provider,
                })
            } else {
                verifier
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The certificate checks libpq's modes ask for, beyond what rustls does by default:
/// `require` (and `prefer`) accept any certificate (encrypted, not authenticated);
/// `verify-ca` checks the chain against the given authority but not the name. Handshake
/// signatures are always verified.
#[derive(Debug)]
struct Relaxed {
    /// None: any certificate; Some: the chain must verify (a wrong name is accepted).
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let text = "# comment\n\
                    db.example:5432:reg:ann:first\n\
                    *:*:*:bob:b\\:ob\\\\pw\n\
                    localhost:*:*:*:local\n";
        assert_eq!(
            pgpass_lookup(text, "db.example", "5432", "reg", "ann").as_deref(),
            Some("first")
        );
        assert_eq!(
            pgpass_lookup(text, "db.example", "5433", "reg", "ann"),
            None
        );
        assert_eq!(
            pgpass_lookup(text, "anywhere", "1", "x", "bob").as_deref(),
            Some("b:ob\\pw")
        );
        assert_eq!(
            pgpass_lookup(text, "localhost", "5432", "reg", "carl").as_deref(),
            Some("local")
        );
        assert_eq!(percent_decode("%2Ftmp%2Fca.pem"), "/tmp/ca.pem");
    }
}
