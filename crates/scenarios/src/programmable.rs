//! The programmable-money scenarios of SPEC §5, driven through the REST API like the rest:
//! providers authenticate with their tokens, banks hold their clients' funds, the oracle's
//! decisions move them, and the clock is advanced through the API (no sleeping).

use crate::client::CallResult;
use crate::scenarios::{ensure, expect_code, fail, short, tenge, u, Check, World};
use dtenge_api::types::Record;
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
            list.iter().any(|n| n["subject_id"].as_str() == Some(event_id) && n["kind"].as_str() == Some(kind))
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
    let seller_holds =
        w.client.get(&format!("/v1/nodes/tulpar/accounts/{seller}/holds")).map_err(|e| fail("holds", e))?;
    let seller_view = &seller_holds["holds"];
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

impl World {
    /// Balances of an account: (DT total, marked, VAT-marked, spendable).
    fn dt_kinds(&self, bank: &str, client: &str) -> Result<(u64, u64, u64, u64), String> {
        let b = &self.account(bank, client)?["balance"];
        Ok((u(&b["dt_tiyn"]), u(&b["dt_marked_tiyn"]), u(&b["dt_vat_tiyn"]), u(&b["dt_spendable_tiyn"])))
    }

    fn marked(&self, bank: &str, marking: &str, from: &str, to_bank: &str, to: &str, tiyn: u64) -> CallResult {
        self.client.post(
            &format!("/v1/nodes/{bank}/marked-transfers"),
            &json!({"marking_id": marking, "from": from, "to": {"bank": to_bank, "client_id": to}, "amount_tiyn": tiyn}),
        )
    }
}

fn moves(marking: &Value) -> usize {
    marking["moves"].as_array().map_or(0, Vec::len)
}

