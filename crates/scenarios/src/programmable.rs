//! The programmable-money scenarios of SPEC §5, driven through the REST API like the rest:
//! providers authenticate with their tokens, banks hold their clients' funds, the oracle's
//! decisions move them, and the clock is advanced through the API (no sleeping).

use crate::client::CallResult;
use crate::scenarios::{ensure, expect_code, fail, short, tenge, u, Check, World};
use dtenge_network::types::Record;
use serde_json::{json, Value};

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// The monthly calculation index (MCI) of 2025, in tiyn: state fees are set in MCI.
const MCI_TIYN: u64 = 3_932_00;

impl World {
    /// Balances of an account: (DT total, held, spendable).
    fn dt_split(&self, bank: &str, client: &str) -> Result<(u64, u64, u64), String> {
        let b = &self.account(bank, client)?["balance"];
        Ok((u(&b["dt_tiyn"]), u(&b["dt_held_tiyn"]), u(&b["dt_spendable_tiyn"])))
    }

    fn register_event(&self, token: &str, body: Value) -> CallResult {
        self.client.post_bearer("/v1/oracle/events", &body, token)
    }

    fn occurrence(&self, token: &str, event_id: &str, body: Value) -> CallResult {
        self.client.post_bearer(&format!("/v1/oracle/events/{event_id}/occurrences"), &body, token)
    }

    fn hold(&self, bank: &str, body: Value) -> CallResult {
        self.client.post(&format!("/v1/nodes/{bank}/holds"), &body)
    }

    fn advance(&self, ms: u64) -> CallResult {
        self.client.post("/v1/clock/advance", &json!({ "advance_ms": ms }))
    }

    fn event(&self, id: &str) -> Result<Value, String> {
        self.client.get(&format!("/v1/oracle/events/{id}")).map_err(|e| fail("event", e))
    }

    /// Every record of the event verifies with the oracle's public key.
    fn records_verify(&self, event: &Value) -> Check {
        let key = self.client.get("/v1/oracle/key").map_err(|e| fail("oracle key", e))?;
        let key: dtenge_core::crypto::PublicKey =
            serde_json::from_value(key["public_key"].clone()).map_err(|e| format!("oracle key: {e}"))?;
        let records: Vec<Record> =
            serde_json::from_value(event["records"].clone()).map_err(|e| format!("records: {e}"))?;
        ensure(!records.is_empty(), || "an event without records".into())?;
        for record in &records {
            let digest = record.body.digest().map_err(|e| e.to_string())?;
            dtenge_core::crypto::verify(&key, &digest.0, &record.oracle_signature)
                .map_err(|e| format!("record {} of {}: {e}", record.body.seq, record.body.event_id))?;
        }
        Ok(())
    }

    /// The node was told about `event_id` with a notification of `kind`.
    fn told(&self, bank: &str, event_id: &str, kind: &str) -> Check {
        let page =
            self.client.get(&format!("/v1/nodes/{bank}/notifications?limit=1000")).map_err(|e| fail("notes", e))?;
        let found = page["notifications"].as_array().is_some_and(|list| {
            list.iter().any(|n| n["event_id"].as_str() == Some(event_id) && n["kind"].as_str() == Some(kind))
        });
        ensure(found, || format!("{bank} was not told '{kind}' about {event_id}"))
    }

    /// Open the Treasury single account (state revenue) for a scenario.
    fn treasury_account(&self, scenario: u32) -> Result<String, String> {
        let bin = World::iin(scenario, 90);
        self.open("treasury", "government_agency", &bin, "Treasury single account (state revenue)", None)
            .map_err(|e| fail("open treasury single account", e))?;
        Ok(bin)
    }
}

fn actions(event: &Value) -> Vec<String> {
    event["records"]
        .as_array()
        .map(|r| r.iter().map(|r| r["body"]["action"].as_str().unwrap_or("?").to_string()).collect())
        .unwrap_or_default()
}

fn id_of(event: &Value) -> String {
    event["id"].as_str().unwrap_or_default().to_string()
}

