//! A whole network on one machine, each participant its own process (`dtenge cluster`): the
//! layout on disk (the NBK's certificate authority, a folder per participant with its key, its
//! certificate and its configuration file) and the participants' start order.
//!
//! ```text
//! <dir>/ca/                    the NBK's root: ca.key.pem, ca.crt.pem, crl.pem, issued/
//! <dir>/<name>/config.toml     what `dtenge run --config` reads (crate::config)
//! <dir>/<name>/node.key.pem    its key; node.crt.pem, its certificate
//! <dir>/<name>/own.key.pem     a bank's own account's key
//! <dir>/<name>/data/           its store
//! <dir>/notary/                the notary's own key and certificate (node.key.pem, node.crt.pem),
//!                              which its replicas (notary-1, notary-2, notary-3) sign with
//! ```
//!
//! Every participant reads the one revocation list, `<dir>/ca/crl.pem`: `dtenge ca --dir
//! <dir>/ca revoke` reaches each within [`crate::REVOCATION_POLL_MS`]. Across machines each
//! gets its own copy of the list, as of its certificate and its peers'
//! (`deploy/` in the repository).

use crate::config::Config;
use dtenge_core::crypto::SecretKey;
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_pki::{CaDir, Subject};
use dtenge_wire::RoleId;
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The CA's folder in a cluster's directory.
pub const CA_DIR: &str = "ca";
/// A participant's configuration file in its folder.
pub const CONFIG_FILE: &str = "config.toml";
/// The API clients' credentials in a cluster's directory: a bank's systems
/// (`api-bank-<id>.key.pem`, `.crt.pem`) and an NBK operator's (`api-operator-nbk`).
pub const CLIENTS_DIR: &str = "clients";

/// The DNS name every participant's certificate carries on one machine.
pub const SERVER_NAME: &str = "localhost";

/// The notary's own folder in a cluster's directory: its key and certificate, held by each of
/// its replicas (no process runs there).
pub const NOTARY_DIR: &str = "notary";

/// A participant of the standard network, in start order: the directory first (a bank claims
/// its own account there at start), the notary's replicas, central, the oracle, then the banks.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its folder's name: `directory`, `notary-<n>`, `central`, `oracle`, or the bank's id.
    pub name: String,
    pub role: RoleId,
    /// A bank's display name and kind (`bank` or `treasury`).
    pub bank: Option<(String, &'static str)>,
}

/// The standard network: the NBK's roles (the notary as three replicas), three banks and the
/// Treasury.
pub fn standard() -> Vec<Member> {
    let role = |name: &str, role: RoleId| Member { name: name.into(), role, bank: None };
    let bank = |id: &str, name: &str, kind: &'static str| Member {
        name: id.into(),
        role: RoleId::Bank(id.into()),
        bank: Some((name.into(), kind)),
    };
    vec![
        role("directory", RoleId::Directory),
        role("notary-1", RoleId::NotaryReplica(1)),
        role("notary-2", RoleId::NotaryReplica(2)),
        role("notary-3", RoleId::NotaryReplica(3)),
        role("central", RoleId::Central),
        role("oracle", RoleId::Oracle),
        bank("steppe", "Steppe Bank", "bank"),
        bank("tulpar", "Tulpar Bank", "bank"),
        bank("sapa", "Sapa Bank", "bank"),
        bank("treasury", "Treasury", "treasury"),
    ]
}

/// The standard network with the notary sharded: its three replicas coordinate `shards`
/// shards of three replicas each (`notary-shard-<s>-<r>`), started after them.
pub fn standard_sharded(shards: u8) -> Vec<Member> {
    let mut members = standard();
    let after = members.iter().rposition(|m| matches!(m.role, RoleId::NotaryReplica(_))).map_or(0, |i| i + 1);
    let shard_members = (1..=shards).flat_map(|shard| {
        (1..=3u8).map(move |replica| Member {
            name: format!("notary-shard-{shard}-{replica}"),
            role: RoleId::NotaryShard { shard, replica },
            bank: None,
        })
    });
    members.splice(after..after, shard_members);
    members
}