pub(crate) fn national_fund(w: &World, out: &mut Vec<String>) -> Check {
    let ministry = World::iin(40, 1);
    let contractor = World::iin(40, 2);
    let banks = ["steppe", "tulpar", "sapa", "steppe", "tulpar"];
    let suppliers: Vec<(String, String)> =
        (0..5).map(|i| (banks[i].to_string(), World::iin(40, 10 + i as u32))).collect();
    let outsider = World::iin(40, 30);
    w.open("treasury", "government_agency", &ministry, "Ministry of Energy (National Fund programme)", None)
        .map_err(|e| fail("ministry", e))?;
    w.open("steppe", "legal_entity", &contractor, "QazaqGaz Construction LLP", None)
        .map_err(|e| fail("contractor", e))?;
    for (n, (bank, id)) in suppliers.iter().enumerate() {
        w.open(bank, "legal_entity", id, &format!("Final supplier {}", n + 1), None)
            .map_err(|e| fail("supplier", e))?;
    }
    w.open("sapa", "legal_entity", &outsider, "Unrelated Trading LLP", None).map_err(|e| fail("outsider", e))?;
    let tranche = 164_000_000_000_00u64;
    w.give_dt("treasury", &ministry, tranche)?;
    let recipients: Vec<Value> = suppliers.iter().map(|(b, id)| json!({"bank": b, "client_id": id})).collect();
    let marking = w
        .client
        .post(
            "/v1/nodes/treasury/markings",
            &json!({"initiator": ministry, "reference": "National Fund tranche 2026-1: gas pipeline Beineu-Bozoi-Shymkent",
                    "levels": [
                        {"recipients": [{"bank": "steppe", "client_id": contractor}], "limit_tiyn": tranche},
                        {"recipients": recipients, "limit_tiyn": tranche}
                    ]}),
        )
        .map_err(|e| fail("marking", e))?;
    let id = marking["id"].as_str().unwrap_or_default().to_string();
    w.marked("treasury", &id, &ministry, "steppe", &contractor, tranche).map_err(|e| fail("tranche", e))?;
    let (dt, marked, _, spendable) = w.dt_kinds("steppe", &contractor)?;
    ensure(dt == tranche && marked == tranche && spendable == 0, || "tranche not marked at the contractor".into())?;
    out.push(format!(
        "Treasury marks {} for the general contractor (marking {id}: contractor, then up to 5 final suppliers)",
        tenge(tranche)
    ));
    expect_code(
        w.transfer("steppe", &contractor, json!({"client_id": outsider, "bank": "sapa"}), 1_00),
        "INSUFFICIENT_FUNDS",
        "plain transfer of marked funds",
    )?;
    expect_code(
        w.marked("steppe", &id, &contractor, "sapa", &outsider, 1_000_00),
        "RECIPIENT_NOT_ALLOWED",
        "marked transfer outside the list",
    )?;
    ensure(w.dt_kinds("steppe", &contractor)?.1 == tranche, || "funds left after a refused transfer".into())?;
    out.push("A transfer outside the list is refused (RECIPIENT_NOT_ALLOWED) and the funds stay; a plain transfer cannot reach marked DT".into());
    let shares = [50_000_000_000_00u64, 40_000_000_000_00, 30_000_000_000_00, 24_000_000_000_00, 20_000_000_000_00];
    for ((bank, supplier), share) in suppliers.iter().zip(shares) {
        w.marked("steppe", &id, &contractor, bank, supplier, share).map_err(|e| fail("pay supplier", e))?;
        let (dt, marked, _, spendable) = w.dt_kinds(bank, supplier)?;
        ensure(dt == share && marked == 0 && spendable == share, || "supplier did not get standard DT".into())?;
    }
    ensure(w.dt_kinds("steppe", &contractor)? == (0, 0, 0, 0), || "contractor keeps marked funds".into())?;
    out.push(format!(
        "The contractor pays the five final suppliers {}; at the last level the marking is removed (standard DT)",
        shares.iter().map(|s| tenge(*s)).collect::<Vec<_>>().join(", ")
    ));
    let trace = w.client.get(&format!("/v1/oracle/markings/{id}")).map_err(|e| fail("trace", e))?;
    ensure(moves(&trace) == 6, || format!("the trace has {} moves, not 6", moves(&trace)))?;
    let notes = w.client.get("/v1/nodes/treasury/notifications?limit=1000").map_err(|e| fail("notes", e))?;
    let reported = notes["notifications"]
        .as_array()
        .map_or(0, |l| l.iter().filter(|n| n["subject_id"] == id.as_str() && n["kind"] == "marked_transfer").count());
    ensure(reported == 6, || format!("the Treasury was told of {reported} moves, not 6"))?;
    out.push("The oracle's trace shows all 6 moves, each signed; the Treasury node was told of every one".into());
    let supplier = &suppliers[0];
    w.client
        .post(
            &format!("/v1/nodes/{}/accounts/{}/from-dt", supplier.0, supplier.1),
            &json!({"amount_tiyn": 1_000_000_00u64}),
        )
        .map_err(|e| fail("supplier converts", e))?;
    out.push("A final supplier converts part of its (now standard) DT to bank money".into());
    Ok(())
}

