//! A server's certificate chain and key, from PEM files, made into a
//! rustls server configuration on the `ring` provider.

use std::io;
use std::path::Path;
use std::sync::Arc;

use futures_rustls::pki_types::pem::{self, PemObject};
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::{self, ServerConfig};

/// Reads a certificate chain and its private key from PEM files: every
/// `CERTIFICATE` section of `cert_chain` (the server's own first, then the
/// intermediates), and the first private key of `key` (PKCS #8, PKCS #1 or
/// SEC1).
///
/// A file that cannot be read is an error of its own kind; one that holds
/// no certificate, no key or malformed PEM is an error of kind
/// [`io::ErrorKind::InvalidData`].
///
/// # Examples
///
/// ```
/// use stream_multiplexer::tls;
///
/// let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
/// let directory = std::env::temp_dir().join(format!("load-pem-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&directory)?;
/// std::fs::write(directory.join("cert.pem"), certified.cert.pem())?;
/// std::fs::write(directory.join("key.pem"), certified.signing_key.serialize_pem())?;
///
/// let (chain, key) = tls::load_pem(directory.join("cert.pem"), directory.join("key.pem"))?;
/// assert_eq!(chain.len(), 1);
/// let _config = tls::server_config(chain, key)?;
///
/// // A key file is not a certificate chain.
/// let error = tls::load_pem(directory.join("key.pem"), directory.join("key.pem")).unwrap_err();
/// assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
/// std::fs::remove_dir_all(&directory)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_pem(
    cert_chain: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_file_iter(cert_chain.as_ref())
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if chain.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no certificate in {}", cert_chain.as_ref().display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key.as_ref()).map_err(pem_error)?;
    Ok((chain, key))
}

/// A PEM error as an I/O error: the file's own I/O error, or bad data.
fn pem_error(error: pem::Error) -> io::Error {
    match error {
        pem::Error::Io(error) => error,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// A server configuration for `cert_chain` and its `key`, with rustls's
/// `ring` provider, its safe default protocol versions (TLS 1.2 and 1.3)
/// and no client authentication.
///
/// A key that does not match the certificate, or that the provider cannot
/// use, is an error of kind [`io::ErrorKind::InvalidInput`].
///
/// # Examples
///
/// ```
/// use futures_rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
/// use stream_multiplexer::tls;
///
/// let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
/// let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
/// let config = tls::server_config(vec![certified.cert.der().clone()], key)?;
/// assert!(config.alpn_protocols.is_empty());
///
/// // Another certificate's key does not fit.
/// let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
/// let wrong = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(other.signing_key.serialize_der()));
/// let error = tls::server_config(vec![certified.cert.der().clone()], wrong).unwrap_err();
/// assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<Arc<ServerConfig>> {
    // The provider is named, not taken from the process default, which
    // would panic if another crate had enabled a second one.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(cert_chain, key)
        })
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    Ok(Arc::new(config))
}