pub(crate) fn vehicle_sale(w: &World, out: &mut Vec<String>) -> Check {
    let (buyer, seller) = (World::iin(30, 1), World::iin(30, 2));
    w.open("steppe", "individual", &buyer, "Daniyar Abenov", Some(&World::phone(30, 1)))
        .map_err(|e| fail("buyer", e))?;
    w.open("tulpar", "individual", &seller, "Marat Seitkali", Some(&World::phone(30, 2)))
        .map_err(|e| fail("seller", e))?;
    let tsa = w.treasury_account(30)?;
    w.give_dt("steppe", &buyer, 6_000_000_00)?;
    let portal = w.provider("smart-contract-portal", "Smart-contract portal", "contract_portal")?;
    let registry = w.provider("vehicle-registry", "Vehicle registry (MIA)", "vehicle_registry")?;

    // The portal computes the state fees from the contract: registration duty of 2 MCI.
    let price = 5_000_000_00;
    let fees = 2 * MCI_TIYN;
    let event = w
        .register_event(
            &portal,
            json!({
                "reference": "sale contract VS-2026-0001, VIN XTA210990Y2765432",
                "kind": "single",
                "sender": {"bank": "steppe", "client_id": buyer},
                "payees": [
                    {"bank": "tulpar", "client_id": seller, "amount_tiyn": price},
                    {"bank": "treasury", "client_id": tsa, "amount_tiyn": fees}
                ],
                "valid_for_ms": DAY_MS,
                "confirmed_by": "vehicle-registry"
            }),
        )
        .map_err(|e| fail("register event", e))?;
    let id = id_of(&event);
    out.push(format!(
        "The portal registers event {id}: buyer pays {} to the seller and {} state fees, valid 24 hours",
        tenge(price),
        tenge(fees)
    ));
    w.told("steppe", &id, "event_registered")?;
    w.told("tulpar", &id, "event_registered")?;

    let hold = w.hold("steppe", json!({"event_id": id})).map_err(|e| fail("hold", e))?;
    let (dt, held, spendable) = w.dt_split("steppe", &buyer)?;
    ensure(dt == 6_000_000_00 && held == price + fees && spendable == dt - held, || {
        format!("buyer after the hold: dt {dt}, held {held}, spendable {spendable}")
    })?;
    out.push(format!(
        "Steppe Bank holds {} on the buyer's account (oracle-confirmed tx {}): held, not spendable; {} spendable",
        tenge(held),
        short(&hold["tx_id"]),
        tenge(spendable)
    ));
    w.told("tulpar", &id, "funds_held")?;
    let seller_view =
        w.client.get(&format!("/v1/nodes/tulpar/accounts/{seller}/holds")).map_err(|e| fail("holds", e))?;
    ensure(
        seller_view[0]["role"] == "payee"
            && seller_view[0]["status"] == "held"
            && u(&seller_view[0]["share_tiyn"]) == price,
        || format!("the seller's bank does not see the hold: {seller_view}"),
    )?;
    out.push("Tulpar Bank is told: funds held on the seller's behalf by event 1".into());
    expect_code(
        w.transfer("steppe", &buyer, json!({"phone": World::phone(30, 2)}), spendable + 1),
        "INSUFFICIENT_FUNDS",
        "spending held funds",
    )?;
    out.push("The buyer cannot spend the held funds: INSUFFICIENT_FUNDS beyond the spendable part".into());

    let released = w
        .occurrence(
            &registry,
            &id,
            json!({"occurrence_id": "OwnershipTransferred XTA210990Y2765432", "outcome": "occurred"}),
        )
        .map_err(|e| fail("OwnershipTransferred", e))?;
    ensure(w.dt("tulpar", &seller)? == price, || "seller not paid the price".into())?;
    ensure(w.dt("treasury", &tsa)? == fees, || "fees not paid to the treasury account".into())?;
    ensure(w.dt_split("steppe", &buyer)? == (6_000_000_00 - price - fees, 0, 6_000_000_00 - price - fees), || {
        "buyer balance after release".into()
    })?;
    let tx = released["tx_id"].as_str().unwrap_or_default().to_string();
    let status = w.client.get(&format!("/v1/transactions/{tx}")).map_err(|e| fail("tx status", e))?;
    ensure(status["committed"] == true, || "release not committed".into())?;
    out.push(format!(
        "The registry reports OwnershipTransferred: one transaction {} pays the seller {} and the Treasury {}",
        short(&released["tx_id"]),
        tenge(price),
        tenge(fees)
    ));
    let event = w.event(&id)?;
    ensure(event["status"] == "completed", || format!("event status {}", event["status"]))?;
    ensure(actions(&event) == ["registered", "held", "released"], || format!("records {:?}", actions(&event)))?;
    w.records_verify(&event)?;
    out.push("Event history: registered, held, released; every record verifies with the oracle's key".into());
    let again = w
        .occurrence(
            &registry,
            &id,
            json!({"occurrence_id": "OwnershipTransferred XTA210990Y2765432", "outcome": "occurred"}),
        )
        .map_err(|e| fail("repeat", e))?;
    ensure(again["repeated"] == true && again["tx_id"] == released["tx_id"], || "repeat paid again".into())?;
    ensure(w.dt("tulpar", &seller)? == price, || "seller paid twice".into())?;
    out.push("The registry's retry of the same occurrence pays nothing again".into());
    Ok(())
}