pub(crate) fn road_repair(w: &World, out: &mut Vec<String>) -> Check {
    let committee = World::iin(41, 1);
    let contractor = World::iin(41, 2);
    let sub = World::iin(41, 3);
    let plant = World::iin(41, 4);
    w.open("treasury", "government_agency", &committee, "Committee for Roads", None)
        .map_err(|e| fail("committee", e))?;
    w.open("tulpar", "legal_entity", &contractor, "KazAvtoZhol Repair LLP", None).map_err(|e| fail("contractor", e))?;
    w.open("sapa", "legal_entity", &sub, "Dorstroy Subcontractor LLP", None).map_err(|e| fail("sub", e))?;
    w.open("steppe", "legal_entity", &plant, "Asphalt Plant No. 3 JSC", None).map_err(|e| fail("plant", e))?;
    let advance = 100_000_000_00u64;
    w.give_dt("treasury", &committee, advance)?;
    let marking = w
        .client
        .post(
            "/v1/nodes/treasury/markings",
            &json!({"initiator": committee, "reference": "mid-life repair, highway A-2 km 120-168: advance",
            "levels": [
                {"recipients": [{"bank": "tulpar", "client_id": contractor}], "limit_tiyn": advance},
                {"recipients": [{"bank": "sapa", "client_id": sub}], "limit_tiyn": 60_000_000_00u64},
                {"recipients": [{"bank": "steppe", "client_id": plant}], "limit_tiyn": 45_000_000_00u64}
            ]}),
        )
        .map_err(|e| fail("marking", e))?;
    let id = marking["id"].as_str().unwrap_or_default().to_string();
    w.marked("treasury", &id, &committee, "tulpar", &contractor, advance).map_err(|e| fail("advance", e))?;
    out.push(format!("The Committee for Roads advances {} marked down three levels (marking {id})", tenge(advance)));
    expect_code(
        w.marked("tulpar", &id, &contractor, "steppe", &plant, 1_000_00),
        "WRONG_LEVEL",
        "contractor paying the level-3 plant directly",
    )?;
    expect_code(
        w.marked("tulpar", &id, &contractor, "sapa", &sub, 70_000_000_00),
        "LIMIT_EXCEEDED",
        "subcontract above the level limit",
    )?;
    ensure(w.dt_kinds("tulpar", &contractor)?.1 == advance, || "funds moved on a refused transfer".into())?;
    out.push("Skipping a level is refused (WRONG_LEVEL); 70 m to the subcontractor exceeds its 60 m level limit (LIMIT_EXCEEDED)".into());
    w.marked("tulpar", &id, &contractor, "sapa", &sub, 60_000_000_00).map_err(|e| fail("subcontract", e))?;
    ensure(w.dt_kinds("sapa", &sub)?.1 == 60_000_000_00, || "subcontractor's DT not marked at level 2".into())?;
    w.marked("sapa", &id, &sub, "steppe", &plant, 45_000_000_00).map_err(|e| fail("asphalt", e))?;
    let (dt, marked, _, spendable) = w.dt_kinds("steppe", &plant)?;
    ensure(dt == 45_000_000_00 && marked == 0 && spendable == dt, || "plant did not receive standard DT".into())?;
    let (_, contractor_marked, _, _) = w.dt_kinds("tulpar", &contractor)?;
    ensure(contractor_marked == 40_000_000_00, || "contractor's remaining advance".into())?;
    out.push(format!(
        "Contractor -> subcontractor {} (still marked) -> asphalt plant {} (standard: marking removed); {} stays marked at the contractor",
        tenge(60_000_000_00),
        tenge(45_000_000_00),
        tenge(40_000_000_00)
    ));
    Ok(())
}

