//! Participants on loopback, each with its own `Net`, under one root: envelopes travel over
//! mutual TLS 1.3 and HTTP/2 in signed frames; strangers, revoked participants, impostors and
//! replayed frames are refused. Every wait here is bounded.

use bytes::Bytes;
use dtenge_core::crypto::SecretKey;
use dtenge_net::frame::Sealer;
use dtenge_net::{binding, client_tls, Identity, Net, NetConfig, NetStats, Peer, FRAMES_PATH};
use dtenge_pki::{ApiClient, Authority, Issue, Reason, Revocation, Subject};
use dtenge_transport::{Inbox, Transport};
use dtenge_wire::{DeliverAck, Envelope, Message, RoleId};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAIT_MS_MAX: u64 = 10_000;

fn now_s() -> i64 {
    // An hour back, so that a certificate issued now is valid on every clock of the test.
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 - 3_600
}

fn bank_a() -> RoleId {
    RoleId::Bank("bank-a".into())
}

struct Root {
    authority: Authority,
    next_serial: u64,
}

impl Root {
    fn new(seed: u8) -> Root {
        Root { authority: Authority::create(SecretKey::from_seed([seed; 32]), now_s()).unwrap(), next_serial: 2 }
    }

    /// A participant's identity: its key, its certificate (for `localhost`), the root and a
    /// revocation list naming `revoked`.
    fn identity(&mut self, role: &RoleId, seed: u8, revoked: &[u64]) -> (Identity, u64) {
        let key = SecretKey::from_seed([seed; 32]);
        let serial = self.next_serial;
        self.next_serial += 1;
        let cert_der = self
            .authority
            .issue(&Issue {
                subject: &Subject::Role(role.clone()),
                key: key.public_key(),
                dns_names: &["localhost".into()],
                serial,
                now_s: now_s(),
                validity_days: 1,
            })
            .unwrap();
        let identity = Identity {
            key: key.into(),
            cert_der,
            ca_der: self.authority.cert_der().to_vec(),
            crl_der: self.crl(1, revoked),
        };
        (identity, serial)
    }

    fn crl(&self, number: u64, revoked: &[u64]) -> Vec<u8> {
        let revoked: Vec<_> =
            revoked.iter().map(|&serial| Revocation { serial, at_s: now_s(), reason: Reason::KeyCompromise }).collect();
        self.authority.revocation_list(number, &revoked, now_s()).unwrap()
    }
}

/// A port nobody listens on now, for a participant that starts after its peers name it.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn peer(role: RoleId, address: SocketAddr) -> Peer {
    Peer::at(role, address.to_string(), "localhost")
}

fn start(identity: Identity, listen: SocketAddr, peers: Vec<Peer>) -> (Net, Inbox) {
    Net::start(NetConfig { identity, listen, peers }).unwrap()
}

fn ack(from: &RoleId, to: &RoleId, seq: u64) -> Envelope {
    Envelope { from: from.clone(), to: to.clone(), message: Message::DeliverAck(DeliverAck { seq }) }
}

fn seq_of(envelope: &Envelope) -> u64 {
    match &envelope.message {
        Message::DeliverAck(DeliverAck { seq }) => *seq,
        other => panic!("an unexpected message {other:?}"),
    }
}