pub(crate) fn vehicle_sale_refunds(w: &World, out: &mut Vec<String>) -> Check {
    let (buyer, seller) = (World::iin(31, 1), World::iin(31, 2));
    w.open("steppe", "individual", &buyer, "Asel Nurlanova", None).map_err(|e| fail("buyer", e))?;
    w.open("sapa", "individual", &seller, "Erlan Tokayev", None).map_err(|e| fail("seller", e))?;
    let tsa = w.treasury_account(31)?;
    w.give_dt("steppe", &buyer, 4_000_000_00)?;
    let portal = w.provider("smart-contract-portal", "Smart-contract portal", "contract_portal")?;
    let registry = w.provider("vehicle-registry", "Vehicle registry (MIA)", "vehicle_registry")?;
    let (price, fees) = (3_500_000_00, 2 * MCI_TIYN);
    let sale = |vin: &str| {
        json!({
            "reference": format!("sale contract, VIN {vin}"),
            "kind": "single",
            "sender": {"bank": "steppe", "client_id": buyer},
            "payees": [
                {"bank": "sapa", "client_id": seller, "amount_tiyn": price},
                {"bank": "treasury", "client_id": tsa, "amount_tiyn": fees}
            ],
            "valid_for_ms": DAY_MS,
            "confirmed_by": "vehicle-registry"
        })
    };

    // Timeout: the registry never answers.
    let first = w.register_event(&portal, sale("KMHEC41LBGA000001")).map_err(|e| fail("event", e))?;
    let id = id_of(&first);
    w.hold("steppe", json!({"event_id": id})).map_err(|e| fail("hold", e))?;
    ensure(w.dt_split("steppe", &buyer)?.1 == price + fees, || "not held".into())?;
    let clock = w.advance(DAY_MS).map_err(|e| fail("advance 24 h", e))?;
    ensure(
        clock["expired_events"].as_array().is_some_and(|e| e.iter().any(|x| x.as_str() == Some(id.as_str()))),
        || format!("event {id} did not expire: {clock}"),
    )?;
    ensure(w.dt_split("steppe", &buyer)? == (4_000_000_00, 0, 4_000_000_00), || "buyer not refunded".into())?;
    ensure(w.dt("sapa", &seller)? == 0 && w.dt("treasury", &tsa)? == 0, || "someone was paid".into())?;
    let event = w.event(&id)?;
    ensure(event["status"] == "expired" && event["reason"].is_string(), || format!("event {event}"))?;
    out.push(format!(
        "Event {id}: {} held, no registry answer in 24 hours -> returned to the buyer automatically ({}), no fees",
        tenge(price + fees),
        event["reason"].as_str().unwrap_or_default()
    ));
    expect_code(
        w.occurrence(&registry, &id, json!({"occurrence_id": "late", "outcome": "occurred"})),
        "EVENT_EXPIRED",
        "late OwnershipTransferred",
    )?;
    out.push("A late OwnershipTransferred is refused: EVENT_EXPIRED".into());

    // Rejection: the registry refuses the transfer.
    let second = w.register_event(&portal, sale("KMHEC41LBGA000002")).map_err(|e| fail("event 2", e))?;
    let id = id_of(&second);
    w.hold("steppe", json!({"event_id": id})).map_err(|e| fail("hold 2", e))?;
    let reason = "the vehicle is under arrest: registration refused";
    let rejected = w
        .occurrence(&registry, &id, json!({"occurrence_id": "reject-1", "outcome": "rejected", "reason": reason}))
        .map_err(|e| fail("reject", e))?;
    ensure(w.dt_split("steppe", &buyer)? == (4_000_000_00, 0, 4_000_000_00), || "buyer not refunded".into())?;
    ensure(w.dt("sapa", &seller)? == 0 && w.dt("treasury", &tsa)? == 0, || "someone was paid".into())?;
    let event = w.event(&id)?;
    ensure(event["status"] == "rejected" && event["reason"] == reason, || format!("event {event}"))?;
    ensure(actions(&event) == ["registered", "held", "rejected"], || format!("records {:?}", actions(&event)))?;
    w.records_verify(&event)?;
    w.told("steppe", &id, "funds_returned")?;
    out.push(format!(
        "Event {id}: the registry rejects ('{reason}') -> tx {} returns everything to the buyer; reason recorded",
        short(&rejected["tx_id"])
    ));
    Ok(())
}