pub(crate) fn digital_vat(w: &World, out: &mut Vec<String>) -> Check {
    let (le1, le2, le3) = (World::iin(42, 1), World::iin(42, 2), World::iin(42, 3));
    let tax = World::iin(42, 9);
    w.open("steppe", "legal_entity", &le1, "LE1 Build Materials LLP", None).map_err(|e| fail("LE1", e))?;
    w.open("tulpar", "legal_entity", &le2, "LE2 Wholesale LLP", None).map_err(|e| fail("LE2", e))?;
    w.open("sapa", "legal_entity", &le3, "LE3 Logistics LLP", None).map_err(|e| fail("LE3", e))?;
    w.open("treasury", "government_agency", &tax, "State Revenue Committee: VAT account", None)
        .map_err(|e| fail("tax", e))?;
    let esf = w.provider("esf", "E-invoice system (ESF), State Revenue Committee", "tax_authority")?;
    w.client
        .put_bearer("/v1/oracle/tax-account", &json!({"bank": "treasury", "client_id": tax}), &esf)
        .map_err(|e| fail("tax account", e))?;
    for (bank, id) in [("steppe", &le1), ("tulpar", &le2), ("sapa", &le3)] {
        w.client
            .post_bearer("/v1/oracle/vat-payers", &json!({"bank": bank, "client_id": id}), &esf)
            .map_err(|e| fail("VAT payer", e))?;
    }
    w.give_dt("steppe", &le1, 1_120_00)?;
    let invoice = |id: &str, seller: (&str, &str), buyer: (&str, &str), net: u64, vat: u64| {
        json!({"id": id, "seller": {"bank": seller.0, "client_id": seller.1}, "buyer": {"bank": buyer.0, "client_id": buyer.1},
               "net_tiyn": net, "vat_tiyn": vat})
    };
    w.client
        .post_bearer(
            "/v1/oracle/invoices",
            &invoice("ESF-2026-0001", ("tulpar", &le2), ("steppe", &le1), 1_000_00, 120_00),
            &esf,
        )
        .map_err(|e| fail("invoice 1", e))?;
    w.client
        .post_bearer(
            "/v1/oracle/invoices",
            &invoice("ESF-2026-0002", ("sapa", &le3), ("tulpar", &le2), 500_00, 60_00),
            &esf,
        )
        .map_err(|e| fail("invoice 2", e))?;
    let pay = |bank: &str, from: &str, id: &str, total: u64| {
        w.client.post(
            &format!("/v1/nodes/{bank}/invoice-payments"),
            &json!({"invoice_id": id, "from": from, "amount_tiyn": total}),
        )
    };
    expect_code(pay("steppe", &le1, "ESF-FAKE-1", 1_120_00), "NOT_FOUND", "fictitious invoice")?;
    expect_code(pay("steppe", &le1, "ESF-2026-0001", 1_100_00), "INVOICE_MISMATCH", "amount differs")?;
    expect_code(pay("steppe", &le1, "ESF-2026-0002", 560_00), "INVOICE_MISMATCH", "payer is not the buyer")?;
    let first = pay("steppe", &le1, "ESF-2026-0001", 1_120_00).map_err(|e| fail("pay invoice 1", e))?;
    ensure(u(&first["vat_from_standard_tiyn"]) == 120_00, || "LE1's VAT should come from marked standard DT".into())?;
    ensure(w.dt_kinds("tulpar", &le2)? == (1_120_00, 0, 120_00, 1_000_00), || {
        format!("LE2 after invoice 1: {:?}", w.dt_kinds("tulpar", &le2))
    })?;
    out.push("LE1 pays LE2 e-invoice 1,120.00 (VAT 120.00): LE2 holds 1,000.00 standard + 120.00 VAT-marked".into());
    expect_code(pay("steppe", &le1, "ESF-2026-0001", 1_120_00), "CONFLICT", "invoice paid twice")?;
    expect_code(
        w.transfer("tulpar", &le2, json!({"client_id": le3, "bank": "sapa"}), 1_000_01),
        "INSUFFICIENT_FUNDS",
        "plain transfer reaching into VAT-marked DT",
    )?;
    out.push("Paying a fictitious, mismatched or already paid invoice is refused; VAT-marked DT is not spendable by a plain transfer".into());
    let second = pay("tulpar", &le2, "ESF-2026-0002", 560_00).map_err(|e| fail("pay invoice 2", e))?;
    ensure(u(&second["vat_from_vat_tokens_tiyn"]) == 60_00, || "LE2's VAT should come from its VAT-marked DT".into())?;
    ensure(w.dt_kinds("tulpar", &le2)? == (560_00, 0, 60_00, 500_00), || "LE2 after invoice 2".into())?;
    ensure(w.dt_kinds("sapa", &le3)? == (560_00, 0, 60_00, 500_00), || "LE3 after invoice 2".into())?;
    out.push("LE2 pays LE3 e-invoice 560.00 (VAT 60.00) with 500.00 standard + 60.00 of its VAT-marked DT".into());
    for (bank, id) in [("tulpar", &le2), ("sapa", &le3)] {
        w.client
            .post(&format!("/v1/nodes/{bank}/vat-payments"), &json!({"from": id, "amount_tiyn": 60_00}))
            .map_err(|e| fail("pay VAT", e))?;
    }
    ensure(w.dt_kinds("tulpar", &le2)? == (500_00, 0, 0, 500_00), || "LE2 final".into())?;
    ensure(w.dt_kinds("sapa", &le3)? == (500_00, 0, 0, 500_00), || "LE3 final".into())?;
    ensure(w.dt_kinds("treasury", &tax)? == (120_00, 0, 0, 120_00), || "tax account final".into())?;
    let payments = w.client.get("/v1/oracle/vat-payments").map_err(|e| fail("VAT payments", e))?;
    ensure(payments["payments"].as_array().map_or(0, Vec::len) >= 2, || {
        "the tax system does not see the VAT payments".into()
    })?;
    out.push(
        "Both pay 60.00 VAT to the tax account: LE2 500.00, LE3 500.00 standard; tax account 120.00 standard".into(),
    );
    Ok(())
}

