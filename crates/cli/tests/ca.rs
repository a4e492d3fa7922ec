//! `dtenge ca`, the real binary, on a CA directory in a temporary folder: the root is made
//! once and never replaced, a participant's folder holds what it needs (its key readable by
//! its owner only), a participant's own key is certified without a key file, revocations show
//! in the list, and mistakes (an unknown serial, a role that is none, a bank id that would
//! escape the folder) fail with a message and a non-zero exit.

use dtenge_core::crypto::SecretKey;
use dtenge_pki::{key_from_pem, pem_contents, read_certificate, read_revocation_list, Certified};
use dtenge_wire::RoleId;
use std::path::Path;
use std::process::{Command, Output};

/// `dtenge ca <args> --dir <dir>`.
fn ca(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dtenge")).arg("ca").args(args).arg("--dir").arg(dir).output().expect("run dtenge")
}

/// Its stdout, after checking that it succeeded.
fn succeeds(args: &[&str], output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "dtenge ca {args:?} failed ({}):\n{stdout}\n{stderr}", output.status);
    stdout
}

/// Its stderr, after checking that it failed.
fn fails(args: &[&str], output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "dtenge ca {args:?} succeeded:\n{stdout}\n{stderr}");
    assert!(!stderr.trim().is_empty(), "dtenge ca {args:?} failed without a message");
    stderr
}

fn run_ok(dir: &Path, args: &[&str]) -> String {
    succeeds(args, ca(dir, args))
}

fn run_err(dir: &Path, args: &[&str]) -> String {
    fails(args, ca(dir, args))
}

fn certificate(path: &Path) -> Certified {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    read_certificate(&pem_contents(&text, "CERTIFICATE").expect("a PEM certificate"))
        .expect("a participant's certificate")
}

/// The line of `dtenge ca list` for `serial`.
fn listed(list: &str, serial: u64) -> &str {
    list.lines()
        .find(|line| line.split_whitespace().next() == Some(&serial.to_string()))
        .unwrap_or_else(|| panic!("no serial {serial} in\n{list}"))
}