pub(crate) fn farm_animals(w: &World, out: &mut Vec<String>) -> Check {
    let farmer = World::iin(32, 1);
    let sellers = [("steppe", World::iin(32, 2)), ("tulpar", World::iin(32, 3)), ("sapa", World::iin(32, 4))];
    w.open("sapa", "legal_entity", &farmer, "Berekeli Farm LLP", None).map_err(|e| fail("farmer", e))?;
    for (n, (bank, id)) in sellers.iter().enumerate() {
        w.open(bank, "legal_entity", id, &format!("Livestock seller {}", n + 1), None)
            .map_err(|e| fail("seller", e))?;
    }
    // The microloan arrives on the farmer's account as DT.
    let loan = 7_000_000_00;
    w.give_dt("sapa", &farmer, loan)?;
    let portal = w.provider("smart-contract-portal", "Smart-contract portal", "contract_portal")?;
    let animals = w.provider("animal-registry", "Farm-animal registry (IFA)", "animal_registry")?;
    let shares = [2_800_000_00u64, 2_100_000_00, 1_400_000_00];
    let payees: Vec<Value> = sellers
        .iter()
        .zip(shares)
        .map(|((bank, id), amount)| json!({"bank": bank, "client_id": id, "amount_tiyn": amount}))
        .collect();
    let event = w
        .register_event(
            &portal,
            json!({"reference": "microloan ML-0007: 40 head of cattle", "kind": "single",
                   "sender": {"bank": "sapa", "client_id": farmer}, "payees": payees,
                   "valid_for_ms": 30 * DAY_MS, "confirmed_by": "animal-registry"}),
        )
        .map_err(|e| fail("event", e))?;
    let id = id_of(&event);
    w.hold("sapa", json!({"event_id": id})).map_err(|e| fail("hold", e))?;
    let total: u64 = shares.iter().sum();
    ensure(w.dt_split("sapa", &farmer)?.1 == total, || "loan not held".into())?;
    out.push(format!("Microloan ML-0007: {} held on Berekeli Farm for three sellers (event {id})", tenge(total)));
    // The registry re-registers the animals of sellers 1 and 2; seller 3's are not delivered.
    let released = w
        .occurrence(
            &animals,
            &id,
            json!({"occurrence_id": "re-registration 2026-11-23", "outcome": "occurred", "payouts": [
                {"bank": sellers[0].0, "client_id": sellers[0].1, "amount_tiyn": shares[0]},
                {"bank": sellers[1].0, "client_id": sellers[1].1, "amount_tiyn": shares[1]}
            ]}),
        )
        .map_err(|e| fail("re-registration", e))?;
    ensure(w.dt(sellers[0].0, &sellers[0].1)? == shares[0], || "seller 1 not paid".into())?;
    ensure(w.dt(sellers[1].0, &sellers[1].1)? == shares[1], || "seller 2 not paid".into())?;
    ensure(w.dt(sellers[2].0, &sellers[2].1)? == 0, || "seller 3 paid without re-registration".into())?;
    ensure(w.dt_split("sapa", &farmer)? == (loan - shares[0] - shares[1], 0, loan - shares[0] - shares[1]), || {
        "farmer balance".into()
    })?;
    let event = w.event(&id)?;
    ensure(actions(&event) == ["registered", "held", "released", "returned"], || format!("{:?}", actions(&event)))?;
    out.push(format!(
        "The registry re-registers the animals of sellers 1 and 2: tx {} pays {} and {}; seller 3's {} returns to the farmer",
        short(&released["tx_id"]),
        tenge(shares[0]),
        tenge(shares[1]),
        tenge(shares[2])
    ));
    Ok(())
}

