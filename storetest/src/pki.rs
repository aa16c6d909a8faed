//! Throw-away certificate authorities and leaf certificates for the TLS and
//! mutual-TLS tests of every StoreAPI server (rcgen, aws-lc-rs keys).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA that can sign leaves.
pub type Ca = Issuer<'static, KeyPair>;

/// A new self-signed CA named `name`: its PEM certificate and its issuer.
pub fn new_ca(name: &str) -> (String, Ca) {
    let mut params = CertificateParams::new(Vec::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert.pem(), Issuer::new(params, key))
}

/// A leaf certificate for `names` (DNS names or IP addresses; the first is
/// also the common name) signed by `issuer`, for `usage` (server or client
/// authentication): PEM certificate and PEM key.
pub fn new_leaf(issuer: &Ca, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("signed leaf");
    (cert.pem(), key.serialize_pem())
}

/// Calls `Info` on `addr` with client TLS `tls` (`None`: plain text); the
/// answer, or why the connection or the call failed.
pub async fn call_info(
    addr: &str,
    tls: Option<strata_proto::grpc::ClientTls>,
) -> Result<strata_proto::thanos::info::InfoResponse, String> {
    use strata_proto::grpc::{ClientOptions, MessageLimits};
    use strata_proto::thanos::info::{info_client::InfoClient, InfoRequest};
    let opts = ClientOptions {
        tls,
        ..ClientOptions::default()
    };
    let channel = opts
        .endpoint(addr)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    InfoClient::new(channel)
        .with_message_limits(opts.max_message_size)
        .info(InfoRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|s| format!("call: {s:?}"))
}
