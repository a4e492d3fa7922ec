//! The five-organization example in `deploy/` is a valid configuration: each file, installed
//! with its keys in the vault of its data directory (the encrypted key store here) and the
//! certificates the NBK would issue for them, loads as `dtenge run` loads it; a key in a file,
//! in the clear, is refused outside a sandbox.

use dtenge_core::crypto::SecretKey;
use dtenge_pki::{Authority, Issue, Subject};
use dtenge_process::Config;
use dtenge_wire::RoleId;
use std::path::{Path, PathBuf};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Every `deploy/<organization>/<participant>/config.toml`.
fn configs() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for org in std::fs::read_dir(deploy_dir()).unwrap() {
        let org = org.unwrap().path();
        if !org.is_dir() {
            continue;
        }
        for participant in std::fs::read_dir(&org).unwrap() {
            let config = participant.unwrap().path().join("config.toml");
            if config.exists() {
                found.push(config);
            }
        }
    }
    found.sort();
    found
}

/// `key = value` of a TOML line, unquoted.
fn value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.trim().strip_prefix(key)?.trim_start().strip_prefix('=')?.trim();
    Some(rest.trim_matches('"'))
}

#[test]
fn the_five_organizations_example_loads() {
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - 60;
    let root = Authority::create(SecretKey::from_seed([1; 32]), now_s).unwrap();
    let crl = dtenge_pki::revocation_list_pem(&root.revocation_list(1, &[], now_s).unwrap());
    let configs = configs();
    assert_eq!(
        configs.len(),
        10,
        "the NBK's participants (the notary as three replicas), three banks and the Treasury"
    );
    // The notary's own key and certificate, which its three replicas hold and sign with.
    let notary_key = SecretKey::from_seed([77; 32]);
    let notary_cert = root
        .issue(&Issue {
            subject: &Subject::Role(RoleId::Notary),
            key: notary_key.public_key(),
            dns_names: &["notary.nbk.dtenge.example".into()],
            serial: 100,
            now_s,
            validity_days: 1,
        })
        .unwrap();
    // The vaults: the encrypted key store under this passphrase (this binary's one test sets
    // it), in each participant's data directory, where `dtenge key` would make the keys.
    std::env::set_var(dtenge_keys::PASSPHRASE_ENV, "deploy example passphrase");
    let installed = tempfile::tempdir().unwrap();
    let entropy = dtenge_env::Entropy::from_seed(1);
    let keys = dtenge_keys::KeyConfig::from_env(false, &entropy).unwrap();
    // Each participant's key and certificate, for the name its peers dial it by.
    let mut issued = std::collections::BTreeMap::new();
    for (serial, config) in configs.iter().enumerate() {
        let text = std::fs::read_to_string(config).unwrap();
        let role: RoleId = text.lines().find_map(|l| value(l, "role")).unwrap().parse().unwrap();
        let folder = config.parent().unwrap().file_name().unwrap().to_string_lossy().to_string();
        let host = text.lines().next().unwrap().rsplit(" on ").next().unwrap().trim_end_matches('.').to_string();
        let vault = dtenge_keys::Vault::open(&installed.path().join(&folder).join("data"), &keys).unwrap();
        let key = vault.node_key("node", &entropy).unwrap();
        if matches!(role, RoleId::NotaryReplica(_)) {
            vault.import_node_key("notary", &notary_key).unwrap();
        }
        let cert = root
            .issue(&Issue {
                subject: &Subject::Role(role.clone()),
                key: key.public_key(),
                dns_names: &[host],
                serial: serial as u64 + 2,
                now_s,
                validity_days: 1,
            })
            .unwrap();
        issued.insert(folder, (role, key, cert, config.clone()));
    }
    for (folder, (role, _, cert, config)) in &issued {
        let at = installed.path().join(folder);
        std::fs::create_dir_all(at.join("peers")).unwrap();
        // Installed with its data directory here rather than under /var/lib/dtenge.
        let text = std::fs::read_to_string(config).unwrap();
        let text: String = text
            .lines()
            .map(|line| if value(line, "data").is_some() { "data = \"data\"".to_string() } else { line.to_string() })
            .map(|line| line + "\n")
            .collect();
        std::fs::write(at.join("config.toml"), &text).unwrap();
        std::fs::write(at.join("node.crt.pem"), dtenge_pki::certificate_pem(cert)).unwrap();
        std::fs::write(at.join("ca.crt.pem"), dtenge_pki::certificate_pem(root.cert_der())).unwrap();
        std::fs::write(at.join("crl.pem"), &crl).unwrap();
        std::fs::write(at.join("peers/notary.crt.pem"), dtenge_pki::certificate_pem(&notary_cert)).unwrap();
        for (peer, (_, _, peer_cert, _)) in &issued {
            std::fs::write(at.join("peers").join(format!("{peer}.crt.pem")), dtenge_pki::certificate_pem(peer_cert))
                .unwrap();
        }
        let loaded = Config::load(&at.join("config.toml"), Some(role)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.role, *role);
        assert_eq!(loaded.key.public_key(), issued[folder].1.public_key(), "the vault's key signs");
        // The same file with its key in a PEM file, in the clear: refused outside a sandbox.
        std::fs::write(at.join("node.key.pem"), dtenge_pki::key_to_pem(&SecretKey::from_seed([3; 32]))).unwrap();
        std::fs::write(at.join("clear.toml"), text.replace("key = \"vault:node\"", "key = \"node.key.pem\"")).unwrap();
        let refused = Config::load(&at.join("clear.toml"), Some(role)).err().expect("a key in the clear is refused");
        assert!(refused.to_string().contains("for a sandbox only"), "{refused}");
        let role_env = std::fs::read_to_string(config.parent().unwrap().join("role.env")).unwrap();
        assert_eq!(role_env.trim(), format!("ROLE={role}"), "{folder}/role.env names its role");
    }
}