pub(crate) fn investment_subsidy(w: &World, out: &mut Vec<String>) -> Check {
    let agency = World::iin(33, 1);
    let leasing = World::iin(33, 2);
    w.open("treasury", "government_agency", &agency, "Agrarian Credit Subsidy Agency", None)
        .map_err(|e| fail("agency", e))?;
    w.open("tulpar", "legal_entity", &leasing, "KazAgroLeasing JSC", None).map_err(|e| fail("leasing", e))?;
    w.give_dt("treasury", &agency, 50_000_000_00)?;
    let ssis = w.provider("subsidy-system", "State subsidy system (SSIS)", "subsidy_system")?;
    let subsidy = |reference: &str| {
        json!({"reference": reference, "kind": "single",
               "sender": {"bank": "treasury", "client_id": agency},
               "payees": [{"bank": "tulpar", "client_id": leasing, "amount_tiyn": 12_000_000_00u64}],
               "valid_for_ms": 180 * DAY_MS})
    };
    let first =
        w.register_event(&ssis, subsidy("investment subsidy IS-2026-114: 2 combines")).map_err(|e| fail("event", e))?;
    let id = id_of(&first);
    w.hold("treasury", json!({"event_id": id})).map_err(|e| fail("hold", e))?;
    ensure(w.dt_split("treasury", &agency)?.1 == 12_000_000_00, || "not held on the Treasury node".into())?;
    w.advance(40 * DAY_MS).map_err(|e| fail("advance", e))?;
    w.occurrence(&ssis, &id, json!({"occurrence_id": "IS-2026-114 approved", "outcome": "occurred"}))
        .map_err(|e| fail("subsidy event", e))?;
    ensure(w.dt("tulpar", &leasing)? == 12_000_000_00, || "leasing company not paid".into())?;
    out.push(format!(
        "{} held on the Treasury node for IS-2026-114; 40 days later the subsidy system approves -> paid to KazAgroLeasing",
        tenge(12_000_000_00)
    ));
    let second =
        w.register_event(&ssis, subsidy("investment subsidy IS-2026-115: seeder")).map_err(|e| fail("event", e))?;
    let id = id_of(&second);
    w.hold("treasury", json!({"event_id": id})).map_err(|e| fail("hold 2", e))?;
    w.advance(179 * DAY_MS).map_err(|e| fail("advance 179 d", e))?;
    ensure(w.event(&id)?["status"] == "held", || "expired early".into())?;
    w.advance(DAY_MS).map_err(|e| fail("advance 180 d", e))?;
    let event = w.event(&id)?;
    ensure(event["status"] == "expired", || format!("not expired after 180 days: {}", event["status"]))?;
    ensure(w.dt_split("treasury", &agency)? == (38_000_000_00, 0, 38_000_000_00), || "agency not refunded".into())?;
    ensure(w.dt("tulpar", &leasing)? == 12_000_000_00, || "leasing paid for the expired subsidy".into())?;
    out.push(format!("IS-2026-115: no subsidy event in 180 days -> {} back to the agency", tenge(12_000_000_00)));
    Ok(())
}