/// The members of the network laid out under `dir`: the standard one, sharded if the layout
/// has shards' folders.
pub fn members(dir: &Path) -> Vec<Member> {
    let shards = (1..=dtenge_wire::message::NOTARY_SHARDS_MAX)
        .take_while(|shard| dir.join(format!("notary-shard-{shard}-1")).exists())
        .count();
    match u8::try_from(shards).unwrap_or(0) {
        0 => standard(),
        shards => standard_sharded(shards),
    }
}

/// Who talks to whom (see `crate::config`); a replica of the notary as the notary, and to the
/// other replicas; a shard's replicas to the notary's replicas and their fellows only.
fn talks_to(from: &RoleId, to: &RoleId) -> bool {
    let notary = |role: &RoleId| matches!(role, RoleId::Notary | RoleId::NotaryReplica(_));
    match (from, to) {
        (a, b) if a == b => false,
        (RoleId::NotaryShard { shard: a, .. }, RoleId::NotaryShard { shard: b, .. }) => a == b,
        (RoleId::NotaryShard { .. }, RoleId::NotaryReplica(_))
        | (RoleId::NotaryReplica(_), RoleId::NotaryShard { .. }) => true,
        (RoleId::NotaryShard { .. }, _) | (_, RoleId::NotaryShard { .. }) => false,
        (RoleId::NotaryReplica(_), RoleId::NotaryReplica(_)) => true,
        (RoleId::Bank(_), _) | (_, RoleId::Bank(_)) => true,
        (a, RoleId::Central) | (RoleId::Central, a) if notary(a) => true,
        // The oracle checks the notary's certificates and central's issues: it knows their
        // keys by their certificates.
        (RoleId::Oracle, b) | (b, RoleId::Oracle) if notary(b) || *b == RoleId::Central => true,
        // The oracle finds the parties a provider names at the directory.
        (RoleId::Oracle, RoleId::Directory) | (RoleId::Directory, RoleId::Oracle) => true,
        _ => false,
    }
}

/// Where each participant listens: its network address and its operations endpoint.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub listen: SocketAddr,
    pub ops: SocketAddr,
    /// A bank's and central's own API.
    pub api: Option<SocketAddr>,
}

/// A laid-out participant: its member entry, its configuration file and its addresses.
#[derive(Clone, Debug)]
pub struct Laid {
    pub member: Member,
    pub config: PathBuf,
    pub ports: Ports,
}