pub(crate) fn split_payment(w: &World, out: &mut Vec<String>) -> Check {
    let rider = World::iin(43, 1);
    let driver = World::iin(43, 2);
    let operator = World::iin(43, 3);
    let tax = World::iin(43, 9);
    w.open("steppe", "individual", &rider, "Aruzhan Rider", Some(&World::phone(43, 1)))
        .map_err(|e| fail("rider", e))?;
    w.open("tulpar", "individual", &driver, "Bolat Driver", Some(&World::phone(43, 2)))
        .map_err(|e| fail("driver", e))?;
    w.open("sapa", "legal_entity", &operator, "Yandex Go Kazakhstan LLP", None).map_err(|e| fail("operator", e))?;
    w.open("treasury", "government_agency", &tax, "State Revenue Committee: income tax", None)
        .map_err(|e| fail("tax", e))?;
    w.give_dt("steppe", &rider, 5_000_00)?;
    let receipt = w
        .client
        .post(
            "/v1/nodes/steppe/split-payments",
            &json!({"from": rider, "reference": "ride 2026-11-23 08:14", "lines": [
                {"to": {"phone": World::phone(43, 2)}, "amount_tiyn": 1_700_00},
                {"to": {"client_id": operator, "bank": "sapa"}, "amount_tiyn": 200_00},
                {"to": {"client_id": tax, "bank": "treasury"}, "amount_tiyn": 100_00}
            ]}),
        )
        .map_err(|e| fail("split", e))?;
    ensure(w.dt("tulpar", &driver)? == 1_700_00, || "driver".into())?;
    ensure(w.dt("sapa", &operator)? == 200_00, || "operator".into())?;
    ensure(w.dt("treasury", &tax)? == 100_00, || "tax".into())?;
    ensure(w.dt("steppe", &rider)? == 3_000_00, || "rider".into())?;
    out.push(format!(
        "A 2,000.00 taxi fare in one transaction {}: driver 1,700.00, operator 200.00, tax 100.00",
        short(&receipt["tx_id"])
    ));
    expect_code(
        w.client.post(
            "/v1/nodes/steppe/split-payments",
            &json!({"from": rider, "lines": [
                {"to": {"phone": World::phone(43, 2)}, "amount_tiyn": 1_700_00},
                {"to": {"client_id": World::iin(43, 50), "bank": "sapa"}, "amount_tiyn": 200_00}
            ]}),
        ),
        "UNKNOWN_ACCOUNT",
        "split with an unknown recipient",
    )?;
    ensure(w.dt("steppe", &rider)? == 3_000_00 && w.dt("tulpar", &driver)? == 1_700_00, || "partial split".into())?;
    out.push("A split with one unknown recipient pays no one (atomic)".into());
    Ok(())
}