pub(crate) fn transit_fares(w: &World, out: &mut Vec<String>) -> Check {
    let (rider, operator) = (World::iin(34, 1), World::iin(34, 2));
    w.open("steppe", "individual", &rider, "Dana Pupil", None).map_err(|e| fail("rider", e))?;
    w.open("tulpar", "legal_entity", &operator, "Astana LRT Transit Operator", None)
        .map_err(|e| fail("operator", e))?;
    w.give_dt("steppe", &rider, 2_000_00)?;
    let onay = w.provider("onay", "Onay transit-card validators", "transit_validators")?;
    let fare = 150_00;
    let event = w
        .register_event(
            &onay,
            json!({"reference": "Onay card 9643 1044 0000 0001", "kind": "infinite",
                   "sender": {"bank": "steppe", "client_id": rider},
                   "payees": [{"bank": "tulpar", "client_id": operator, "amount_tiyn": fare}],
                   "valid_for_ms": 30 * DAY_MS}),
        )
        .map_err(|e| fail("event", e))?;
    let id = id_of(&event);
    w.hold("steppe", json!({"event_id": id, "amount_tiyn": 1_000_00})).map_err(|e| fail("hold", e))?;
    for ride in 1..=6 {
        w.occurrence(&onay, &id, json!({"occurrence_id": format!("tap-{ride}"), "outcome": "occurred"}))
            .map_err(|e| fail("tap", e))?;
    }
    ensure(w.dt("tulpar", &operator)? == 6 * fare, || "operator not paid six fares".into())?;
    ensure(w.dt_split("steppe", &rider)? == (2_000_00 - 6 * fare, 1_000_00 - 6 * fare, 1_000_00), || {
        "rider balances after six rides".into()
    })?;
    expect_code(
        w.occurrence(&onay, &id, json!({"occurrence_id": "tap-7", "outcome": "occurred"})),
        "LIMIT_EXCEEDED",
        "seventh ride",
    )?;
    out.push(format!(
        "{} held for Onay rides; six taps pay the operator {} each; the seventh exceeds what is held: LIMIT_EXCEEDED",
        tenge(1_000_00),
        tenge(fare)
    ));
    w.advance(30 * DAY_MS).map_err(|e| fail("advance", e))?;
    ensure(w.dt_split("steppe", &rider)? == (1_100_00, 0, 1_100_00), || "remainder not returned".into())?;
    out.push(format!("After 30 days the remaining {} returns to the rider", tenge(1_000_00 - 6 * fare)));
    Ok(())
}

