//! A participant's configuration file: what `dtenge cluster` lays out loads, and an invalid
//! file is refused at start with the file and what is wrong in it.

use dtenge_process::cluster::{self, Laid, Ports};
use dtenge_process::Config;
use dtenge_wire::RoleId;
use std::path::Path;

fn lay_out(dir: &Path) -> Vec<Laid> {
    lay_out_members(dir, &cluster::standard(), 20_000)
}

/// `members` laid out under `dir`, on ports from `first_port` (nothing listens: files only).
fn lay_out_members(dir: &Path, members: &[cluster::Member], first_port: u16) -> Vec<Laid> {
    let mut port = first_port;
    let mut ports = |_| {
        port += 3;
        let at = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
        Ports { listen: at(port), ops: at(port + 1), api: Some(at(port + 2)) }
    };
    let mut n = 0u8;
    let mut seed = || {
        n += 1;
        [n; 32]
    };
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    cluster::lay_out(dir, members, &mut ports, &mut seed, now_s).unwrap()
}

/// A change to a file's text.
type Edit = Box<dyn Fn(&str) -> String>;

/// Load `name`'s file after `edit`; the error's text.
fn refused(laid: &[Laid], name: &str, edit: impl Fn(&str) -> String) -> String {
    let member = laid.iter().find(|l| l.member.name == name).unwrap();
    let original = std::fs::read_to_string(&member.config).unwrap();
    std::fs::write(&member.config, edit(&original)).unwrap();
    let result = Config::load(&member.config, Some(&member.member.role));
    std::fs::write(&member.config, original).unwrap();
    let error = result.err().expect("refused").to_string();
    assert!(error.starts_with(&member.config.display().to_string()), "the error names the file: {error}");
    error
}

#[test]
fn every_laid_out_file_loads_with_its_peers_keys() {
    let dir = tempfile::tempdir().unwrap();
    let laid = lay_out(dir.path());
    assert_eq!(laid.len(), 10);
    for member in &laid {
        let config = Config::load(&member.config, Some(&member.member.role)).unwrap();
        assert_eq!(config.role, member.member.role);
        assert_eq!(config.listen, member.ports.listen);
        match &config.role {
            RoleId::Bank(_) => {
                assert!(config.bank.is_some());
                // A bank talks to every other participant but itself.
                assert_eq!(config.peers.len(), 7);
            }
            // The banks, and the oracle, which finds the parties its providers name.
            RoleId::Directory => {
                assert!(config.peers.iter().all(|p| matches!(p.role, RoleId::Bank(_) | RoleId::Oracle)))
            }
            RoleId::NotaryReplica(n) => {
                let notary = config.notary.as_ref().expect("a replica's [notary]");
                assert_eq!(notary.replicas, vec![1, 2, 3]);
                let others = config.peers.iter().filter(|p| matches!(p.role, RoleId::NotaryReplica(_))).count();
                assert_eq!(others, 2, "replica {n} talks to the other two");
            }
            _ => assert!(config.bank.is_none()),
        }
        // Everyone else knows the notary as one peer, at its three replicas.
        if let Some(notary) = config.peers.iter().find(|p| p.role == RoleId::Notary) {
            assert_eq!(notary.alternates.len(), 2, "{}", config.role);
        }
        if config.role == RoleId::Central {
            assert!(config.peers.iter().filter(|p| matches!(p.role, RoleId::Bank(_))).all(|p| p.own_address.is_some()));
        }
    }
    // The API clients' credentials are laid out beside them.
    for client in ["api-operator-nbk", "api-bank-steppe", "api-bank-treasury"] {
        assert!(dir.path().join(cluster::CLIENTS_DIR).join(format!("{client}.crt.pem")).exists());
    }
    // Laid out once: a second lay-out over it is refused.
    let mut ports = |_| unreachable!();
    let mut seed = || [0; 32];
    assert!(cluster::lay_out(dir.path(), &cluster::standard(), &mut ports, &mut seed, 0).is_err());
}

#[test]
fn a_sharded_layout_loads_and_each_shard_talks_to_its_coordinator_and_its_fellows_only() {
    let dir = tempfile::tempdir().unwrap();
    let laid = lay_out_members(dir.path(), &cluster::standard_sharded(2), 21_000);
    assert_eq!(laid.len(), 16);
    assert_eq!(cluster::members(dir.path()).len(), 16, "the layout tells it is sharded");
    for member in &laid {
        let config = Config::load(&member.config, Some(&member.member.role)).unwrap();
        match &config.role {
            RoleId::NotaryShard { shard, .. } => {
                assert_eq!(config.shard_replicas, Some(vec![1, 2, 3]));
                // Its coordinator's three replicas and its two fellows, nobody else.
                assert_eq!(config.peers.len(), 5);
                assert!(config.peers.iter().all(|p| match p.role {
                    RoleId::NotaryReplica(_) => true,
                    RoleId::NotaryShard { shard: s, .. } => s == *shard,
                    _ => false,
                }));
            }
            RoleId::NotaryReplica(_) => assert_eq!(config.notary.as_ref().unwrap().shards, 2),
            RoleId::Bank(_) => assert!(config.peers.iter().all(|p| !matches!(p.role, RoleId::NotaryShard { .. }))),
            _ => {}
        }
    }
    // A shard without its [shard] section, or without its fellows, is refused.
    let error = refused(&laid, "notary-shard-2-1", |t| t.replace("[shard]", "[nothing]"));
    assert!(error.contains("nothing"), "{error}");
    let error = refused(&laid, "notary-shard-2-1", |t| drop_peer(t, "notary-shard:2:3"));
    assert!(error.contains("needs notary-shard:2:3"), "{error}");
    let error = refused(&laid, "notary-1", |t| {
        let t = drop_peer(t, "notary-shard:2:1");
        let t = drop_peer(&t, "notary-shard:2:2");
        drop_peer(&t, "notary-shard:2:3")
    });
    assert!(error.contains("shard 2's replicas"), "{error}");
}