/// Send until it is taken: a peer's queue refuses while the link is still dialling.
fn send(net: &Net, envelope: Envelope) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while net.send(envelope.clone()).is_err() {
        assert!(Instant::now() < deadline, "the peer's queue stayed full");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The next `count` envelopes of `inbox`, or fewer if none came for `quiet_ms`.
fn receive(inbox: &mut Inbox, count: usize, quiet_ms: u64) -> Vec<Envelope> {
    let mut received = Vec::new();
    let mut last = Instant::now();
    while received.len() < count && last.elapsed() < Duration::from_millis(quiet_ms) {
        match inbox.try_recv() {
            Ok(envelope) => {
                received.push(envelope);
                last = Instant::now();
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    received
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while !done() {
        assert!(Instant::now() < deadline, "waited in vain for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn envelopes_travel_both_ways_in_order_over_mutual_tls() {
    let mut root = Root::new(1);
    let (bank_identity, _) = root.identity(&bank_a(), 2, &[]);
    let (notary_identity, _) = root.identity(&RoleId::Notary, 3, &[]);
    let bank_address = free_port();
    let (notary, mut notary_inbox) =
        start(notary_identity, "127.0.0.1:0".parse().unwrap(), vec![peer(bank_a(), bank_address)]);
    let (bank, mut bank_inbox) = start(bank_identity, bank_address, vec![peer(RoleId::Notary, notary.local_addr())]);
    assert_eq!(bank.role(), &bank_a(), "the role is the one the certificate names");

    const COUNT: u64 = 2_000;
    for seq in 0..COUNT {
        send(&bank, ack(&bank_a(), &RoleId::Notary, seq));
    }
    let received = receive(&mut notary_inbox, COUNT as usize, WAIT_MS_MAX);
    assert_eq!(received.iter().map(seq_of).collect::<Vec<_>>(), (0..COUNT).collect::<Vec<_>>(), "all, in order");
    assert!(received.iter().all(|e| e.from == bank_a() && e.to == RoleId::Notary));

    for seq in 0..10 {
        send(&notary, ack(&RoleId::Notary, &bank_a(), seq));
    }
    assert_eq!(receive(&mut bank_inbox, 10, WAIT_MS_MAX).len(), 10, "and back");

    let sent = bank.stats();
    let got = notary.stats();
    assert_eq!(sent.envelopes_sent, COUNT);
    assert_eq!(got.envelopes_received, COUNT);
    assert_eq!(got.frames_received, sent.frames_sent);
    assert!(sent.frames_sent < COUNT, "envelopes travel in batches: {} frames", sent.frames_sent);
    assert_eq!((got.frames_refused, got.connections_refused, got.envelopes_lost, sent.envelopes_lost), (0, 0, 0, 0));
}

#[test]
fn a_participant_certified_by_another_root_is_refused_at_connection() {
    let mut root = Root::new(1);
    let mut stranger_root = Root::new(9);
    let (notary_identity, _) = root.identity(&RoleId::Notary, 3, &[]);
    let (rogue_identity, _) = stranger_root.identity(&bank_a(), 2, &[]);
    let (notary, mut notary_inbox) = start(notary_identity, "127.0.0.1:0".parse().unwrap(), vec![]);
    let (rogue, _rogue_inbox) =
        start(rogue_identity, "127.0.0.1:0".parse().unwrap(), vec![peer(RoleId::Notary, notary.local_addr())]);
    let _ = rogue.send(ack(&bank_a(), &RoleId::Notary, 1));
    wait_for("the notary to refuse the stranger", || notary.stats().connections_refused > 0);
    assert!(receive(&mut notary_inbox, 1, 300).is_empty());
    assert!(rogue.stats().connections_refused > 0, "and the stranger does not trust the notary either");
}

#[test]
fn a_revoked_bank_is_refused_at_connection_and_its_live_connection_ends() {
    let mut root = Root::new(1);
    let (bank_identity, bank_serial) = root.identity(&bank_a(), 2, &[]);
    let (notary_identity, _) = root.identity(&RoleId::Notary, 3, &[]);
    let (notary, mut notary_inbox) = start(notary_identity, "127.0.0.1:0".parse().unwrap(), vec![]);
    let (bank, _bank_inbox) =
        start(bank_identity, "127.0.0.1:0".parse().unwrap(), vec![peer(RoleId::Notary, notary.local_addr())]);
    send(&bank, ack(&bank_a(), &RoleId::Notary, 1));
    assert_eq!(receive(&mut notary_inbox, 1, WAIT_MS_MAX).len(), 1, "connected before the revocation");

    assert!(notary.set_revocation_list(&root.crl(0, &[])).is_err(), "an older list than the one in force");
    notary.set_revocation_list(&root.crl(2, &[bank_serial])).unwrap();
    assert_eq!(notary.revocation_list_number(), 2);
    assert_eq!(notary.stats().connections_revoked, 1, "the live connection ends at once");

    let refused_before = notary.stats().connections_refused;
    for seq in 2..50 {
        let _ = bank.send(ack(&bank_a(), &RoleId::Notary, seq));
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_for("the revoked bank to be refused on reconnecting", || notary.stats().connections_refused > refused_before);
    assert!(receive(&mut notary_inbox, 1, 300).is_empty(), "nothing from the revoked bank arrives");
}

#[test]
fn a_bank_revoked_before_it_starts_never_gets_in() {
    let mut root = Root::new(1);
    let (bank_identity, bank_serial) = root.identity(&bank_a(), 2, &[]);
    let (mut notary_identity, _) = root.identity(&RoleId::Notary, 3, &[]);
    notary_identity.crl_der = root.crl(2, &[bank_serial]);
    let (notary, mut notary_inbox) = start(notary_identity, "127.0.0.1:0".parse().unwrap(), vec![]);
    let (bank, _bank_inbox) =
        start(bank_identity, "127.0.0.1:0".parse().unwrap(), vec![peer(RoleId::Notary, notary.local_addr())]);
    let _ = bank.send(ack(&bank_a(), &RoleId::Notary, 1));
    wait_for("the notary to refuse the revoked bank", || notary.stats().connections_refused > 0);
    assert!(receive(&mut notary_inbox, 1, 300).is_empty());
}

#[test]
fn a_peer_that_answers_as_another_role_is_refused() {
    let mut root = Root::new(1);
    let (bank_identity, _) = root.identity(&bank_a(), 2, &[]);
    let (oracle_identity, _) = root.identity(&RoleId::Oracle, 4, &[]);
    // The oracle listens where the bank believes the notary is.
    let (oracle, mut oracle_inbox) = start(oracle_identity, "127.0.0.1:0".parse().unwrap(), vec![]);
    let (bank, _bank_inbox) =
        start(bank_identity, "127.0.0.1:0".parse().unwrap(), vec![peer(RoleId::Notary, oracle.local_addr())]);
    let _ = bank.send(ack(&bank_a(), &RoleId::Notary, 1));
    wait_for("the bank to refuse the oracle as its notary", || bank.stats().connections_refused > 0);
    assert!(receive(&mut oracle_inbox, 1, 300).is_empty());
    assert_eq!(oracle.stats().envelopes_received, 0);
}

#[test]
fn an_api_clients_certificate_is_no_participants() {
    let root = Root::new(1);
    let key = SecretKey::from_seed([6; 32]);
    let subject = Subject::Api(ApiClient::Bank("bank-a".into()));
    let cert_der = root
        .authority
        .issue(&Issue {
            subject: &subject,
            key: key.public_key(),
            dns_names: &[],
            serial: 40,
            now_s: now_s(),
            validity_days: 1,
        })
        .unwrap();
    let identity =
        Identity { key: key.into(), cert_der, ca_der: root.authority.cert_der().to_vec(), crl_der: root.crl(1, &[]) };
    let refused = Net::start(NetConfig { identity, listen: "127.0.0.1:0".parse().unwrap(), peers: vec![] });
    assert!(matches!(refused, Err(dtenge_net::NetError::Identity(_))));
}

/// A certified bank speaking to the notary directly, frame by frame, as a hostile or broken
/// node could: a frame sent twice ends the connection, and only the first is delivered.
#[test]
fn a_replayed_frame_on_a_real_connection_is_refused_and_ends_it() {
    let mut root = Root::new(1);
    let (bank_identity, _) = root.identity(&bank_a(), 2, &[]);
    let (notary_identity, _) = root.identity(&RoleId::Notary, 3, &[]);
    let (notary, mut notary_inbox) = start(notary_identity, "127.0.0.1:0".parse().unwrap(), vec![]);
    let client = client_tls(&bank_identity).unwrap();
    let key = bank_identity.key.clone();
    let address = notary.local_addr();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(client).connect(name, tcp).await.unwrap();
        let binding = binding(tls.get_ref().1).unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let mut sealer = Sealer::new(bank_a(), RoleId::Notary, binding);
        let first = Bytes::from(sealer.seal(&key, &[ack(&bank_a(), &RoleId::Notary, 1)]));
        let body = http_body_util::StreamBody::new(futures_stream(vec![first.clone(), first]));
        let request = hyper::Request::post(format!("https://localhost{FRAMES_PATH}")).body(body).unwrap();
        tokio::time::timeout(Duration::from_millis(WAIT_MS_MAX), sender.send_request(request))
            .await
            .map(|answer| answer.map(|response| response.status()))
    });
    match status {
        Ok(Ok(status)) => assert_eq!(status, hyper::StatusCode::BAD_REQUEST),
        // The notary may end the connection before the answer is read: refused all the same.
        Ok(Err(_)) => {}
        Err(_) => panic!("the notary neither answered nor ended the connection"),
    }
    let delivered = receive(&mut notary_inbox, 2, 500);
    assert_eq!(delivered.len(), 1, "the first frame only");
    let stats: NetStats = notary.stats();
    assert_eq!(stats.frames_refused, 1);
    assert_eq!(stats.frames_received, 1);
}

/// A body of these chunks, then its end.
fn futures_stream(
    chunks: Vec<Bytes>,
) -> impl futures_core::Stream<Item = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> {
    struct Chunks(std::collections::VecDeque<Bytes>);
    impl futures_core::Stream for Chunks {
        type Item = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.pop_front().map(|chunk| Ok(hyper::body::Frame::data(chunk))))
        }
    }
    Chunks(chunks.into())
}

#[test]
fn a_bank_reaches_the_notary_at_whichever_replica_answers_and_replicas_talk_as_themselves() {
    let mut root = Root::new(1);
    let (bank_identity, _) = root.identity(&bank_a(), 2, &[]);
    let (one_identity, _) = root.identity(&RoleId::NotaryReplica(1), 5, &[]);
    let (two_identity, _) = root.identity(&RoleId::NotaryReplica(2), 6, &[]);
    let (bank_address, one_address) = (free_port(), free_port());
    // Replica 2 answers; replica 1 is down (nobody listens where the bank tries first).
    let (two, mut two_inbox) = start(
        two_identity,
        "127.0.0.1:0".parse().unwrap(),
        vec![peer(bank_a(), bank_address), peer(RoleId::NotaryReplica(1), one_address)],
    );
    let notary = Peer {
        role: RoleId::Notary,
        endpoints: [one_address, two.local_addr()]
            .iter()
            .map(|a| dtenge_net::Endpoint { address: a.to_string(), server_name: "localhost".into() })
            .collect(),
    };
    let (bank, mut bank_inbox) = start(bank_identity, bank_address, vec![notary]);
    // The bank's envelopes to the notary reach replica 2, as sent to the notary (what was
    // queued while it dialled replica 1 in vain is lost, as on any failed connection: the
    // roles send again, and so does this test).
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    let got = loop {
        let _ = bank.send(ack(&bank_a(), &RoleId::Notary, 7));
        let got = receive(&mut two_inbox, 1, 200);
        if !got.is_empty() || Instant::now() > deadline {
            break got;
        }
    };
    assert_eq!(got.len(), 1, "the bank moved on to the replica that answers");
    assert_eq!((got[0].from.clone(), got[0].to.clone(), seq_of(&got[0])), (bank_a(), RoleId::Notary, 7));
    // The replica answers the bank as the notary, never as itself.
    send(&two, ack(&RoleId::Notary, &bank_a(), 8));
    let back = receive(&mut bank_inbox, 1, WAIT_MS_MAX);
    assert_eq!((back[0].from.clone(), seq_of(&back[0])), (RoleId::Notary, 8));
    // Replicas talk to each other under their own numbers.
    let (one, mut one_inbox) = start(one_identity, one_address, vec![peer(RoleId::NotaryReplica(2), two.local_addr())]);
    send(&two, ack(&RoleId::NotaryReplica(2), &RoleId::NotaryReplica(1), 9));
    let between = receive(&mut one_inbox, 1, WAIT_MS_MAX);
    assert_eq!((between[0].from.clone(), between[0].to.clone()), (RoleId::NotaryReplica(2), RoleId::NotaryReplica(1)));
    send(&one, ack(&RoleId::NotaryReplica(1), &RoleId::NotaryReplica(2), 10));
    assert_eq!(receive(&mut two_inbox, 1, WAIT_MS_MAX)[0].from, RoleId::NotaryReplica(1));
    assert_eq!(bank.stats().frames_refused + two.stats().frames_refused + one.stats().frames_refused, 0);
}

#[test]
fn a_replica_does_not_pass_for_a_bank_nor_a_bank_for_the_notary() {
    let mut root = Root::new(1);
    let (replica_identity, _) = root.identity(&RoleId::NotaryReplica(1), 5, &[]);
    let (bank_identity, _) = root.identity(&bank_a(), 2, &[]);
    let (other_identity, _) = root.identity(&RoleId::Bank("bank-b".into()), 7, &[]);
    // Bank B listens where bank A believes the notary is: refused, as any other role would be.
    let (other, mut other_inbox) = start(other_identity, "127.0.0.1:0".parse().unwrap(), vec![]);
    let (bank, _bank_inbox) =
        start(bank_identity, "127.0.0.1:0".parse().unwrap(), vec![peer(RoleId::Notary, other.local_addr())]);
    let _ = bank.send(ack(&bank_a(), &RoleId::Notary, 1));
    wait_for("bank A to refuse bank B as its notary", || bank.stats().connections_refused > 0);
    assert!(receive(&mut other_inbox, 1, 300).is_empty());
    // A replica dialled as bank B is refused too: it is the notary, not a bank.
    let (replica, _replica_inbox) = start(replica_identity, "127.0.0.1:0".parse().unwrap(), vec![]);
    let (other_b, _) = {
        let (identity, _) = root.identity(&RoleId::Bank("bank-c".into()), 8, &[]);
        start(identity, "127.0.0.1:0".parse().unwrap(), vec![peer(RoleId::Bank("bank-b".into()), replica.local_addr())])
    };
    let _ = other_b.send(ack(&RoleId::Bank("bank-c".into()), &RoleId::Bank("bank-b".into()), 1));
    wait_for("bank C to refuse a replica as bank B", || other_b.stats().connections_refused > 0);
    assert_eq!(replica.stats().envelopes_received, 0);
}