pub(crate) fn procurement_contracts(w: &World, out: &mut Vec<String>) -> Check {
    let akimat = World::iin(44, 1);
    let contractor = World::iin(44, 2);
    let sub = World::iin(44, 3);
    w.open("treasury", "government_agency", &akimat, "Akimat of Astana", None).map_err(|e| fail("akimat", e))?;
    w.open("steppe", "legal_entity", &contractor, "Astana Stroy General Contractor LLP", None)
        .map_err(|e| fail("contractor", e))?;
    w.open("sapa", "legal_entity", &sub, "Electromontazh Subcontractor LLP", None).map_err(|e| fail("sub", e))?;
    w.give_dt("treasury", &akimat, 100_000_000_00)?;
    let portal = w.provider("smart-contract-portal", "Smart-contract portal", "contract_portal")?;
    let contract =
        |number: &str, sender: (&str, &str), recipient: (&str, &str), max: u64, fiat: u64, funded: Option<&str>| {
            json!({"number": number, "sender": {"bank": sender.0, "client_id": sender.1},
               "recipient": {"bank": recipient.0, "client_id": recipient.1},
               "max_transfer_tiyn": max, "max_fiat_tiyn": fiat, "valid_for_ms": 90 * DAY_MS, "funded_by": funded})
        };
    w.client
        .post_bearer(
            "/v1/oracle/contracts",
            &contract(
                "GZ-2026-0415",
                ("treasury", &akimat),
                ("steppe", &contractor),
                80_000_000_00,
                20_000_000_00,
                None,
            ),
            &portal,
        )
        .map_err(|e| fail("contract", e))?;
    w.client
        .post_bearer(
            "/v1/oracle/contracts",
            &contract(
                "GZ-2026-0415/S1",
                ("steppe", &contractor),
                ("sapa", &sub),
                30_000_000_00,
                30_000_000_00,
                Some("GZ-2026-0415"),
            ),
            &portal,
        )
        .map_err(|e| fail("subcontract", e))?;
    out.push("The portal registers GZ-2026-0415 (akimat -> contractor: 80 m transfer, 20 m withdrawal) and subcontract S1 (30 m)".into());
    let pay = |bank: &str, number: &str, from: &str, tiyn: u64| {
        w.client.post(
            &format!("/v1/nodes/{bank}/contract-payments"),
            &json!({"contract": number, "from": from, "amount_tiyn": tiyn}),
        )
    };
    let withdraw = |bank: &str, number: &str, client: &str, tiyn: u64| {
        w.client.post(
            &format!("/v1/nodes/{bank}/contract-withdrawals"),
            &json!({"contract": number, "client_id": client, "amount_tiyn": tiyn}),
        )
    };
    pay("treasury", "GZ-2026-0415", &akimat, 50_000_000_00).map_err(|e| fail("pay contract", e))?;
    ensure(w.dt_kinds("steppe", &contractor)?.1 == 50_000_000_00, || {
        "contractor's DT not marked by the contract".into()
    })?;
    expect_code(pay("treasury", "GZ-2026-0415", &akimat, 30_000_000_01), "LIMIT_EXCEEDED", "above the transfer limit")?;
    expect_code(
        w.transfer("steppe", &contractor, json!({"client_id": sub, "bank": "sapa"}), 1_00),
        "INSUFFICIENT_FUNDS",
        "plain transfer of contract DT",
    )?;
    expect_code(
        pay("steppe", "GZ-2026-0415", &contractor, 1_00),
        "FORBIDDEN",
        "paying a contract one is not the sender of",
    )?;
    out.push("The akimat pays 50 m under the contract (marked); 30 m more would exceed its 80 m limit; a plain transfer cannot touch it".into());
    withdraw("steppe", "GZ-2026-0415", &contractor, 20_000_000_00).map_err(|e| fail("withdraw", e))?;
    ensure(w.fiat("steppe", &contractor)? == 20_000_000_00, || "withdrawal not credited as bank money".into())?;
    expect_code(withdraw("steppe", "GZ-2026-0415", &contractor, 1_00), "LIMIT_EXCEEDED", "above the withdrawal limit")?;
    out.push("The contractor withdraws 20 m to bank money; one tiyn more exceeds the withdrawal limit".into());
    pay("steppe", "GZ-2026-0415/S1", &contractor, 25_000_000_00).map_err(|e| fail("subcontract payment", e))?;
    withdraw("sapa", "GZ-2026-0415/S1", &sub, 25_000_000_00).map_err(|e| fail("sub withdraws", e))?;
    ensure(w.fiat("sapa", &sub)? == 25_000_000_00, || "subcontractor's bank money".into())?;
    ensure(w.dt_kinds("steppe", &contractor)?.1 == 5_000_000_00, || "contractor's remaining marked DT".into())?;
    let view = w.client.get("/v1/oracle/contracts/GZ-2026-0415").map_err(|e| fail("contract view", e))?;
    ensure(u(&view["transferred_tiyn"]) == 50_000_000_00 && u(&view["withdrawn_tiyn"]) == 20_000_000_00, || {
        format!("limits consumed: {view}")
    })?;
    let notes = w.client.get("/v1/nodes/treasury/notifications?limit=1000").map_err(|e| fail("notes", e))?;
    let reported =
        notes["notifications"].as_array().map_or(0, |l| l.iter().filter(|n| n["kind"] == "contract_use").count());
    ensure(reported == 4, || format!("the akimat was told of {reported} uses, not 4"))?;
    out.push("Subcontract S1: 25 m paid from the contract's DT, withdrawn by the subcontractor; the akimat was told of all 4 uses".into());
    w.advance(90 * DAY_MS).map_err(|e| fail("advance", e))?;
    expect_code(pay("treasury", "GZ-2026-0415", &akimat, 1_00), "CONTRACT_EXPIRED", "after the duration")?;
    out.push("After 90 days nothing moves under the contract: CONTRACT_EXPIRED".into());
    Ok(())
}