#[test]
fn an_invalid_file_is_refused_with_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let laid = lay_out(dir.path());
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("steppe", Box::new(|t| format!("colour = \"blue\"\n{t}")), "unknown field"),
        ("steppe", Box::new(|t| t.replace("role = \"bank:steppe\"", "role = \"bank\"")), "role"),
        ("steppe", Box::new(|t| t.replacen("listen = \"127.0.0.1:", "listen = \"nowhere:", 1)), "listen"),
        ("steppe", Box::new(|t| t.replace("node.key.pem", "missing.key.pem")), "missing.key.pem"),
        // Another participant's key: the certificate certifies another.
        (
            "steppe",
            Box::new(|t| t.replace("key = \"node.key.pem\"", "key = \"../tulpar/node.key.pem\"")),
            "another key",
        ),
        // Another participant's certificate: it names another role.
        (
            "steppe",
            Box::new(|t| t.replace("certificate = \"node.crt.pem\"", "certificate = \"../tulpar/node.crt.pem\"")),
            "names bank:tulpar",
        ),
        ("steppe", Box::new(|t| t.replace("[bank]", "[nothing]")), "nothing"),
        (
            "notary-2",
            Box::new(|t| format!("{t}\n[bank]\nname = \"x\"\nkind = \"bank\"\nown_key = \"node.key.pem\"\n")),
            "takes no [bank]",
        ),
        ("notary-2", Box::new(|t| t.replacen("ops = ", "api = \"127.0.0.1:1\"\nops = ", 1)), "serves no API"),
        // A replica: its [notary] section, the notary's own certificate, an odd group with it in,
        // the other replicas among its peers.
        ("notary-2", Box::new(|t| t.replace("[notary]", "[nothing]")), "nothing"),
        ("notary-2", Box::new(drop_notary_section), "needs its [notary]"),
        (
            "notary-2",
            Box::new(|t| t.replace("certificate = \"../notary/node.crt.pem\"", "certificate = \"node.crt.pem\"")),
            "names notary-replica:2, not the notary",
        ),
        (
            "notary-2",
            Box::new(|t| t.replace("key = \"../notary/node.key.pem\"", "key = \"node.key.pem\"")),
            "another key than notary.key",
        ),
        ("notary-2", Box::new(|t| t.replace("replicas = [1, 2, 3]", "replicas = [1, 3, 4]")), "this one (2)"),
        ("notary-2", Box::new(|t| t.replace("replicas = [1, 2, 3]", "replicas = [1, 2]")), "odd number"),
        ("notary-2", Box::new(|t| t.replace("replicas = [1, 2, 3]", "replicas = [1, 2, 2]")), "distinct"),
        ("notary-2", Box::new(|t| drop_peer(t, "notary-replica:3")), "needs notary-replica:3"),
        // Only the notary answers in several places.
        (
            "steppe",
            Box::new(|t| {
                t.replace(
                    "role = \"central\"\n",
                    "role = \"central\"\nalternates = [{ address = \"127.0.0.1:9\", server_name = \"localhost\" }]\n",
                )
            }),
            "only the notary",
        ),
        ("steppe", Box::new(|t| t.replace("kind = \"bank\"", "kind = \"casino\"")), "casino"),
        ("steppe", Box::new(|t| t.replace("server_name = \"localhost\"", "server_name = \"elsewhere\"")), "elsewhere"),
        // The notary's entry dropped: a bank cannot work without it.
        ("steppe", Box::new(|t| drop_peer(t, "notary")), "needs notary"),
        ("central", Box::new(|t| t.replacen("own_address = ", "# own_address = ", 1)), "own_address"),
    ];
    for (name, edit, expected) in cases {
        let error = refused(&laid, name, edit);
        assert!(error.contains(expected), "{name}: expected {expected:?} in: {error}");
    }
    // The file for another role than asked for.
    let steppe = laid.iter().find(|l| l.member.name == "steppe").unwrap();
    let error = Config::load(&steppe.config, Some(&RoleId::Notary)).err().unwrap().to_string();
    assert!(error.contains("not notary"), "{error}");
}

/// The file without its `[notary]` section (up to the blank line after it).
fn drop_notary_section(text: &str) -> String {
    let (before, after) = text.split_once("\n[notary]\n").expect("a [notary] section");
    let rest = after.split_once("\n\n").map_or("", |(_, rest)| rest);
    format!("{before}\n\n{rest}")
}

/// The file without its `[[peers]]` entry for `role`.
fn drop_peer(text: &str, role: &str) -> String {
    let entries: Vec<&str> = text.split("\n[[peers]]").collect();
    let kept: Vec<&str> = entries
        .iter()
        .enumerate()
        .filter(|(i, e)| *i == 0 || !e.contains(&format!("role = \"{role}\"")))
        .map(|(_, e)| *e)
        .collect();
    kept.join("\n[[peers]]")
}
