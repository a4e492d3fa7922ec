//! `dtenge ca`: the NBK's certificate authority on the command line. The directory and the
//! certificates are `dtenge_pki`'s; this module reads the system clock and the operating
//! system's entropy for it, writes a participant's files and prints what was done.

use clap::Subcommand;
use dtenge_core::calendar::Date;
use dtenge_core::crypto::{Hash32, PublicKey, SecretKey, SigAlg};
use dtenge_env::Entropy;
use dtenge_pki::{ApiClient, CaDir, Listed, Reason, Subject, CA_CERT_FILE, CA_KEY_FILE, CRL_FILE};
use dtenge_wire::RoleId;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where `issue` writes a participant's files unless `--out` says otherwise, in the CA
/// directory.
pub const PARTICIPANTS_DIR: &str = "participants";

/// The DNS name a certificate carries when the operator gives none: every role on one machine.
const DEFAULT_DNS_NAME: &str = "localhost";

const SECONDS_PER_DAY: i64 = 86_400;

#[derive(Subcommand)]
pub enum CaCommand {
    /// Create the root: its Ed25519 key (from the operating system's entropy, readable by its
    /// owner only), its self-signed certificate and an empty revocation list. Refuses a
    /// directory that already holds a certificate authority.
    Init,
    /// Certify a participant's key for its role, or an API client's (a bank's systems, an NBK
    /// operator). Without --public-key, generates the key and writes `<name>.key.pem` (owner
    /// only) beside `<name>.crt.pem`, where the name is the role with ':' replaced by '-'
    /// (`bank-bank-a`), or `api-` and the client (`api-bank-steppe`); the root (`ca.crt.pem`)
    /// and the current revocation list (`crl.pem`) are copied beside them, so the folder is all
    /// the participant needs.
    #[command(group(clap::ArgGroup::new("subject").required(true).args(["role", "api_client", "gateway"])))]
    Issue {
        /// The participant's role: central, notary, oracle, directory or bank:<id>.
        #[arg(long)]
        role: Option<RoleId>,
        /// Or an API client of the REST gateway: bank:<node> (that node's systems),
        /// operator:<name> (an NBK operator) or provider:<id> (an oracle provider).
        #[arg(long, value_name = "CLIENT")]
        api_client: Option<ApiClient>,
        /// Or a REST gateway's TLS server certificate, by the gateway's name (with its --dns
        /// names and IP addresses).
        #[arg(long, value_name = "NAME")]
        gateway: Option<String>,
        /// A DNS name the participant is reached at; repeat for several. Default: localhost.
        #[arg(long = "dns", value_name = "NAME")]
        dns_names: Vec<String>,
        /// The folder to write to. Default: `participants/` in the CA directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The participant's own Ed25519 public key, 64 hex characters, when it generated the
        /// key itself (e.g. in an HSM): no key is generated or written.
        #[arg(long, value_name = "HEX", value_parser = parse_public_key)]
        public_key: Option<PublicKey>,
    },
    /// Revoke a certificate by its serial: a new revocation list, numbered one past the
    /// current one, to give to every participant.
    Revoke {
        /// The certificate's serial (`dtenge ca list` shows them).
        #[arg(long)]
        serial: u64,
        /// Why: unspecified, key-compromise, affiliation-changed, superseded or
        /// cessation-of-operation.
        #[arg(long, default_value = "unspecified")]
        reason: Reason,
    },
    /// Sign the revocation list again (the same revocations, a new number, current for
    /// another week): run it before the current list's next update.
    Crl {
        /// Also write the list (PEM) here.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List every certificate issued: serial, role, expiry, DNS names and whether it is
    /// revoked.
    List,
}

/// Run `dtenge ca <command>` on the CA directory `dir`.
pub fn run(dir: &Path, command: CaCommand) -> Result<ExitCode, String> {
    let now_s = now_s()?;
    match command {
        CaCommand::Init => init(dir, now_s),
        CaCommand::Issue { role, api_client, gateway, dns_names, out, public_key } => {
            let subject = match (role, api_client, gateway) {
                (Some(role), _, _) => Subject::Role(role),
                (None, Some(client), _) => Subject::Api(client),
                (None, None, Some(name)) => Subject::Gateway(name),
                // clap's group requires one of the three.
                (None, None, None) => return Err("give --role, --api-client or --gateway".into()),
            };
            issue(dir, &subject, dns_names, out, public_key, now_s)
        }
        CaCommand::Revoke { serial, reason } => revoke(dir, serial, reason, now_s),
        CaCommand::Crl { out } => crl(dir, out, now_s),
        CaCommand::List => list(dir, now_s),
    }?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn now_s() -> Result<i64, String> {
    let since_epoch =
        SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| format!("the system clock is before 1970: {e}"))?;
    i64::try_from(since_epoch.as_secs()).map_err(|_| "the system clock is out of range".to_string())
}

/// `--public-key`: 64 hex characters.
fn parse_public_key(text: &str) -> Result<PublicKey, String> {
    let text = text.trim();
    if text.len() != Hash32::LEN * 2 {
        return Err(format!(
            "an Ed25519 public key is {} hex characters, not {}",
            Hash32::LEN * 2,
            text.chars().count()
        ));
    }
    let key = Hash32::from_hex(text).map_err(|e| e.to_string())?;
    Ok(PublicKey { alg: SigAlg::Ed25519, key })
}

fn open(dir: &Path) -> Result<CaDir, String> {
    CaDir::open(dir).map_err(|e| e.to_string())
}

/// A time as ISO 8601 in UTC.
fn utc(unix_s: i64) -> String {
    let date = Date::from_days(unix_s.div_euclid(SECONDS_PER_DAY));
    let second_of_day = unix_s.rem_euclid(SECONDS_PER_DAY);
    format!("{date}T{:02}:{:02}:{:02}Z", second_of_day / 3_600, second_of_day / 60 % 60, second_of_day % 60)
}

fn failed(path: &Path) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// Write `bytes` to `path` whole (`dtenge_pki::write_atomically`).
fn write_file(path: &Path, bytes: &[u8], owner_only: bool) -> Result<(), String> {
    dtenge_pki::write_atomically(path, bytes, owner_only).map_err(|e| e.to_string())
}

fn init(dir: &Path, now_s: i64) -> Result<(), String> {
    let key = SecretKey::from_seed(Entropy::from_os().seed32());
    let ca = CaDir::init(dir, key, now_s).map_err(|e| e.to_string())?;
    println!("a new certificate authority in {}", ca.path().display());
    println!("  root certificate  {}   (every participant trusts it)", dir.join(CA_CERT_FILE).display());
    println!(
        "  root key          {}   (owner only: whoever holds it can certify any role)",
        dir.join(CA_KEY_FILE).display()
    );
    println!("  revocation list   {}   (number 1, empty)", dir.join(CRL_FILE).display());
    Ok(())
}

fn issue(
    dir: &Path,
    subject: &Subject,
    mut dns_names: Vec<String>,
    out: Option<PathBuf>,
    public_key: Option<PublicKey>,
    now_s: i64,
) -> Result<(), String> {
    let ca = open(dir)?;
    if dns_names.is_empty() {
        dns_names.push(DEFAULT_DNS_NAME.to_string());
    }
    let out = out.unwrap_or_else(|| dir.join(PARTICIPANTS_DIR));
    // Before the certificate is issued: an unwritable folder then costs no serial.
    fs::create_dir_all(&out).map_err(failed(&out))?;
    let (key, secret) = match public_key {
        Some(key) => (key, None),
        None => {
            let secret = SecretKey::from_seed(Entropy::from_os().seed32());
            (secret.public_key(), Some(secret))
        }
    };
    // `issue` refuses a bank id that could leave `out` (`bank:../x`) before anything is
    // written, so the name made from the role below is a plain file name.
    let der = ca.issue(subject, key, &dns_names, now_s).map_err(|e| e.to_string())?;
    let certified = dtenge_pki::read_certificate(&der).map_err(|e| e.to_string())?;
    let serial = certified.serial;
    let name = match subject {
        Subject::Role(role) => role.to_string().replace(':', "-"),
        Subject::Api(client) => dtenge_api::access::credentials_stem(client),
        Subject::Gateway(name) => format!("gateway-{name}"),
    };
    let cert_path = out.join(format!("{name}.crt.pem"));
    let key_path = out.join(format!("{name}.key.pem"));
    let root_path = out.join(CA_CERT_FILE);
    let crl_path = out.join(CRL_FILE);
    // The key exists nowhere else: if it cannot be written, the certificate for it is useless
    // and should not stay valid.
    if let Some(secret) = &secret {
        write_file(&key_path, dtenge_pki::key_to_pem(secret).as_bytes(), true).map_err(|e| {
            format!("certificate {serial} was issued but its key was not saved ({e}): revoke it with `dtenge ca revoke --serial {serial}`")
        })?;
    }
    write_file(&cert_path, dtenge_pki::certificate_pem(&der).as_bytes(), false)
        .map_err(|e| format!("certificate {serial} was issued (a copy is in the CA's issued/) but {e}"))?;
    write_file(&root_path, dtenge_pki::certificate_pem(ca.cert_der()).as_bytes(), false)?;
    let crl = ca.revocation_list_der().map_err(|e| e.to_string())?;
    write_file(&crl_path, dtenge_pki::revocation_list_pem(&crl).as_bytes(), false)?;

    println!("issued certificate serial {serial} for {subject}");
    println!("  DNS names         {}", certified.dns_names.join(", "));
    println!("  valid until       {}", utc(certified.not_after_s));
    println!("  public key        {}", certified.key.key);
    println!("  certificate       {}", cert_path.display());
    if secret.is_some() {
        println!("  key               {}   (owner only)", key_path.display());
    }
    println!("  root certificate  {}", root_path.display());
    println!("  revocation list   {}", crl_path.display());
    Ok(())
}

fn revoke(dir: &Path, serial: u64, reason: Reason, now_s: i64) -> Result<(), String> {
    let ca = open(dir)?;
    let before = ca.revocation_list().map_err(|e| e.to_string())?;
    let der = ca.revoke(serial, reason, now_s).map_err(|e| e.to_string())?;
    let after = dtenge_pki::read_revocation_list(&der).map_err(|e| e.to_string())?;
    let path = dir.join(CRL_FILE);
    match before.revoked.get(&serial) {
        // Revoking twice changes nothing (the library keeps the first revocation): say so
        // rather than print a number the participants already have.
        Some(earlier) => println!(
            "certificate {serial} was already revoked ({} at {}); revocation list {} unchanged: {}",
            earlier.reason.name(),
            utc(earlier.at_s),
            after.number,
            path.display()
        ),
        None => {
            println!("revoked certificate {serial} ({})", reason.name());
            println!("revocation list number {}: {}", after.number, path.display());
            println!("give it to every participant: until then they still accept certificate {serial}");
        }
    }
    Ok(())
}

fn crl(dir: &Path, out: Option<PathBuf>, now_s: i64) -> Result<(), String> {
    let ca = open(dir)?;
    let der = ca.renew_revocation_list(now_s).map_err(|e| e.to_string())?;
    let list = dtenge_pki::read_revocation_list(&der).map_err(|e| e.to_string())?;
    let path = match out {
        Some(out) => {
            write_file(&out, dtenge_pki::revocation_list_pem(&der).as_bytes(), false)?;
            out
        }
        None => dir.join(CRL_FILE),
    };
    println!(
        "revocation list number {}: {} revoked, current until {}",
        list.number,
        list.revoked.len(),
        list.next_update_s.map_or_else(|| "no next update".to_string(), utc)
    );
    println!("{}", path.display());
    Ok(())
}

fn status(listed: &Listed, now_s: i64) -> String {
    match listed.revoked {
        Some(revocation) => format!("revoked {} at {}", revocation.reason.name(), utc(revocation.at_s)),
        None if listed.certified.not_after_s < now_s => "expired".to_string(),
        None => "valid".to_string(),
    }
}

fn list(dir: &Path, now_s: i64) -> Result<(), String> {
    let ca = open(dir)?;
    let listed = ca.list().map_err(|e| e.to_string())?;
    let revocations = ca.revocation_list().map_err(|e| e.to_string())?;
    if listed.is_empty() {
        println!("no certificates issued yet in {}", dir.display());
    } else {
        let header = ["SERIAL", "SUBJECT", "NOT AFTER (UTC)", "DNS NAMES", "STATUS"];
        let rows: Vec<[String; 5]> = listed
            .iter()
            .map(|l| {
                [
                    l.certified.serial.to_string(),
                    l.certified.subject.to_string(),
                    utc(l.certified.not_after_s),
                    l.certified.dns_names.join(","),
                    status(l, now_s),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let print_row = |cells: [&str; 5]| {
            let line = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect::<Vec<_>>();
            println!("{}", line.join("  ").trim_end());
        };
        print_row(header);
        for row in &rows {
            print_row(row.each_ref().map(String::as_str));
        }
    }
    let stale = revocations.next_update_s.is_some_and(|next| next < now_s);
    println!(
        "revocation list number {}, current until {}{}",
        revocations.number,
        revocations.next_update_s.map_or_else(|| "no next update".to_string(), utc),
        if stale { ": OUT OF DATE, run `dtenge ca crl`" } else { "" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_are_iso_8601() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_796_000_000), "2026-11-30T00:53:20Z");
        assert_eq!(utc(951_782_400 + 86_399), "2000-02-29T23:59:59Z");
    }

    #[test]
    fn a_public_key_is_64_hex_characters() {
        let key = SecretKey::from_seed([5; 32]).public_key();
        assert_eq!(parse_public_key(&key.key.to_hex()), Ok(key));
        assert!(parse_public_key("abcd").is_err());
        assert!(parse_public_key(&"zz".repeat(32)).is_err());
    }
}
