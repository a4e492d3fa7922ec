//! A role runs unchanged over the network between processes: the notary on its own `Net`,
//! the NBK (central) on another, each with its own certificate of one root, on loopback. The
//! NBK's signed batch reaches the notary in a signed frame over mutual TLS, the notary commits
//! it to its own store and its signed certificate comes back the same way; the same batch sent
//! again is answered from the notary's store, not spent twice.

use dtenge_core::certificate::{notarize_message, CompactTx};
use dtenge_core::crypto::SecretKey;
use dtenge_core::token::Output;
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::validate::TxIds;
use dtenge_core::Amount;
use dtenge_net::{Identity, Net, NetConfig, Peer};
use dtenge_notary::service::{NotaryService, Senders};
use dtenge_pki::{Authority, Issue, Subject};
use dtenge_store::Store;
use dtenge_transport::Transport;
use dtenge_wire::{Envelope, Message, NotarizeReply, NotarizeRequest, Outcome, RoleId};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAIT_MS_MAX: u64 = 10_000;

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 - 3_600
}

fn identity(root: &Authority, role: RoleId, key: &SecretKey, serial: u64) -> Identity {
    let cert_der = root
        .issue(&Issue {
            subject: &Subject::Role(role),
            key: key.public_key(),
            dns_names: &["localhost".into()],
            serial,
            now_s: now_s(),
            validity_days: 1,
        })
        .unwrap();
    Identity {
        key: key.clone().into(),
        cert_der,
        ca_der: root.cert_der().to_vec(),
        crl_der: root.revocation_list(1, &[], now_s()).unwrap(),
    }
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The NBK's batch of one issue of `tiyn` to `owner`, signed as the notary checks it.
fn issue_batch(nbk: &SecretKey, batch: u64, tiyn: u64) -> NotarizeRequest {
    let owner = SecretKey::from_seed([50; 32]).address();
    let output = Output::standard(Amount::from_tiyn(tiyn).unwrap(), owner, nbk.address());
    let mut tx =
        Transaction::new(TxBody { command: Command::Issue, inputs: vec![], outputs: vec![output], nonce: batch });
    tx.attest(nbk);
    let compact = CompactTx::of(&TxIds::of(&tx).unwrap());
    let root = dtenge_core::merkle::root(&[compact.hash()]);
    NotarizeRequest { batch, txs: vec![compact], signature: nbk.sign(&notarize_message(batch, &root).0) }
}

fn reply(inbox: &mut dtenge_transport::Inbox) -> NotarizeReply {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    loop {
        if let Ok(envelope) = inbox.try_recv() {
            match envelope.message {
                Message::NotarizeReply(reply) => return reply,
                other => panic!("an unexpected message {other:?}"),
            }
        }
        assert!(Instant::now() < deadline, "no answer from the notary");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn the_notary_role_commits_a_batch_that_crossed_the_network_and_answers_a_repeat_from_its_store() {
    let root = Authority::create(SecretKey::from_seed([1; 32]), now_s()).unwrap();
    let (nbk, notary_key) = (SecretKey::from_seed([2; 32]), SecretKey::from_seed([3; 32]));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &dtenge_notary::service::tables()).unwrap();
    let senders = Senders { central_bank: nbk.public_key(), banks: Default::default(), blocked: Default::default() };
    let notary = Arc::new(NotaryService::open(store, notary_key.clone(), senders).unwrap());

    let central_address = free_port();
    let (notary_net, notary_inbox) = Net::start(NetConfig {
        identity: identity(&root, RoleId::Notary, &notary_key, 2),
        listen: "127.0.0.1:0".parse().unwrap(),
        peers: vec![Peer::at(RoleId::Central, central_address.to_string(), "localhost")],
    })
    .unwrap();
    let (central_net, mut central_inbox) = Net::start(NetConfig {
        identity: identity(&root, RoleId::Central, &nbk, 3),
        listen: central_address,
        peers: vec![Peer::at(RoleId::Notary, notary_net.local_addr().to_string(), "localhost")],
    })
    .unwrap();
    // The notary's inbox thread, as the assembly runs it: each envelope handled, its answer sent.
    let notary_net = Arc::new(notary_net);
    let inbox_thread = {
        let (notary, replies) = (notary.clone(), notary_net.clone());
        std::thread::spawn(move || {
            for envelope in notary_inbox {
                if let Some(answer) = notary.handle(envelope) {
                    let _ = replies.send(answer);
                }
            }
        })
    };

    let request = issue_batch(&nbk, 1, 100_000_00);
    let send = |request: &NotarizeRequest| {
        let envelope =
            Envelope { from: RoleId::Central, to: RoleId::Notary, message: Message::NotarizeRequest(request.clone()) };
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        while central_net.send(envelope.clone()).is_err() {
            assert!(Instant::now() < deadline, "the link to the notary stayed full");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    send(&request);
    let first = reply(&mut central_inbox);
    assert_eq!(first.batch, 1);
    let Outcome::Committed(_) = &first.outcomes[0] else { panic!("the issue commits: {:?}", first.outcomes) };
    let certificate = first.certificate.clone().expect("a signed certificate");
    assert_eq!(notary.seq(), certificate.seq);
    assert_eq!(notary.committed_since_open(), 1);

    // The same batch again (a resend after a lost answer): answered, committed once.
    send(&request);
    let again = reply(&mut central_inbox);
    assert!(matches!(again.outcomes[0], Outcome::Committed(_)), "{:?}", again.outcomes);
    assert_eq!(notary.committed_since_open(), 1, "not spent twice");

    let (sent, got) = (central_net.stats(), notary_net.stats());
    assert_eq!((sent.envelopes_sent, got.envelopes_received), (2, 2));
    assert_eq!((got.frames_refused, got.connections_refused), (0, 0));
    // The notary stops: its inbox closes, its thread ends.
    notary_net.close_inbox();
    inbox_thread.join().expect("the notary's inbox thread ends");
}
