//! The vault on a real PKCS#11 module: SoftHSM2, with a token of the test's own.

use dtenge_core::crypto::verify;
use dtenge_env::Entropy;
use dtenge_keys::hsm::WRAPPED_FILE;
use dtenge_keys::softhsm::{self, Token};
use dtenge_keys::{KeyConfig, Vault};

/// Node keys are made in the token and sign there; secrets are wrapped under its
/// key-encryption key; all of it comes back after reopening, and no file holds a secret.
#[test]
fn node_keys_sign_in_the_hsm_and_secrets_come_back_wrapped() {
    let folder = tempfile::tempdir().unwrap();
    let token = Token::init(folder.path(), "dtenge-test", "4321").unwrap();
    // SoftHSM reads its configuration when the module is initialized: once per process, and
    // this binary has this one test.
    std::env::set_var(softhsm::CONF_ENV, &token.conf);
    let data = tempfile::tempdir().unwrap();
    let config = KeyConfig::Hsm(token.config());
    let entropy = Entropy::from_seed(1);

    let vault = Vault::open(data.path(), &config).unwrap();
    assert!(vault.is_hsm() && vault.describe().contains("PKCS#11"), "{}", vault.describe());
    let central = vault.node_key("central", &entropy).unwrap();
    let steppe = vault.node_key("bank:steppe", &entropy).unwrap();
    assert_ne!(central.public_key(), steppe.public_key());
    let signature = central.sign(b"emission 1");
    verify(&central.public_key(), b"emission 1", &signature).unwrap();
    assert!(verify(&steppe.public_key(), b"emission 1", &signature).is_err());
    assert_eq!(central.sign(b"emission 1"), signature, "Ed25519 in the HSM is deterministic");
    let custody = vault.secret("custody:steppe", &entropy).unwrap();
    let own = vault.secret("own:steppe", &entropy).unwrap();
    assert_ne!(custody, own);
    // Concurrent signers share the sessions.
    std::thread::scope(|scope| {
        for n in 0..8u8 {
            let key = steppe.clone();
            scope.spawn(move || {
                for i in 0..50u8 {
                    let message = [n, i];
                    verify(&key.public_key(), &message, &key.sign(&message)).unwrap();
                }
            });
        }
    });
    drop(vault);

    let reopened = Vault::open(data.path(), &config).unwrap();
    assert_eq!(reopened.node_key("central", &entropy).unwrap().public_key(), central.public_key());
    assert_eq!(reopened.secret("custody:steppe", &entropy).unwrap(), custody);
    assert_eq!(reopened.secret("own:steppe", &entropy).unwrap(), own);

    // The data directory holds the wrapped secrets, not the secrets.
    let wrapped = std::fs::read(data.path().join(WRAPPED_FILE)).unwrap();
    for secret in [custody, own] {
        for needle in [secret.to_vec(), hex::encode(secret).into_bytes()] {
            assert!(!wrapped.windows(needle.len()).any(|w| w == needle), "a secret in the clear");
        }
    }

    // One process at a time holds a vault: a second opening is refused while it is open.
    let refused = Vault::open(data.path(), &config).err().unwrap();
    assert!(refused.message.contains("open in another process"), "{refused}");

    // Another data directory on the same token is another vault: its own keys under the same
    // labels, never this one's.
    let neighbour = tempfile::tempdir().unwrap();
    let next_door = Vault::open(neighbour.path(), &config).unwrap();
    assert_ne!(next_door.node_key("central", &entropy).unwrap().public_key(), central.public_key());
    assert_ne!(next_door.hsm_object_label("central"), reopened.hsm_object_label("central"));
    drop(next_door);

    // A key several participants share is imported: the same key, signing in the HSM.
    let shared = dtenge_core::crypto::SecretKey::from_seed([42; 32]);
    let imported = reopened.import_node_key("notary", &shared).unwrap();
    assert_eq!(imported.public_key(), shared.public_key());
    assert_eq!(imported.sign(b"certificate 7"), shared.sign(b"certificate 7"));
    assert_eq!(
        reopened.import_node_key("notary", &shared).unwrap().public_key(),
        shared.public_key(),
        "again: no change"
    );
    let other = dtenge_core::crypto::SecretKey::from_seed([43; 32]);
    assert!(reopened.import_node_key("notary", &other).is_err(), "another key under a taken label");

    // A rotation: a new key under the label, the old one retired and still in the token.
    let rotated = reopened.rotate_node_key("central", &entropy).unwrap();
    assert_ne!(rotated.public_key(), central.public_key());
    assert_eq!(reopened.node_key("central", &entropy).unwrap().public_key(), rotated.public_key());
    assert_eq!(reopened.node_key("central@retired-1", &entropy).unwrap().public_key(), central.public_key());
    verify(&rotated.public_key(), b"after", &rotated.sign(b"after")).unwrap();

    // The private halves are sensitive and not extractable: they never leave the token.
    let pkcs11 = cryptoki::context::Pkcs11::new(softhsm::MODULE).unwrap();
    let slot = pkcs11
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|slot| pkcs11.get_token_info(*slot).unwrap().label() == "dtenge-test")
        .unwrap();
    let session = pkcs11.open_ro_session(slot).unwrap();
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    let private = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(reopened.hsm_object_label("central@retired-1").unwrap().into_bytes()),
        ])
        .unwrap();
    assert_eq!(private.len(), 1);
    let attributes =
        session.get_attributes(private[0], &[AttributeType::Sensitive, AttributeType::Extractable]).unwrap();
    assert!(attributes.contains(&Attribute::Sensitive(true)), "{attributes:?}");
    assert!(attributes.contains(&Attribute::Extractable(false)), "{attributes:?}");
    drop(reopened);

    // Another token's key-encryption key does not unwrap them. (The same process's module
    // sees only the first configuration's tokens: the other token is in another directory, so
    // it is not found at all.)
    let other_folder = tempfile::tempdir().unwrap();
    let other = Token::init(other_folder.path(), "dtenge-other", "4321").unwrap();
    let refused = Vault::open(data.path(), &KeyConfig::Hsm(other.config())).err().unwrap();
    assert!(refused.message.contains("no initialized token labelled"), "{refused}");
}
