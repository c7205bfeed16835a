//! `strata tls gen`: development TLS material (a CA, a broker certificate
//! for the given hosts, a client certificate).

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::output::usage;

#[derive(Debug, clap::Subcommand)]
pub enum TlsCmd {
    /// Write a development CA plus broker and client certificates:
    /// ca.pem, ca-key.pem, broker.pem, broker-key.pem, client.pem,
    /// client-key.pem.
    Gen {
        /// Directory to write to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Names and IP addresses the broker certificate is valid for.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
        hosts: Vec<String>,
        /// Common name of the client certificate (its principal).
        #[arg(long, default_value = "client")]
        client_name: String,
        /// Sign with this existing CA (with --ca-key) instead of a new one.
        #[arg(long, requires = "ca_key")]
        ca: Option<PathBuf>,
        /// Private key of --ca.
        #[arg(long, requires = "ca")]
        ca_key: Option<PathBuf>,
        /// Last day the broker and client certificates are valid
        /// (YYYY-MM-DD; default: 10 years from now).
        #[arg(long)]
        not_after: Option<String>,
    },
}

pub fn run(cmd: TlsCmd) -> anyhow::Result<()> {
    match cmd {
        TlsCmd::Gen {
            out,
            hosts,
            client_name,
            ca,
            ca_key,
            not_after,
        } => {
            let not_after = not_after.as_deref().map(parse_date).transpose()?;
            gen_all(
                &out,
                &hosts,
                &client_name,
                ca.as_deref().zip(ca_key.as_deref()),
                not_after,
            )?;
            outln!(
                "wrote ca.pem, broker.pem, client.pem (and their keys) to {}",
                out.display()
            );
            Ok(())
        }
    }
}

fn parse_date(s: &str) -> anyhow::Result<Ymd> {
    let parts: Vec<&str> = s.split('-').collect();
    let bad = || usage(format!("--not-after '{s}': expected YYYY-MM-DD"));
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>()) else {
        return Err(bad());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return Err(bad());
    }
    Ok((y, m, d))
}

/// A calendar day: year, month, day.
type Ymd = (i32, u8, u8);

fn write(dir: &Path, name: &str, pem: &str, secret: bool) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, pem).with_context(|| format!("cannot write {}", path.display()))?;
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    Ok(())
}

fn leaf(
    names: &[String],
    common_name: &str,
    usages: Vec<ExtendedKeyUsagePurpose>,
    not_after: Option<Ymd>,
) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(names.to_vec())
        .with_context(|| format!("invalid host name in {names:?}"))?;
    p.distinguished_name
        .push(DnType::CommonName, common_name.to_owned());
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = usages;
    p.not_before = rcgen::date_time_ymd(2000, 1, 1);
    let (y, m, d) = not_after.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        (1970 + (now / 31_556_952) as i32 + 10, 1, 1)
    });
    p.not_after = rcgen::date_time_ymd(y, m, d);
    Ok(p)
}

fn gen_all(
    out: &Path,
    hosts: &[String],
    client_name: &str,
    existing_ca: Option<(&Path, &Path)>,
    not_after: Option<Ymd>,
) -> anyhow::Result<()> {
    if hosts.is_empty() {
        return Err(usage("--hosts needs at least one name or address"));
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let issuer = match existing_ca {
        Some((cert, key)) => {
            let cert_pem = std::fs::read_to_string(cert)
                .with_context(|| format!("cannot read {}", cert.display()))?;
            let key_pem = std::fs::read_to_string(key)
                .with_context(|| format!("cannot read {}", key.display()))?;
            let key = KeyPair::from_pem(&key_pem)
                .with_context(|| format!("{}: not a private key", key.display()))?;
            write(out, "ca.pem", &cert_pem, false)?;
            Issuer::from_ca_cert_pem(&cert_pem, key)
                .with_context(|| format!("{}: not a CA certificate", cert.display()))?
        }
        None => {
            let key = KeyPair::generate().context("cannot generate a key")?;
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name
                .push(DnType::CommonName, "strata development CA");
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let cert = p.self_signed(&key).context("cannot sign the CA")?;
            write(out, "ca.pem", &cert.pem(), false)?;
            write(out, "ca-key.pem", &key.serialize_pem(), true)?;
            Issuer::new(p, key)
        }
    };
    // Brokers are servers to clients and clients of each other.
    let broker = leaf(
        hosts,
        "strata-broker",
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        not_after,
    )?;
    let key = KeyPair::generate()?;
    let cert = broker.signed_by(&key, &issuer)?;
    write(out, "broker.pem", &cert.pem(), false)?;
    write(out, "broker-key.pem", &key.serialize_pem(), true)?;

    let client = leaf(
        &[client_name.to_owned()],
        client_name,
        vec![ExtendedKeyUsagePurpose::ClientAuth],
        not_after,
    )?;
    let key = KeyPair::generate()?;
    let cert = client.signed_by(&key, &issuer)?;
    write(out, "client.pem", &cert.pem(), false)?;
    write(out, "client-key.pem", &key.serialize_pem(), true)?;
    Ok(())
}
