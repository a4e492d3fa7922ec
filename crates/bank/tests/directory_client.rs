//! A bank's questions to the directory in another process (`DirectoryClient`), over a
//! transport that may lose them: answered from the directory role, asked again when lost, kept
//! for an address, given up in time, and never confused with another question's answer.

use dtenge_bank::{Directory, DirectoryClient, Who};
use dtenge_core::crypto::{Address, SecretKey};
use dtenge_core::ErrorCode;
use dtenge_directory::DirectoryService;
use dtenge_store::{SimDisk, Store};
use dtenge_transport::{InProcess, Transport};
use dtenge_wire::{AccountKind, Claim, Envelope, Listed, LookupReply, Message, RoleId};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn address(seed: u8) -> Address {
    SecretKey::from_seed([seed; 32]).address()
}

fn claim(client: &str, seed: u8, phone: Option<&str>) -> Claim {
    Claim {
        client_id: client.into(),
        address: address(seed),
        kind: AccountKind::Individual,
        display_name: format!("{client} S."),
        phone: phone.map(str::to_string),
    }
}

/// The directory role on its own thread, dropping its first `lose` questions; its count of
/// questions taken.
fn directory(net: &Arc<InProcess>, lose: usize) -> Arc<AtomicUsize> {
    let service =
        DirectoryService::open(Store::open_simulated(SimDisk::new(), &dtenge_directory::tables()).unwrap()).unwrap();
    service.claim_all("tulpar", &[claim("900101300123", 1, Some("+77011234567"))]).unwrap();
    let inbox = net.register(RoleId::Directory);
    let (net, taken) = (net.clone(), Arc::new(AtomicUsize::new(0)));
    let counted = taken.clone();
    std::thread::spawn(move || {
        for envelope in inbox {
            if counted.fetch_add(1, Ordering::SeqCst) < lose {
                continue;
            }
            if let Some(reply) = service.handle(envelope) {
                let _ = net.send(reply);
            }
        }
    });
    taken
}

/// The bank's inbox: the directory's answers handed to the client, as the bank's process does.
fn bank_inbox(net: &Arc<InProcess>, client: Arc<DirectoryClient>) {
    let inbox = net.register(RoleId::Bank("steppe".into()));
    std::thread::spawn(move || {
        for envelope in inbox {
            assert!(client.take_reply(&envelope), "only the directory's answers come here");
        }
    });
}

#[test]
fn questions_are_answered_asked_again_when_lost_and_an_address_is_kept() {
    let net = Arc::new(InProcess::new());
    let taken = directory(&net, 2);
    let client = Arc::new(DirectoryClient::new(RoleId::Bank("steppe".into()), net.clone(), 1_000));
    bank_inbox(&net, client.clone());
    // The first two questions are lost: asked again, answered.
    assert_eq!(client.bank_of(&address(1)).unwrap(), Some("tulpar".into()));
    assert!(taken.load(Ordering::SeqCst) >= 3, "asked again after each loss");
    // Kept: no question for the same address.
    let before = taken.load(Ordering::SeqCst);
    assert_eq!(client.bank_of(&address(1)).unwrap(), Some("tulpar".into()));
    assert_eq!(taken.load(Ordering::SeqCst), before);
    // Nobody's address: none, asked each time.
    assert_eq!(client.bank_of(&address(9)).unwrap(), None);
    // By phone and by client (at a bank, or the first): the address, the bank and the kind.
    let found = client.find(Who::Phone("+77011234567"), None).unwrap().unwrap();
    assert_eq!((found.address, found.bank.as_str(), found.kind), (address(1), "tulpar", AccountKind::Individual));
    assert!(client.find(Who::Client("900101300123"), Some("sapa")).unwrap().is_none());
    // Claims of many at once, all or none, by message.
    client.claim_all(&[claim("850505400456", 2, None), claim("700101300001", 3, None)]).unwrap();
    assert_eq!(client.bank_of(&address(2)).unwrap(), Some("steppe".into()));
    let refused = client.claim_all(&[claim("700101300002", 1, None)]).unwrap_err();
    assert_eq!(refused.code, ErrorCode::DuplicateAccount);
}

#[test]
fn a_directory_that_does_not_answer_is_given_up_in_time() {
    let net = Arc::new(InProcess::new());
    // Registered, never answers.
    let _silent = net.register(RoleId::Directory);
    let client = Arc::new(DirectoryClient::new(RoleId::Bank("steppe".into()), net.clone(), 1));
    bank_inbox(&net, client.clone());
    let started = Instant::now();
    let error = client.bank_of(&address(1)).unwrap_err();
    assert_eq!(error.code, ErrorCode::RequestInProgress, "ask again, not an unknown payee");
    let waited = started.elapsed();
    let limit = Duration::from_millis(dtenge_bank::ANSWER_WAIT_MS);
    assert!(waited >= limit && waited < limit + Duration::from_secs(2), "waited {waited:?}");
}

#[test]
fn an_answer_from_another_role_or_to_another_question_is_not_taken() {
    let net = Arc::new(InProcess::new());
    let client = DirectoryClient::new(RoleId::Bank("steppe".into()), net.clone(), 500);
    let listed = Listed { address: address(1), bank: "tulpar".into(), kind: AccountKind::Individual };
    let reply = |from: RoleId, request| Envelope {
        from,
        to: RoleId::Bank("steppe".into()),
        message: Message::LookupReply(LookupReply { request, listed: Some(listed.clone()) }),
    };
    // Not a question of this client's: taken (it is the directory's kind of answer) and
    // dropped.
    assert!(client.take_reply(&reply(RoleId::Directory, 42)));
    // A question waits (number 500, the first); a notary "answers" it: dropped, and the
    // question is given up in time rather than told a bank by another role.
    let client = Arc::new(client);
    let asking = {
        let client = client.clone();
        std::thread::spawn(move || client.bank_of(&address(1)))
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(client.take_reply(&reply(RoleId::Notary, 500)));
    let answer = asking.join().unwrap();
    assert_eq!(answer.unwrap_err().code, ErrorCode::RequestInProgress, "the notary's answer was not taken");
    // Another kind of message is the bank's own.
    let ack = Envelope {
        from: RoleId::Notary,
        to: RoleId::Bank("steppe".into()),
        message: Message::DeliverAck(dtenge_wire::DeliverAck { seq: 1 }),
    };
    assert!(!client.take_reply(&ack));
}