pub(crate) fn holding_bad_input(w: &World, out: &mut Vec<String>) -> Check {
    let (buyer, seller) = (World::iin(35, 1), World::iin(35, 2));
    w.open("steppe", "individual", &buyer, "Careful Buyer", None).map_err(|e| fail("buyer", e))?;
    w.open("tulpar", "individual", &seller, "Careful Seller", None).map_err(|e| fail("seller", e))?;
    w.give_dt("steppe", &buyer, 1_000_00)?;
    let portal = w.provider("smart-contract-portal", "Smart-contract portal", "contract_portal")?;
    let registry = w.provider("vehicle-registry", "Vehicle registry (MIA)", "vehicle_registry")?;
    let body = |amount: u64| {
        json!({"reference": "bad-input checks", "kind": "single",
               "sender": {"bank": "steppe", "client_id": buyer},
               "payees": [{"bank": "tulpar", "client_id": seller, "amount_tiyn": amount}],
               "valid_for_ms": HOUR_MS, "confirmed_by": "vehicle-registry"})
    };
    let before = (w.dt_split("steppe", &buyer)?, w.dt("tulpar", &seller)?);
    let unchanged = |what: &str| -> Check {
        let now = (w.dt_split("steppe", &buyer)?, w.dt("tulpar", &seller)?);
        ensure(now == before, || format!("{what} changed balances: {before:?} -> {now:?}"))
    };
    let mut checks: Vec<(&str, &str)> = Vec::new();
    let mut check = |result: CallResult, code: &'static str, what: &'static str| -> Check {
        expect_code(result, code, what)?;
        unchanged(what)?;
        checks.push((what, code));
        Ok(())
    };
    check(w.client.post("/v1/oracle/events", &body(100_00)), "UNAUTHORIZED", "event without a provider token")?;
    check(w.register_event("not-a-token", body(100_00)), "UNAUTHORIZED", "event with a forged token")?;
    check(w.hold("steppe", json!({"event_id": "EV9999999"})), "NOT_FOUND", "hold of an unknown event")?;
    let big = id_of(&w.register_event(&portal, body(5_000_00)).map_err(|e| fail("event", e))?);
    check(w.hold("steppe", json!({"event_id": big})), "INSUFFICIENT_FUNDS", "hold above the balance")?;
    let id = id_of(&w.register_event(&portal, body(400_00)).map_err(|e| fail("event", e))?);
    check(w.hold("tulpar", json!({"event_id": id})), "FORBIDDEN", "hold by a bank that is not the sender's")?;
    check(
        w.occurrence(&registry, &id, json!({"occurrence_id": "early", "outcome": "occurred"})),
        "CONFLICT",
        "release before the hold",
    )?;
    w.hold("steppe", json!({"event_id": id})).map_err(|e| fail("hold", e))?;
    let before_held = w.dt_split("steppe", &buyer)?;
    ensure(before_held.1 == 400_00, || "not held".into())?;
    let held_state = || -> Check {
        ensure(w.dt_split("steppe", &buyer)? == before_held && w.dt("tulpar", &seller)? == 0, || {
            "balances moved".into()
        })
    };
    let mut held_check = |result: CallResult, code: &'static str, what: &'static str| -> Check {
        expect_code(result, code, what)?;
        held_state()?;
        checks.push((what, code));
        Ok(())
    };
    held_check(w.hold("steppe", json!({"event_id": id})), "CONFLICT", "second hold of a single event")?;
    held_check(
        w.occurrence(&portal, &id, json!({"occurrence_id": "x", "outcome": "occurred"})),
        "FORBIDDEN",
        "occurrence from a provider that does not confirm the event",
    )?;
    held_check(
        w.occurrence(
            &registry,
            &id,
            json!({"occurrence_id": "x", "outcome": "occurred", "payouts": [
            {"bank": "steppe", "client_id": buyer, "amount_tiyn": 100_00}]}),
        ),
        "RECIPIENT_NOT_ALLOWED",
        "payout to someone who is not a payee",
    )?;
    held_check(
        w.occurrence(
            &registry,
            &id,
            json!({"occurrence_id": "x", "outcome": "occurred", "payouts": [
            {"bank": "tulpar", "client_id": seller, "amount_tiyn": 400_01}]}),
        ),
        "LIMIT_EXCEEDED",
        "payout above the payee's share",
    )?;
    held_check(
        w.transfer("steppe", &buyer, json!({"client_id": seller, "bank": "tulpar"}), 600_01),
        "INSUFFICIENT_FUNDS",
        "plain transfer reaching into held funds",
    )?;
    w.advance(HOUR_MS).map_err(|e| fail("advance", e))?;
    expect_code(w.hold("steppe", json!({"event_id": big})), "EVENT_EXPIRED", "hold of an expired event")?;
    checks.push(("hold of an expired event", "EVENT_EXPIRED"));
    ensure(w.dt_split("steppe", &buyer)? == before.0, || "expiry did not return the held funds".into())?;
    for (what, code) in &checks {
        out.push(format!("{what}: {code}, balances untouched"));
    }
    Ok(())
}