/// Lay out `members` under `dir` (which must not hold a cluster yet): the NBK's root, then per
/// participant a key from `seed`, a certificate for its role and its configuration file.
/// `ports(i)` is the i-th participant's addresses.
pub fn lay_out(
    dir: &Path,
    members: &[Member],
    ports: &mut dyn FnMut(usize) -> Ports,
    seed: &mut dyn FnMut() -> [u8; 32],
    now_s: i64,
) -> Result<Vec<Laid>> {
    let io = |what: &Path, e: std::io::Error| Error::new(ErrorCode::StorageFailure, format!("{}: {e}", what.display()));
    let ca_path = dir.join(CA_DIR);
    if ca_path.exists() {
        return Err(Error::new(ErrorCode::Conflict, format!("{} holds a cluster already", dir.display())));
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let ca = CaDir::init(&ca_path, SecretKey::from_seed(seed()), now_s).map_err(pki)?;
    let replicas: Vec<u8> = members
        .iter()
        .filter_map(|m| match m.role {
            RoleId::NotaryReplica(n) => Some(n),
            _ => None,
        })
        .collect();
    if !replicas.is_empty() {
        // The notary's own identity, which no process runs: its replicas sign with it.
        let folder = dir.join(NOTARY_DIR);
        std::fs::create_dir_all(&folder).map_err(|e| io(&folder, e))?;
        issue_identity(&ca, &folder, &RoleId::Notary, &SecretKey::from_seed(seed()), now_s)?;
    }
    let mut laid = Vec::with_capacity(members.len());
    let mut keys = Vec::with_capacity(members.len());
    for (i, member) in members.iter().enumerate() {
        let folder = dir.join(&member.name);
        std::fs::create_dir_all(&folder).map_err(|e| io(&folder, e))?;
        issue_identity(&ca, &folder, &member.role, &SecretKey::from_seed(seed()), now_s)?;
        let own = member.bank.as_ref().map(|_| SecretKey::from_seed(seed()));
        if let Some(own) = &own {
            dtenge_pki::write_atomically(&folder.join("own.key.pem"), dtenge_pki::key_to_pem(own).as_bytes(), true)
                .map_err(pki)?;
        }
        keys.push(own.map(|k| k.address()));
        laid.push(Laid { member: member.clone(), config: folder.join(CONFIG_FILE), ports: ports(i) });
    }
    let clients = dir.join(CLIENTS_DIR);
    std::fs::create_dir_all(&clients).map_err(|e| io(&clients, e))?;
    let mut api_clients = vec![dtenge_pki::ApiClient::Operator("nbk".into())];
    api_clients.extend(members.iter().filter_map(|m| match &m.role {
        RoleId::Bank(id) => Some(dtenge_pki::ApiClient::Bank(id.clone())),
        _ => None,
    }));
    for client in api_clients {
        let key = SecretKey::from_seed(seed());
        let cert = ca.issue(&Subject::Api(client.clone()), key.public_key(), &[], now_s).map_err(pki)?;
        let stem = clients.join(format!("api-{client}").replace(':', "-"));
        let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", stem.display()));
        dtenge_pki::write_atomically(&with(".key.pem"), dtenge_pki::key_to_pem(&key).as_bytes(), true).map_err(pki)?;
        dtenge_pki::write_atomically(&with(".crt.pem"), dtenge_pki::certificate_pem(&cert).as_bytes(), false)
            .map_err(pki)?;
    }
    let shards = members
        .iter()
        .filter_map(|m| match m.role {
            RoleId::NotaryShard { shard, .. } => Some(shard),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    for me in &laid {
        let text = config_text(me, &laid, &keys, &replicas, shards);
        dtenge_pki::write_atomically(&me.config, text.as_bytes(), false).map_err(pki)?;
    }
    // Every file written is read back as `dtenge run` will: a layout that does not load is
    // this function's mistake, found here rather than at the first start.
    for me in &laid {
        Config::load(&me.config, Some(&me.member.role)).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    }
    Ok(laid)
}

/// The participants laid out under `dir` before, read from their configuration files.
pub fn read(dir: &Path, members: &[Member]) -> Result<Vec<Laid>> {
    members
        .iter()
        .map(|member| {
            let path = dir.join(&member.name).join(CONFIG_FILE);
            let config = Config::load(&path, Some(&member.role)).map_err(|e| Error::malformed(e.to_string()))?;
            let ports = Ports { listen: config.listen, ops: config.ops, api: config.api };
            Ok(Laid { member: member.clone(), config: path, ports })
        })
        .collect()
}

/// `key` and a certificate for `role` in `folder` (node.key.pem, node.crt.pem).
fn issue_identity(ca: &CaDir, folder: &Path, role: &RoleId, key: &SecretKey, now_s: i64) -> Result<()> {
    let cert = ca.issue(&Subject::Role(role.clone()), key.public_key(), &[SERVER_NAME.into()], now_s).map_err(pki)?;
    dtenge_pki::write_atomically(&folder.join("node.key.pem"), dtenge_pki::key_to_pem(key).as_bytes(), true)
        .map_err(pki)?;
    dtenge_pki::write_atomically(&folder.join("node.crt.pem"), dtenge_pki::certificate_pem(&cert).as_bytes(), false)
        .map_err(pki)
}

fn config_text(
    me: &Laid,
    all: &[Laid],
    own_addresses: &[Option<dtenge_core::crypto::Address>],
    replicas: &[u8],
    shards: u8,
) -> String {
    let mut text = String::with_capacity(2_048);
    // Writing into a String cannot fail.
    let _ = writeln!(text, "# {} of a dtenge cluster (`dtenge cluster`).", me.member.role);
    let _ = writeln!(text, "role = \"{}\"", me.member.role);
    let _ = writeln!(text, "data = \"data\"");
    let _ = writeln!(text, "listen = \"{}\"", me.ports.listen);
    let _ = writeln!(text, "ops = \"{}\"", me.ports.ops);
    if let (Some(api), RoleId::Bank(_) | RoleId::Central | RoleId::Oracle) = (me.ports.api, &me.member.role) {
        let _ = writeln!(text, "api = \"{api}\"");
    }
    let _ = writeln!(text, "# A sandbox: deposits and correspondent credits stand in for core banking and the RTGS.");
    let _ = writeln!(text, "sandbox = true");
    let _ = writeln!(text, "\n[identity]");
    let _ = writeln!(text, "key = \"node.key.pem\"");
    let _ = writeln!(text, "certificate = \"node.crt.pem\"");
    let _ = writeln!(text, "root = \"../{CA_DIR}/{}\"", dtenge_pki::CA_CERT_FILE);
    let _ = writeln!(text, "revocation_list = \"../{CA_DIR}/{}\"", dtenge_pki::CRL_FILE);
    if let Some((name, kind)) = &me.member.bank {
        let _ = writeln!(text, "\n[bank]");
        let _ = writeln!(text, "name = \"{name}\"");
        let _ = writeln!(text, "kind = \"{kind}\"");
        let _ = writeln!(text, "own_key = \"own.key.pem\"");
    }
    let i_am_replica = matches!(me.member.role, RoleId::NotaryReplica(_) | RoleId::NotaryShard { .. });
    if let RoleId::NotaryReplica(_) = me.member.role {
        let _ = writeln!(text, "\n[notary]");
        let _ = writeln!(text, "key = \"../{NOTARY_DIR}/node.key.pem\"");
        let _ = writeln!(text, "certificate = \"../{NOTARY_DIR}/node.crt.pem\"");
        let _ = writeln!(text, "replicas = {replicas:?}");
        if shards > 0 {
            let _ = writeln!(text, "shards = {shards}");
        }
    }
    if let RoleId::NotaryShard { .. } = me.member.role {
        let _ = writeln!(text, "\n[shard]");
        let _ = writeln!(text, "replicas = [1, 2, 3]");
    }
    let mut notary_listed = false;
    for (peer, own) in all.iter().zip(own_addresses) {
        if !talks_to(&me.member.role, &peer.member.role) {
            continue;
        }
        if !i_am_replica && matches!(peer.member.role, RoleId::NotaryReplica(_)) {
            // One peer, the notary, answering at each of its replicas.
            if !notary_listed {
                notary_listed = true;
                let mut places = all.iter().filter(|l| matches!(l.member.role, RoleId::NotaryReplica(_)));
                let first = places.next().expect("this replica among them");
                let _ = writeln!(text, "\n[[peers]]");
                let _ = writeln!(text, "role = \"notary\"");
                let _ = writeln!(text, "address = \"{}\"", first.ports.listen);
                let _ = writeln!(text, "server_name = \"{SERVER_NAME}\"");
                let _ = writeln!(text, "certificate = \"../{NOTARY_DIR}/node.crt.pem\"");
                let alternates: Vec<String> = places
                    .map(|l| format!("{{ address = \"{}\", server_name = \"{SERVER_NAME}\" }}", l.ports.listen))
                    .collect();
                let _ = writeln!(text, "alternates = [{}]", alternates.join(", "));
            }
            continue;
        }
        let _ = writeln!(text, "\n[[peers]]");
        let _ = writeln!(text, "role = \"{}\"", peer.member.role);
        let _ = writeln!(text, "address = \"{}\"", peer.ports.listen);
        let _ = writeln!(text, "server_name = \"{SERVER_NAME}\"");
        let _ = writeln!(text, "certificate = \"../{}/node.crt.pem\"", peer.member.name);
        if let (RoleId::Central, Some(own)) = (&me.member.role, own) {
            let _ = writeln!(text, "own_address = \"{}\"", hex::encode(own.0 .0));
        }
    }
    text
}

fn pki(e: dtenge_pki::PkiError) -> Error {
    Error::new(ErrorCode::Internal, format!("the certificate authority: {e}"))
}