#[test]
fn the_ca_command_issues_revokes_and_lists_participants_certificates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ca");

    let message = run_err(&dir, &["list"]);
    assert!(message.contains("dtenge ca init"), "{message}");

    let printed = run_ok(&dir, &["init"]);
    assert!(printed.contains(&dir.join("ca.crt.pem").display().to_string()), "{printed}");
    let root = std::fs::read(dir.join("ca.crt.pem")).expect("the root certificate");
    let message = run_err(&dir, &["init"]);
    assert!(message.contains("already holds a certificate authority"), "{message}");
    assert_eq!(std::fs::read(dir.join("ca.crt.pem")).expect("the root certificate"), root, "the root is kept");

    // A generated key: the participant's folder is self-contained.
    let printed = run_ok(&dir, &["issue", "--role", "bank:bank-a"]);
    let out = dir.join("participants");
    let (cert_path, key_path) = (out.join("bank-bank-a.crt.pem"), out.join("bank-bank-a.key.pem"));
    for path in [&cert_path, &key_path] {
        assert!(printed.contains(&path.display().to_string()), "{printed}");
    }
    assert!(printed.contains("serial 2") && printed.contains("bank:bank-a"), "{printed}");
    assert_eq!(std::fs::read(out.join("ca.crt.pem")).expect("the root's copy"), root);
    let crl = std::fs::read_to_string(out.join("crl.pem")).expect("the revocation list's copy");
    assert_eq!(read_revocation_list(&pem_contents(&crl, "X509 CRL").expect("a PEM list")).expect("a list").number, 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).expect("the key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is its owner's only");
    }
    let key = key_from_pem(&std::fs::read_to_string(&key_path).expect("the key")).expect("a PEM key");
    let bank = certificate(&cert_path);
    assert_eq!(bank.role(), Some(&RoleId::Bank("bank-a".into())));
    assert_eq!(bank.serial, 2);
    assert_eq!(bank.key, key.public_key(), "the certificate certifies the key beside it");
    assert_eq!(bank.dns_names, vec!["localhost".to_string()]);

    // The participant's own key (an HSM's): only its certificate is written, no key.
    let own = SecretKey::from_seed([7; 32]).public_key();
    let notary_out = tmp.path().join("notary");
    let args = [
        "issue",
        "--role",
        "notary",
        "--public-key",
        &own.key.to_hex(),
        "--dns",
        "notary.nbk.kz",
        "--dns",
        "localhost",
        "--out",
        notary_out.to_str().expect("a UTF-8 path"),
    ];
    run_ok(&dir, &args);
    let notary = certificate(&notary_out.join("notary.crt.pem"));
    assert_eq!((notary.role().cloned(), notary.serial, notary.key), (Some(RoleId::Notary), 3, own));
    assert_eq!(notary.dns_names, vec!["notary.nbk.kz".to_string(), "localhost".to_string()]);
    assert!(!notary_out.join("notary.key.pem").exists(), "no key is written for a key the CA never had");
    let message = run_err(&dir, &["issue", "--role", "oracle", "--public-key", "abcd"]);
    assert!(message.contains("--public-key"), "{message}");

    // Revocation, and the list.
    let printed = run_ok(&dir, &["revoke", "--serial", "2", "--reason", "key-compromise"]);
    assert!(printed.contains("revocation list number 2"), "{printed}");
    let printed = run_ok(&dir, &["revoke", "--serial", "2"]);
    assert!(printed.contains("already revoked"), "{printed}");
    let message = run_err(&dir, &["revoke", "--serial", "999"]);
    assert!(message.contains("999"), "{message}");
    let message = run_err(&dir, &["revoke", "--serial", "3", "--reason", "boredom"]);
    assert!(message.contains("boredom"), "{message}");
    // `--dir` is the `ca` command's: it may come before the subcommand as well.
    let list = succeeds(&["--dir", "list"], {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dtenge"));
        command.arg("ca").arg("--dir").arg(&dir).arg("list").output().expect("run dtenge")
    });
    let revoked = listed(&list, 2);
    assert!(revoked.contains("bank:bank-a") && revoked.contains("revoked key-compromise at"), "{list}");
    let valid = listed(&list, 3);
    assert!(valid.contains("notary") && valid.contains("notary.nbk.kz") && valid.ends_with("valid"), "{list}");

    // Roles that are none, or would leave the folder: refused, nothing issued or written.
    let files = |dir: &Path| {
        let mut names: Vec<_> =
            std::fs::read_dir(dir).expect("a folder").map(|e| e.expect("an entry").file_name()).collect();
        names.sort();
        names
    };
    let (ca_files, participant_files) = (files(&dir), files(&out));
    let message = run_err(&dir, &["issue", "--role", "bank:../x"]);
    assert!(message.contains("../x"), "{message}");
    assert_eq!((files(&dir), files(&out)), (ca_files, participant_files), "nothing written");
    let message = run_err(&dir, &["issue", "--role", "teller"]);
    assert!(message.contains("teller"), "{message}");
    let list = run_ok(&dir, &["list"]);
    assert!(!list.lines().any(|line| line.starts_with('4')), "no serial was spent:\n{list}");

    // A renewed list: the same revocations under the next number.
    let renewed = tmp.path().join("renewed.crl.pem");
    let printed = run_ok(&dir, &["crl", "--out", renewed.to_str().expect("a UTF-8 path")]);
    assert!(printed.contains(&renewed.display().to_string()), "{printed}");
    let text = std::fs::read_to_string(&renewed).expect("the renewed list");
    let list = read_revocation_list(&pem_contents(&text, "X509 CRL").expect("a PEM list")).expect("a list");
    assert_eq!(list.number, 3);
    assert!(list.is_revoked(2) && !list.is_revoked(3));
    let printed = run_ok(&dir, &["crl"]);
    assert!(
        printed.contains("revocation list number 4") && printed.contains(&dir.join("crl.pem").display().to_string())
    );

    // An API client of the REST gateway: a bank's systems.
    let printed = run_ok(&dir, &["issue", "--api-client", "bank:steppe", "--out", out.to_str().expect("UTF-8")]);
    assert!(printed.contains("api:bank:steppe"), "{printed}");
    let client = certificate(&out.join("api-bank-steppe.crt.pem"));
    assert_eq!(client.subject, dtenge_pki::Subject::Api(dtenge_pki::ApiClient::Bank("steppe".into())));
    assert!(out.join("api-bank-steppe.key.pem").exists());
    let message = run_err(&dir, &["issue", "--api-client", "teller:x"]);
    assert!(message.contains("teller"), "{message}");
    let message = run_err(&dir, &["issue"]);
    assert!(message.contains("--role") || message.contains("--api-client"), "{message}");
}
