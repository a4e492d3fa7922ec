//! The scenarios. Each returns `Err(reason)` on the first check that fails and writes its
//! story into `lines`.

use crate::client::{ApiFailure, CallResult, Client};
use dtenge_core::money::Amount;
use dtenge_node::ids::{complete_iin_bin, complete_pan};
use serde_json::{json, Value};

/// One scenario.
pub struct Scenario {
    /// The SPEC §4 number (or `+` for the extra flows).
    pub id: &'static str,
    pub title: &'static str,
    pub run: fn(&World, &mut Vec<String>) -> Result<(), String>,
}

/// Every scenario, in SPEC order.
pub const SCENARIOS: &[Scenario] = &[
    Scenario { id: "1", title: "Open a digital account for a legal entity", run: open_legal_entity },
    Scenario { id: "2", title: "Open a digital account for an individual", run: open_individual },
    Scenario { id: "3", title: "Conversion non-cash -> DT, bank <-> NBK (emission via the ABS)", run: bank_emission },
    Scenario { id: "4", title: "Conversion non-cash -> DT, legal entity <-> bank", run: legal_entity_to_dt },
    Scenario { id: "5", title: "Conversion non-cash -> DT, individual <-> bank", run: individual_to_dt },
    Scenario {
        id: "6",
        title: "Payment LE -> LE on a technology integrator's event (school pays canteen)",
        run: voucher,
    },
    Scenario { id: "7", title: "Registry distribution LE -> 10,000 individuals", run: registry },
    Scenario {
        id: "8",
        title: "Transfer individual -> individual by phone, within a bank and between banks",
        run: phone_transfer,
    },
    Scenario { id: "9", title: "Purchase by card in DT at a DT-accepting terminal", run: card_dt },
    Scenario { id: "10", title: "Purchase by card with instant conversion DT -> non-cash", run: card_convert },
    Scenario { id: "11", title: "Conversion DT -> non-cash, legal entity <-> bank", run: legal_entity_from_dt },
    Scenario { id: "12", title: "Conversion DT -> non-cash, individual <-> bank", run: individual_from_dt },
    Scenario { id: "13", title: "Conversion DT -> non-cash, bank <-> NBK (redemption)", run: bank_redemption },
    Scenario { id: "14", title: "Monitoring: emitted, redeemed, in circulation, per bank", run: monitoring },
    Scenario { id: "15", title: "Blocking a bank", run: blocking },
    Scenario { id: "16", title: "Operational-day management", run: operational_day },
    Scenario { id: "+", title: "Refunds of card purchases", run: refunds },
    Scenario { id: "+", title: "Cash withdrawal at an ATM with a DT-linked card", run: atm },
    Scenario { id: "+", title: "Transaction history with counterparties' names", run: history_names },
    Scenario { id: "+", title: "Treasury: government agency accounts and payments to bank clients", run: treasury },
    Scenario { id: "+", title: "Idempotent retries and structured errors", run: idempotency_and_errors },
    Scenario {
        id: "5.1",
        title: "Vehicle sale escrow: hold, OwnershipTransferred, seller and state fees paid in one transaction",
        run: crate::programmable::vehicle_sale,
    },
    Scenario {
        id: "5.1",
        title: "Vehicle sale: 24-hour timeout and registry rejection refund the buyer, no fees",
        run: crate::programmable::vehicle_sale_refunds,
    },
    Scenario {
        id: "5.1",
        title: "Purchase of farm animals: microloan held until the animal registry re-registers, several sellers",
        run: crate::programmable::farm_animals,
    },
    Scenario {
        id: "5.1",
        title: "Investment subsidy held on the Treasury node: released on the subsidy event, back after 180 days",
        run: crate::programmable::investment_subsidy,
    },
    Scenario {
        id: "5.1",
        title: "Infinite event: transit fares released per ride until the held amount runs out",
        run: crate::programmable::transit_fares,
    },
    Scenario {
        id: "5.1",
        title: "Holding: bad input gets a stable error and changes no balance",
        run: crate::programmable::holding_bad_input,
    },
    Scenario {
        id: "5.2",
        title: "National Fund tranche: Treasury -> general contractor -> 5 final suppliers, marking removed at the end",
        run: crate::programmable::national_fund,
    },
    Scenario {
        id: "5.2",
        title: "Mid-life road repair: advance programmed down to the subcontractor",
        run: crate::programmable::road_repair,
    },
    Scenario {
        id: "5.2",
        title: "Marking by parameter: procurement contract and subcontract with transfer and withdrawal limits",
        run: crate::programmable::procurement_contracts,
    },
    Scenario {
        id: "5.3",
        title: "Digital VAT: the worked example LE1 -> LE2 -> LE3 -> tax account",
        run: crate::programmable::digital_vat,
    },
    Scenario {
        id: "5.4",
        title: "Split payment: taxi fare to driver, operator and tax in one transaction",
        run: crate::programmable::split_payment,
    },
];

/// The scenarios' view of the platform: an API client and helpers.
pub struct World {
    pub client: Client,
    /// Oracle providers registered by this world: id -> token (shown once by the API).
    providers: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

pub(crate) type Check = Result<(), String>;

pub(crate) fn fail(context: &str, e: ApiFailure) -> String {
    format!("{context}: {e}")
}

/// How long a scenario waits for what settles after an answer (a payee at another bank, the
/// bank-money legs between banks).
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether `done` becomes true within [`SETTLE_WAIT`], asked every 10 ms.
pub(crate) fn eventually(mut done: impl FnMut() -> Result<bool, String>) -> Result<bool, String> {
    let deadline = std::time::Instant::now() + SETTLE_WAIT;
    loop {
        if done()? {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

pub(crate) fn ensure(condition: bool, message: impl FnOnce() -> String) -> Check {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

pub(crate) fn tenge(tiyn: u64) -> String {
    Amount::from_tiyn(tiyn).map(|a| a.to_string()).unwrap_or_else(|_| format!("{tiyn} tiyn"))
}

/// The first 16 characters of an id, for the report.
pub(crate) fn short(v: &Value) -> String {
    v.as_str().unwrap_or("").chars().take(16).collect()
}

pub(crate) fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(u64::MAX)
}

impl World {
    /// The world of a platform at `base_url`, acting with the API credentials in `credentials`
    /// (a sandbox's `<data>/credentials`).
    pub fn new(base_url: &str, credentials: &std::path::Path) -> Result<World, String> {
        Ok(World { client: Client::with_credentials(base_url, credentials)?, providers: Default::default() })
    }

    /// A valid IIN/BIN unique to a scenario and a number.
    pub fn iin(scenario: u32, n: u32) -> String {
        let mut base = 800_000_000_00u64 + u64::from(scenario) * 1_000_000 + u64::from(n) * 10;
        loop {
            if let Some(iin) = complete_iin_bin(&format!("{base:011}")) {
                return iin;
            }
            base += 1;
        }
    }

    /// A phone number unique to a scenario and a number.
    pub fn phone(scenario: u32, n: u32) -> String {
        format!("+77{:02}{:07}", 10 + scenario % 90, n)
    }

    pub fn pan(scenario: u32, n: u32) -> String {
        complete_pan(&format!("4400{:03}{:08}", scenario, n)).unwrap_or_default()
    }

    pub fn open(&self, bank: &str, kind: &str, id: &str, name: &str, phone: Option<&str>) -> CallResult {
        let mut body = json!({"kind": kind, "client_id": id, "name": name});
        if let Some(p) = phone {
            body["phone"] = json!(p);
        }
        self.client.post(&format!("/v1/nodes/{bank}/accounts"), &body)
    }

    /// Make sure conversions can run today: if the calendar says holiday, the operator opens it.
    pub fn ensure_working_day(&self) -> Check {
        let today = self.client.get("/v1/operator/today").map_err(|e| fail("today", e))?;
        if today["working"].as_bool() != Some(true) {
            let date = today["date"].as_str().unwrap_or_default().to_string();
            self.client
                .put(&format!("/v1/operator/calendar/days/{date}"), &json!({"working": true}))
                .map_err(|e| fail("open today", e))?;
        }
        Ok(())
    }

    /// Give a bank DT liquidity: money arrives on its correspondent account, then it converts
    /// it with the NBK.
    pub fn fund_bank(&self, bank: &str, tiyn: u64) -> Check {
        self.ensure_working_day()?;
        self.client
            .post(&format!("/v1/abs/correspondent/{bank}/credits"), &json!({"amount_tiyn": tiyn}))
            .map_err(|e| fail("ABS credit", e))?;
        self.client
            .post(&format!("/v1/nodes/{bank}/emissions"), &json!({"amount_tiyn": tiyn}))
            .map_err(|e| fail("emission", e))?;
        Ok(())
    }

    /// Give a client DT: bank money arrives, the client converts it.
    pub fn give_dt(&self, bank: &str, client: &str, tiyn: u64) -> Check {
        self.fund_bank(bank, tiyn)?;
        self.client
            .post(&format!("/v1/nodes/{bank}/accounts/{client}/deposits"), &json!({"amount_tiyn": tiyn}))
            .map_err(|e| fail("deposit", e))?;
        self.client
            .post(&format!("/v1/nodes/{bank}/accounts/{client}/to-dt"), &json!({"amount_tiyn": tiyn}))
            .map_err(|e| fail("to DT", e))?;
        Ok(())
    }

    /// The token of oracle provider `id`, registering it (as the NBK operator) on first use.
    pub fn provider(&self, id: &str, name: &str, kind: &str) -> Result<String, String> {
        let mut providers = self.providers.lock().map_err(|_| "provider cache poisoned".to_string())?;
        if let Some(token) = providers.get(id) {
            return Ok(token.clone());
        }
        let credentials = self
            .client
            .post("/v1/oracle/providers", &json!({"id": id, "name": name, "kind": kind}))
            .map_err(|e| fail("register provider", e))?;
        let token = credentials["token"].as_str().ok_or("no token in the provider's credentials")?.to_string();
        providers.insert(id.to_string(), token.clone());
        Ok(token)
    }

    pub fn account(&self, bank: &str, client: &str) -> Result<Value, String> {
        self.client.get(&format!("/v1/nodes/{bank}/accounts/{client}")).map_err(|e| fail("account", e))
    }

    pub fn dt(&self, bank: &str, client: &str) -> Result<u64, String> {
        Ok(u(&self.account(bank, client)?["balance"]["dt_tiyn"]))
    }

    pub fn fiat(&self, bank: &str, client: &str) -> Result<u64, String> {
        Ok(u(&self.account(bank, client)?["balance"]["fiat_tiyn"]))
    }

    pub fn transfer(&self, bank: &str, from: &str, to: Value, tiyn: u64) -> CallResult {
        self.client.post(&format!("/v1/nodes/{bank}/transfers"), &json!({"from": from, "to": to, "amount_tiyn": tiyn}))
    }

    /// The platform reconciles: circulation = liability, nodes and notary agree.
    pub fn reconciled(&self) -> Check {
        let r = self.client.get("/v1/operator/reconciliation").map_err(|e| fail("reconciliation", e))?;
        ensure(r["ok"].as_bool() == Some(true), || format!("reconciliation problems: {}", r["problems"]))
    }
}

pub(crate) fn expect_code(result: CallResult, code: &str, what: &str) -> Check {
    match result {
        Err(e) if e.code == code => Ok(()),
        Err(e) => Err(format!("{what}: expected {code}, got {e}")),
        Ok(v) => Err(format!("{what}: expected {code}, but it succeeded: {v}")),
    }
}

fn open_legal_entity(w: &World, out: &mut Vec<String>) -> Check {
    let bin = World::iin(1, 1);
    let account =
        w.open("steppe", "legal_entity", &bin, "Kokzhiek School No. 12", None).map_err(|e| fail("open", e))?;
    out.push(format!(
        "Steppe Bank opened a DT account for legal entity BIN {bin}: address {}",
        short(&account["address"])
    ));
    expect_code(
        w.open("steppe", "legal_entity", &bin, "Kokzhiek School No. 12", None),
        "DUPLICATE_ACCOUNT",
        "second account at the same bank",
    )?;
    out.push("A second account for the same BIN at Steppe Bank is refused: DUPLICATE_ACCOUNT".into());
    expect_code(w.open("steppe", "legal_entity", "123456789012", "Bad", None), "MALFORMED_INPUT", "bad BIN")?;
    out.push("A BIN with a wrong check digit is refused: MALFORMED_INPUT".into());
    ensure(w.dt("steppe", &bin)? == 0, || "new account is not empty".into())
}

fn open_individual(w: &World, out: &mut Vec<String>) -> Check {
    let iin = World::iin(2, 1);
    let phone = World::phone(2, 1);
    w.open("steppe", "individual", &iin, "Aigerim Seitova", Some(&phone)).map_err(|e| fail("open", e))?;
    out.push(format!("Steppe Bank opened an account for individual IIN {iin}, phone {phone}"));
    w.open("tulpar", "individual", &iin, "Aigerim Seitova", Some(&phone))
        .map_err(|e| fail("open at a second bank", e))?;
    out.push("The same person opened an account at Tulpar Bank too: one account per client per bank".into());
    expect_code(
        w.open("tulpar", "individual", &iin, "Aigerim Seitova", None),
        "DUPLICATE_ACCOUNT",
        "second account at the same bank",
    )?;
    expect_code(
        w.open("sapa", "individual", &World::iin(2, 2), "Other Person", Some(&phone)),
        "DUPLICATE_ACCOUNT",
        "phone of another client",
    )?;
    out.push("Another client cannot take the same phone number: DUPLICATE_ACCOUNT".into());
    let bulk: Vec<Value> = (10..13)
        .map(|n| json!({"kind": "individual", "client_id": World::iin(2, n), "name": format!("Migrated Client {n}")}))
        .collect();
    let opened = w.client.post("/v1/nodes/sapa/accounts/bulk", &json!(bulk)).map_err(|e| fail("bulk open", e))?;
    ensure(opened.as_array().map(Vec::len) == Some(3), || format!("bulk opened {opened}"))?;
    let mut with_duplicate = bulk.clone();
    with_duplicate[0]["client_id"] = json!(World::iin(2, 20));
    expect_code(
        w.client.post("/v1/nodes/sapa/accounts/bulk", &json!(with_duplicate)),
        "DUPLICATE_ACCOUNT",
        "bulk with a duplicate",
    )?;
    // The refused bulk call opened nothing: its first client can still be opened.
    w.open("sapa", "individual", &World::iin(2, 20), "Not opened before", None)
        .map_err(|e| fail("the refused bulk call opened an account", e))?;
    out.push("Sapa Bank migrates 3 clients in one bulk call; a bulk call with one duplicate opens none".into());
    let lookup =
        w.client.get(&format!("/v1/id-center/phones/{}", phone.replace('+', "%2B"))).map_err(|e| fail("lookup", e))?;
    out.push(format!("The ID center resolves {phone} to {} at {}", lookup["display_name"], lookup["banks"]));
    ensure(lookup["display_name"] == "Aigerim S.", || format!("lookup shows {}", lookup["display_name"]))
}

fn bank_emission(w: &World, out: &mut Vec<String>) -> Check {
    w.ensure_working_day()?;
    let before = w.client.get("/v1/abs/balances").map_err(|e| fail("abs", e))?;
    let corr_before = before["balances"]["corr:sapa"].as_i64().unwrap_or(0);
    let liability_before = before["balances"]["dt_liability"].as_i64().unwrap_or(0);
    let own_before = w.dt("sapa", "own")?;
    let amount = 100_000_000_00; // 100 million tenge
    w.client
        .post("/v1/abs/correspondent/sapa/credits", &json!({"amount_tiyn": amount}))
        .map_err(|e| fail("ABS credit", e))?;
    out.push(format!("Sapa Bank's correspondent account in the ABS receives {}", tenge(amount)));
    let r =
        w.client.post("/v1/nodes/sapa/emissions", &json!({"amount_tiyn": amount})).map_err(|e| fail("emission", e))?;
    out.push(format!(
        "Sapa Bank converts {} with the NBK: ABS posting #{} corr:sapa -> dt_liability, then DT issued in tx {}",
        tenge(amount),
        r["abs_posting"]["seq"],
        short(&r["tx_id"])
    ));
    let after = w.client.get("/v1/abs/balances").map_err(|e| fail("abs", e))?;
    ensure(after["balances"]["corr:sapa"].as_i64() == Some(corr_before), || {
        "correspondent account did not return to its balance".into()
    })?;
    ensure(after["balances"]["dt_liability"].as_i64() == Some(liability_before + amount as i64), || {
        "liability did not grow".into()
    })?;
    ensure(w.dt("sapa", "own")? == own_before + amount, || "bank did not receive DT".into())?;
    out.push(format!(
        "DT liability now {}; Sapa Bank holds {} DT",
        tenge(after["balances"]["dt_liability"].as_u64().unwrap_or(0)),
        tenge(w.dt("sapa", "own")?)
    ));
    expect_code(
        w.client.post("/v1/nodes/sapa/emissions", &json!({"amount_tiyn": 1})),
        "INSUFFICIENT_FUNDS",
        "emission without bank money",
    )?;
    out.push("An emission beyond the correspondent balance is refused: INSUFFICIENT_FUNDS, nothing issued".into());
    Ok(())
}

fn to_dt(w: &World, out: &mut Vec<String>, scenario: u32, kind: &str, name: &str) -> Check {
    let id = World::iin(scenario, 1);
    w.open("tulpar", kind, &id, name, None).map_err(|e| fail("open", e))?;
    w.fund_bank("tulpar", 1_000_000_00)?;
    w.client
        .post(&format!("/v1/nodes/tulpar/accounts/{id}/deposits"), &json!({"amount_tiyn": 500_000_00}))
        .map_err(|e| fail("deposit", e))?;
    out.push(format!("{name} has {} in bank money at Tulpar Bank", tenge(500_000_00)));
    w.client
        .post(&format!("/v1/nodes/tulpar/accounts/{id}/to-dt"), &json!({"amount_tiyn": 300_000_00}))
        .map_err(|e| fail("to DT", e))?;
    let (dt, fiat) = (w.dt("tulpar", &id)?, w.fiat("tulpar", &id)?);
    out.push(format!("{name} converts {} to DT: DT {}, bank money {}", tenge(300_000_00), tenge(dt), tenge(fiat)));
    ensure(dt == 300_000_00 && fiat == 200_000_00, || format!("balances DT {dt} fiat {fiat}"))?;
    expect_code(
        w.client.post(&format!("/v1/nodes/tulpar/accounts/{id}/to-dt"), &json!({"amount_tiyn": 200_000_01})),
        "INSUFFICIENT_FUNDS",
        "converting more than held",
    )?;
    out.push("Converting more bank money than held is refused: INSUFFICIENT_FUNDS".into());
    Ok(())
}

fn legal_entity_to_dt(w: &World, out: &mut Vec<String>) -> Check {
    to_dt(w, out, 4, "legal_entity", "Nomad Logistics LLP")
}

fn individual_to_dt(w: &World, out: &mut Vec<String>) -> Check {
    to_dt(w, out, 5, "individual", "Daniyar Akhmetov")
}

fn from_dt(w: &World, out: &mut Vec<String>, scenario: u32, kind: &str, name: &str) -> Check {
    let id = World::iin(scenario, 1);
    w.open("sapa", kind, &id, name, None).map_err(|e| fail("open", e))?;
    w.give_dt("sapa", &id, 200_000_00)?;
    let own_before = w.dt("sapa", "own")?;
    w.client
        .post(&format!("/v1/nodes/sapa/accounts/{id}/from-dt"), &json!({"amount_tiyn": 50_000_00}))
        .map_err(|e| fail("from DT", e))?;
    let (dt, fiat) = (w.dt("sapa", &id)?, w.fiat("sapa", &id)?);
    out.push(format!(
        "{name} converts {} DT to bank money at Sapa Bank: DT {}, bank money {}",
        tenge(50_000_00),
        tenge(dt),
        tenge(fiat)
    ));
    ensure(dt == 150_000_00 && fiat == 50_000_00, || format!("balances DT {dt} fiat {fiat}"))?;
    ensure(w.dt("sapa", "own")? == own_before + 50_000_00, || "bank did not receive the DT".into())?;
    expect_code(
        w.client.post(&format!("/v1/nodes/sapa/accounts/{id}/from-dt"), &json!({"amount_tiyn": 150_000_01})),
        "INSUFFICIENT_FUNDS",
        "converting more DT than held",
    )
}

fn legal_entity_from_dt(w: &World, out: &mut Vec<String>) -> Check {
    from_dt(w, out, 11, "legal_entity", "Shanyrak Construction JSC")
}

fn individual_from_dt(w: &World, out: &mut Vec<String>) -> Check {
    from_dt(w, out, 12, "individual", "Madina Nurlanova")
}

fn voucher(w: &World, out: &mut Vec<String>) -> Check {
    let (school, canteen) = (World::iin(6, 1), World::iin(6, 2));
    w.open("steppe", "legal_entity", &school, "School No. 45", None).map_err(|e| fail("open school", e))?;
    w.open("tulpar", "legal_entity", &canteen, "Dastarkhan Canteen LLP", None).map_err(|e| fail("open canteen", e))?;
    w.give_dt("steppe", &school, 100_000_00)?;
    let program = w
        .client
        .post("/v1/voucher-programs", &json!({"integrator": "onay", "payer_bank": "steppe", "payer_id": school, "payee_bank": "tulpar", "payee_id": canteen, "amount_per_event_tiyn": 1_200_00}))
        .map_err(|e| fail("programme", e))?;
    let id = program["id"].as_str().unwrap_or_default().to_string();
    out.push(format!(
        "Programme {id}: School No. 45 pays Dastarkhan Canteen {} per meal on Onay card taps",
        tenge(1_200_00)
    ));
    let event = json!({"integrator": "onay", "event_id": "tap-0001", "card": "9643 1044"});
    let first = w.client.post(&format!("/v1/voucher-programs/{id}/events"), &event).map_err(|e| fail("event", e))?;
    let again =
        w.client.post(&format!("/v1/voucher-programs/{id}/events"), &event).map_err(|e| fail("event again", e))?;
    ensure(first["tx_id"] == again["tx_id"], || "the same event paid twice".into())?;
    out.push(format!(
        "Tap tap-0001 -> payment {}; the same tap again returns the same payment",
        short(&first["tx_id"])
    ));
    w.client
        .post(&format!("/v1/voucher-programs/{id}/events"), &json!({"integrator": "onay", "event_id": "tap-0002"}))
        .map_err(|e| fail("event 2", e))?;
    ensure(w.dt("tulpar", &canteen)? == 2_400_00, || "canteen was not paid exactly twice".into())?;
    ensure(w.dt("steppe", &school)? == 100_000_00 - 2_400_00, || "school balance wrong".into())?;
    out.push(format!(
        "Two distinct taps: canteen holds {}, school {}",
        tenge(w.dt("tulpar", &canteen)?),
        tenge(w.dt("steppe", &school)?)
    ));
    expect_code(
        w.client.post(&format!("/v1/voucher-programs/{id}/events"), &json!({"integrator": "rogue", "event_id": "x"})),
        "FORBIDDEN",
        "event from another integrator",
    )?;
    out.push("An event from an integrator that does not run the programme is refused: FORBIDDEN".into());
    Ok(())
}

/// Lines of the registry scenario; the integration test and the demo both run the full 10,000.
pub const REGISTRY_LINES: u32 = 10_000;
/// Distinct recipients of the registry (each paid `REGISTRY_LINES / RECIPIENTS` times).
pub const REGISTRY_RECIPIENTS: u32 = 2_000;

fn registry(w: &World, out: &mut Vec<String>) -> Check {
    let employer = World::iin(7, 0);
    w.open("steppe", "legal_entity", &employer, "KazAgro Holding JSC", None).map_err(|e| fail("open employer", e))?;
    let banks = ["steppe", "tulpar", "sapa"];
    // Open the recipients' accounts in parallel, as several bank back offices would.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4u32)
            .map(|t| {
                scope.spawn(move || {
                    let mut errors = Vec::new();
                    for n in (1..=REGISTRY_RECIPIENTS).filter(|n| n % 4 == t) {
                        let bank = banks[(n % 3) as usize];
                        if let Err(e) = w.open(
                            bank,
                            "individual",
                            &World::iin(7, n),
                            &format!("Employee {n}"),
                            Some(&World::phone(7, n)),
                        ) {
                            errors.push(fail("open employee", e));
                        }
                    }
                    errors
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|_| vec!["thread panicked".into()])).collect()
    });
    ensure(failures.is_empty(), || failures.join("; "))?;
    out.push(format!("{REGISTRY_RECIPIENTS} employees hold accounts at three banks"));
    let per_line: u64 = 1_500_00;
    w.give_dt("steppe", &employer, per_line * u64::from(REGISTRY_LINES))?;
    let mut lines: Vec<Value> = (0..REGISTRY_LINES - 2)
        .map(|i| json!({"phone": World::phone(7, i % REGISTRY_RECIPIENTS + 1), "amount_tiyn": per_line}))
        .collect();
    lines.push(json!({"phone": "+77999999999", "amount_tiyn": per_line}));
    lines.push(json!({"client_id": World::iin(7, 1), "bank": "tulpar", "amount_tiyn": 0}));
    let report = w
        .client
        .post("/v1/nodes/steppe/registries", &json!({"from": employer, "reference": "payroll 2026-11", "lines": lines}))
        .map_err(|e| fail("registry", e))?;
    let paid = u(&report["lines_paid"]);
    out.push(format!(
        "Registry of {} lines: {} paid in one transaction {} ({}), {} rejected (line {}: {}, line {}: {})",
        report["lines_total"],
        paid,
        short(&report["tx_id"]),
        tenge(u(&report["amount_paid_tiyn"])),
        report["lines_rejected"],
        report["results"][9998]["line"],
        report["results"][9998]["error_code"],
        report["results"][9999]["line"],
        report["results"][9999]["error_code"]
    ));
    ensure(paid == u64::from(REGISTRY_LINES - 2), || format!("{paid} lines paid"))?;
    ensure(
        report["results"][9998]["error_code"] == "UNKNOWN_ACCOUNT"
            && report["results"][9999]["error_code"] == "MALFORMED_INPUT",
        || "bad lines not reported".into(),
    )?;
    // Lines cycle through the recipients: employee 1 is on lines 1, 2001, 4001, 6001 and 8001.
    let each = per_line * u64::from(REGISTRY_LINES / REGISTRY_RECIPIENTS);
    ensure(w.dt("tulpar", &World::iin(7, 1))? == each, || "employee 1 not paid in full".into())?;
    ensure(w.dt("steppe", &employer)? == per_line * 2, || "employer keeps the unpaid lines' money".into())?;
    out.push(format!(
        "Employees on five lines received {}; the employer keeps {} for the two rejected lines",
        tenge(each),
        tenge(per_line * 2)
    ));
    Ok(())
}

fn phone_transfer(w: &World, out: &mut Vec<String>) -> Check {
    let (a, b, c) = (World::iin(8, 1), World::iin(8, 2), World::iin(8, 3));
    let (pa, pb, pc) = (World::phone(8, 1), World::phone(8, 2), World::phone(8, 3));
    w.open("steppe", "individual", &a, "Arman Kasymov", Some(&pa)).map_err(|e| fail("open", e))?;
    w.open("steppe", "individual", &b, "Bota Zhanibek", Some(&pb)).map_err(|e| fail("open", e))?;
    w.open("sapa", "individual", &c, "Saule Omarova", Some(&pc)).map_err(|e| fail("open", e))?;
    w.give_dt("steppe", &a, 5_000_00)?;
    out.push(format!("Arman holds one token of {}", tenge(5_000_00)));
    let r = w.transfer("steppe", &a, json!({"phone": pb}), 150_00).map_err(|e| fail("within bank", e))?;
    out.push(format!("Arman -> Bota ({pb}, same bank) {}: tx {}", tenge(150_00), short(&r["tx_id"])));
    let arman = w.account("steppe", &a)?;
    ensure(u(&arman["balance"]["dt_tiyn"]) == 4_850_00 && u(&arman["balance"]["tokens"]) == 1, || {
        format!("change: {}", arman["balance"])
    })?;
    out.push(format!("The 5,000 token became 150 for Bota and a {} change token for Arman", tenge(4_850_00)));
    w.transfer("steppe", &a, json!({"phone": pc}), 1_000_00).map_err(|e| fail("between banks", e))?;
    out.push(format!("Arman -> Saule ({pc}, Sapa Bank) {}", tenge(1_000_00)));
    ensure(w.dt("steppe", &b)? == 150_00 && w.dt("sapa", &c)? == 1_000_00 && w.dt("steppe", &a)? == 3_850_00, || {
        "balances after transfers".into()
    })?;
    out.push(format!(
        "Balances: Arman {}, Bota {}, Saule {}",
        tenge(w.dt("steppe", &a)?),
        tenge(w.dt("steppe", &b)?),
        tenge(w.dt("sapa", &c)?)
    ));
    expect_code(w.transfer("steppe", &a, json!({"phone": pc}), 1_000_000_00), "INSUFFICIENT_FUNDS", "overspend")?;
    expect_code(w.transfer("steppe", &a, json!({"phone": "+77000000001"}), 1_00), "UNKNOWN_ACCOUNT", "unknown phone")?;
    ensure(w.dt("steppe", &a)? == 3_850_00, || "a refused transfer changed the balance".into())?;
    out.push(
        "Overspending and unknown phones are refused (INSUFFICIENT_FUNDS, UNKNOWN_ACCOUNT); balances unchanged".into(),
    );
    Ok(())
}

fn merchant_and_card(
    w: &World,
    scenario: u32,
    merchant_bank: &str,
    buyer_bank: &str,
) -> Result<(String, String, String), String> {
    let (buyer, merchant) = (World::iin(scenario, 1), World::iin(scenario, 2));
    w.open(buyer_bank, "individual", &buyer, "Yerlan Bekov", None).map_err(|e| fail("open buyer", e))?;
    w.open(merchant_bank, "legal_entity", &merchant, "Small Shop LLP", None).map_err(|e| fail("open merchant", e))?;
    w.give_dt(buyer_bank, &buyer, 20_000_00)?;
    // Bank money on the buyer bank's correspondent account settles purchases at other banks.
    w.client
        .post(&format!("/v1/abs/correspondent/{buyer_bank}/credits"), &json!({"amount_tiyn": 1_000_000_00}))
        .map_err(|e| fail("ABS credit", e))?;
    let pan = World::pan(scenario, 1);
    w.client
        .post(&format!("/v1/nodes/{buyer_bank}/cards"), &json!({"client_id": buyer, "pan": pan}))
        .map_err(|e| fail("link card", e))?;
    Ok((buyer, merchant, pan))
}

fn card_dt(w: &World, out: &mut Vec<String>) -> Check {
    let (buyer, merchant, pan) = merchant_and_card(w, 9, "tulpar", "steppe")?;
    out.push(format!("Yerlan's card {}…{} is linked to his DT account at Steppe Bank", &pan[..4], &pan[12..]));
    let p = w
        .client
        .post("/v1/card-purchases", &json!({"pan": pan, "merchant_bank": "tulpar", "merchant_id": merchant, "amount_tiyn": 3_499_00, "mode": "dt"}))
        .map_err(|e| fail("purchase", e))?;
    out.push(format!("Purchase {} of {} at Small Shop (Tulpar Bank), paid in DT", p["id"], tenge(3_499_00)));
    ensure(w.dt("tulpar", &merchant)? == 3_499_00 && w.dt("steppe", &buyer)? == 20_000_00 - 3_499_00, || {
        "balances after DT purchase".into()
    })?;
    expect_code(
        w.client.post("/v1/card-purchases", &json!({"pan": World::pan(9, 2), "merchant_bank": "tulpar", "merchant_id": merchant, "amount_tiyn": 1_00, "mode": "dt"})),
        "UNKNOWN_ACCOUNT",
        "unlinked card",
    )
}

fn card_convert(w: &World, out: &mut Vec<String>) -> Check {
    let (buyer, merchant, pan) = merchant_and_card(w, 10, "sapa", "tulpar")?;
    let before = w.client.get("/v1/abs/balances").map_err(|e| fail("abs", e))?;
    let p = w
        .client
        .post("/v1/card-purchases", &json!({"pan": pan, "merchant_bank": "sapa", "merchant_id": merchant, "amount_tiyn": 7_250_00, "mode": "convert_to_fiat"}))
        .map_err(|e| fail("purchase", e))?;
    out.push(format!(
        "Purchase {} of {}: Yerlan pays DT, Tulpar Bank converts, Small Shop (Sapa Bank) receives bank money",
        p["id"],
        tenge(7_250_00)
    ));
    // The bank-money legs settle after the answer, as in an RTGS: the merchant's bank
    // credits its merchant when the certified purchase reaches it, and central moves the
    // correspondents on the buyer's bank's stream.
    let settled = || -> Result<bool, String> {
        let after = w.client.get("/v1/abs/balances").map_err(|e| fail("abs", e))?;
        let moved = after["balances"]["corr:sapa"].as_i64().unwrap_or(0)
            - before["balances"]["corr:sapa"].as_i64().unwrap_or(0);
        Ok(moved == 7_250_00 && w.fiat("sapa", &merchant)? == 7_250_00)
    };
    ensure(eventually(settled)?, || "the bank money did not settle: merchant or ABS not moved".into())?;
    ensure(w.dt("sapa", &merchant)? == 0, || "merchant paid in DT".into())?;
    ensure(w.dt("tulpar", &buyer)? == 20_000_00 - 7_250_00, || "buyer DT not debited".into())?;
    out.push(format!(
        "ABS settled {} from corr:tulpar to corr:sapa; merchant bank money {}",
        tenge(7_250_00),
        tenge(w.fiat("sapa", &merchant)?)
    ));
    Ok(())
}

fn bank_redemption(w: &World, out: &mut Vec<String>) -> Check {
    w.fund_bank("steppe", 50_000_000_00)?;
    let before = w.client.get("/v1/abs/balances").map_err(|e| fail("abs", e))?;
    let own = w.dt("steppe", "own")?;
    let amount = 20_000_000_00;
    let r = w
        .client
        .post("/v1/nodes/steppe/redemptions", &json!({"amount_tiyn": amount}))
        .map_err(|e| fail("redemption", e))?;
    out.push(format!(
        "Steppe Bank redeems {}: DT destroyed in tx {}, ABS posting #{} dt_liability -> corr:steppe",
        tenge(amount),
        short(&r["tx_id"]),
        r["abs_posting"]["seq"]
    ));
    let after = w.client.get("/v1/abs/balances").map_err(|e| fail("abs", e))?;
    ensure(w.dt("steppe", "own")? == own - amount, || "bank DT not reduced".into())?;
    let liability_drop = before["balances"]["dt_liability"].as_i64().unwrap_or(0)
        - after["balances"]["dt_liability"].as_i64().unwrap_or(0);
    ensure(liability_drop == amount as i64, || format!("liability fell by {liability_drop}"))?;
    expect_code(
        w.client.post("/v1/nodes/steppe/redemptions", &json!({"amount_tiyn": own * 10})),
        "INSUFFICIENT_FUNDS",
        "redeeming more than held",
    )?;
    out.push("Redeeming more DT than the bank holds is refused: INSUFFICIENT_FUNDS".into());
    Ok(())
}

fn monitoring(w: &World, out: &mut Vec<String>) -> Check {
    let m = w.client.get("/v1/operator/monitoring").map_err(|e| fail("monitoring", e))?;
    let (emitted, redeemed, circulation, liability) =
        (u(&m["emitted_tiyn"]), u(&m["redeemed_tiyn"]), u(&m["circulation_tiyn"]), u(&m["dt_liability_tiyn"]));
    out.push(format!(
        "Emitted {}, redeemed {}, in circulation {}, ABS liability {}",
        tenge(emitted),
        tenge(redeemed),
        tenge(circulation),
        tenge(liability)
    ));
    let empty = vec![];
    let nodes = m["nodes"].as_array().unwrap_or(&empty);
    let mut held = 0;
    for n in nodes {
        held += u(&n["dt_held_tiyn"]);
        out.push(format!(
            "  {:<28} {:>28} held, {:>6} accounts{}",
            n["name"].as_str().unwrap_or(""),
            tenge(u(&n["dt_held_tiyn"])),
            n["accounts"],
            if n["blocked"] == true { " BLOCKED" } else { "" }
        ));
    }
    ensure(emitted - redeemed == circulation && circulation == liability && held == circulation, || {
        format!("totals disagree: held {held}")
    })
}

fn blocking(w: &World, out: &mut Vec<String>) -> Check {
    let (a, b) = (World::iin(15, 1), World::iin(15, 2));
    w.open("tulpar", "individual", &a, "Timur Ospanov", Some(&World::phone(15, 1))).map_err(|e| fail("open", e))?;
    w.open("steppe", "individual", &b, "Gulnara Ismail", Some(&World::phone(15, 2))).map_err(|e| fail("open", e))?;
    w.give_dt("tulpar", &a, 10_000_00)?;
    w.give_dt("steppe", &b, 10_000_00)?;
    w.client
        .post("/v1/operator/nodes/tulpar/block", &json!({"reason": "AML inspection order 17"}))
        .map_err(|e| fail("block", e))?;
    out.push("The NBK operator blocks Tulpar Bank: \"AML inspection order 17\"".into());
    expect_code(
        w.transfer("tulpar", &a, json!({"phone": World::phone(15, 2)}), 100_00),
        "BANK_BLOCKED",
        "payment from a blocked bank",
    )?;
    expect_code(
        w.transfer("steppe", &b, json!({"phone": World::phone(15, 1)}), 100_00),
        "BANK_BLOCKED",
        "payment to a blocked bank",
    )?;
    expect_code(
        w.client.post("/v1/nodes/tulpar/emissions", &json!({"amount_tiyn": 1_00})),
        "BANK_BLOCKED",
        "emission to a blocked bank",
    )?;
    out.push("Payments from and to Tulpar Bank clients and its conversions fail with BANK_BLOCKED".into());
    ensure(w.dt("tulpar", &a)? == 10_000_00 && w.dt("steppe", &b)? == 10_000_00, || {
        "a refused payment moved money".into()
    })?;
    w.client.post("/v1/operator/nodes/tulpar/unblock", &json!({})).map_err(|e| fail("unblock", e))?;
    w.transfer("tulpar", &a, json!({"phone": World::phone(15, 2)}), 100_00).map_err(|e| fail("after unblock", e))?;
    out.push("Unblocked: Timur pays Gulnara 100.00 KZT again".into());
    Ok(())
}

fn operational_day(w: &World, out: &mut Vec<String>) -> Check {
    w.fund_bank("sapa", 10_000_00)?;
    let today = w.client.get("/v1/operator/today").map_err(|e| fail("today", e))?;
    let date = today["date"].as_str().unwrap_or_default().to_string();
    let year = &date[..4];
    let days = w.client.get(&format!("/v1/operator/calendar/{year}")).map_err(|e| fail("calendar", e))?;
    let working = days.as_array().map(|d| d.iter().filter(|d| d["working"] == true).count()).unwrap_or(0);
    out.push(format!("Calendar {year}: {working} operational days; today {date} is working"));
    w.client
        .put(&format!("/v1/operator/calendar/days/{date}"), &json!({"working": false}))
        .map_err(|e| fail("holiday", e))?;
    w.client
        .post("/v1/abs/correspondent/sapa/credits", &json!({"amount_tiyn": 1_000_00}))
        .map_err(|e| fail("credit", e))?;
    let refused = w.client.post("/v1/nodes/sapa/emissions", &json!({"amount_tiyn": 1_000_00}));
    out.push(format!(
        "The operator makes {date} a holiday: emission refused ({})",
        refused.as_ref().err().map(|e| e.message.clone()).unwrap_or_default()
    ));
    expect_code(refused, "NON_WORKING_DAY", "emission on a holiday")?;
    let (p1, p2) = (World::iin(16, 1), World::iin(16, 2));
    w.open("sapa", "individual", &p1, "Nurlan Abai", Some(&World::phone(16, 1))).map_err(|e| fail("open", e))?;
    w.open("sapa", "individual", &p2, "Zhanna Abai", Some(&World::phone(16, 2))).map_err(|e| fail("open", e))?;
    w.client
        .post(&format!("/v1/nodes/sapa/accounts/{p1}/deposits"), &json!({"amount_tiyn": 500_00}))
        .map_err(|e| fail("deposit", e))?;
    w.client
        .post(&format!("/v1/nodes/sapa/accounts/{p1}/to-dt"), &json!({"amount_tiyn": 500_00}))
        .map_err(|e| fail("client conversion on a holiday", e))?;
    w.transfer("sapa", &p1, json!({"phone": World::phone(16, 2)}), 200_00)
        .map_err(|e| fail("payment on a holiday", e))?;
    out.push("Client conversions and payments run 24/7, holiday or not".into());
    w.client
        .put(&format!("/v1/operator/calendar/days/{date}"), &json!({"working": true}))
        .map_err(|e| fail("working", e))?;
    w.client
        .post("/v1/nodes/sapa/emissions", &json!({"amount_tiyn": 1_000_00}))
        .map_err(|e| fail("emission on a working day", e))?;
    out.push(format!("{date} is a working day again: the emission goes through"));
    Ok(())
}

fn refunds(w: &World, out: &mut Vec<String>) -> Check {
    let (buyer, merchant, pan) = merchant_and_card(w, 17, "sapa", "steppe")?;
    let p = w.client.post("/v1/card-purchases", &json!({"pan": pan, "merchant_bank": "sapa", "merchant_id": merchant, "amount_tiyn": 10_000_00, "mode": "dt"})).map_err(|e| fail("purchase", e))?;
    let id = p["id"].as_str().unwrap_or_default().to_string();
    w.client
        .post(&format!("/v1/card-purchases/{id}/refunds"), &json!({"amount_tiyn": 4_000_00}))
        .map_err(|e| fail("refund", e))?;
    out.push(format!("DT purchase {id} of {} partly refunded: {}", tenge(10_000_00), tenge(4_000_00)));
    ensure(w.dt("steppe", &buyer)? == 14_000_00 && w.dt("sapa", &merchant)? == 6_000_00, || {
        "balances after refund".into()
    })?;
    expect_code(
        w.client.post(&format!("/v1/card-purchases/{id}/refunds"), &json!({"amount_tiyn": 6_000_01})),
        "CONFLICT",
        "refund above the purchase",
    )?;
    out.push("A refund above what is left is refused: CONFLICT".into());
    w.client
        .post(&format!("/v1/nodes/sapa/accounts/{merchant}/deposits"), &json!({"amount_tiyn": 1_00}))
        .map_err(|e| fail("deposit", e))?;
    let c = w.client.post("/v1/card-purchases", &json!({"pan": pan, "merchant_bank": "sapa", "merchant_id": merchant, "amount_tiyn": 2_000_00, "mode": "convert_to_fiat"})).map_err(|e| fail("purchase", e))?;
    let cid = c["id"].as_str().unwrap_or_default().to_string();
    w.client
        .post(&format!("/v1/card-purchases/{cid}/refunds"), &json!({"amount_tiyn": 2_000_00}))
        .map_err(|e| fail("refund converted", e))?;
    out.push(format!(
        "Converted purchase {cid} of {} fully refunded: the merchant's bank money returns as DT to the buyer",
        tenge(2_000_00)
    ));
    ensure(w.dt("steppe", &buyer)? == 14_000_00 && w.fiat("sapa", &merchant)? == 1_00, || {
        "balances after converted refund".into()
    })
}

fn atm(w: &World, out: &mut Vec<String>) -> Check {
    let (holder, _, pan) = merchant_and_card(w, 18, "sapa", "tulpar")?;
    let r = w
        .client
        .post("/v1/atm-withdrawals", &json!({"pan": pan, "atm_bank": "steppe", "amount_tiyn": 5_000_00}))
        .map_err(|e| fail("atm", e))?;
    out.push(format!(
        "Yerlan withdraws {} cash at a Steppe Bank ATM with his DT card; ABS posting #{} settles Tulpar -> Steppe",
        tenge(5_000_00),
        r["abs_posting"]["seq"]
    ));
    ensure(w.dt("tulpar", &holder)? == 15_000_00, || "DT not debited".into())?;
    expect_code(
        w.client.post("/v1/atm-withdrawals", &json!({"pan": pan, "atm_bank": "tulpar", "amount_tiyn": 50_000_00})),
        "INSUFFICIENT_FUNDS",
        "withdraw more than held",
    )
}

fn history_names(w: &World, out: &mut Vec<String>) -> Check {
    let (a, b, c) = (World::iin(19, 1), World::iin(19, 2), World::iin(19, 3));
    w.open("steppe", "individual", &a, "Askar Tokayev", Some(&World::phone(19, 1))).map_err(|e| fail("open", e))?;
    w.open("steppe", "individual", &b, "Bibigul Serik", Some(&World::phone(19, 2))).map_err(|e| fail("open", e))?;
    w.open("tulpar", "individual", &c, "Chingiz Mukhamed", Some(&World::phone(19, 3))).map_err(|e| fail("open", e))?;
    w.give_dt("steppe", &a, 1_000_00)?;
    w.transfer("steppe", &a, json!({"phone": World::phone(19, 2)}), 100_00).map_err(|e| fail("pay", e))?;
    w.transfer("steppe", &a, json!({"phone": World::phone(19, 3)}), 200_00).map_err(|e| fail("pay", e))?;
    let h = w.client.get(&format!("/v1/nodes/steppe/accounts/{a}/history")).map_err(|e| fail("history", e))?;
    let lines = h["lines"].as_array().cloned().unwrap_or_default();
    for l in &lines {
        out.push(format!(
            "  {:<22} {:<7} {:>16}  {} ({})",
            l["purpose"].as_str().unwrap_or(""),
            l["direction"].as_str().unwrap_or(""),
            tenge(u(&l["amount_tiyn"])),
            l["counterparty_name"].as_str().unwrap_or("name not shown"),
            l["counterparty_bank"].as_str().unwrap_or("-")
        ));
    }
    ensure(lines.len() == 3, || format!("{} history lines", lines.len()))?;
    ensure(lines[1]["counterparty_name"] == "Bibigul Serik", || "same-bank name missing".into())?;
    ensure(lines[0]["counterparty_name"].is_null() && lines[0]["counterparty_bank"] == "Tulpar Bank", || {
        "other bank's client name leaked".into()
    })?;
    let hc = w.client.get(&format!("/v1/nodes/tulpar/accounts/{c}/history")).map_err(|e| fail("history", e))?;
    ensure(
        hc["lines"][0]["counterparty_bank"] == "Steppe Bank" && hc["lines"][0]["counterparty_name"].is_null(),
        || "recipient history".into(),
    )?;
    out.push("Names of clients of the same bank are shown; another bank's client shows only the bank".into());
    Ok(())
}

fn treasury(w: &World, out: &mut Vec<String>) -> Check {
    let agency = World::iin(20, 1);
    let person = World::iin(20, 2);
    w.open("treasury", "government_agency", &agency, "Ministry of Education", None)
        .map_err(|e| fail("open agency", e))?;
    expect_code(
        w.open("treasury", "individual", &World::iin(20, 3), "Not an agency", None),
        "FORBIDDEN",
        "individual at the Treasury",
    )?;
    w.open("sapa", "individual", &person, "Teacher Aliya", Some(&World::phone(20, 2))).map_err(|e| fail("open", e))?;
    w.give_dt("treasury", &agency, 1_000_000_00)?;
    out.push(format!(
        "The Treasury converts with the NBK and funds the Ministry of Education with {}",
        tenge(1_000_000_00)
    ));
    w.transfer("treasury", &agency, json!({"phone": World::phone(20, 2)}), 250_000_00).map_err(|e| fail("grant", e))?;
    out.push(format!("The ministry pays teacher Aliya (Sapa Bank) {}", tenge(250_000_00)));
    ensure(w.dt("sapa", &person)? == 250_000_00, || "teacher not paid".into())
}

fn idempotency_and_errors(w: &World, out: &mut Vec<String>) -> Check {
    let (a, b) = (World::iin(21, 1), World::iin(21, 2));
    w.open("steppe", "individual", &a, "Retry Test", Some(&World::phone(21, 1))).map_err(|e| fail("open", e))?;
    w.open("steppe", "individual", &b, "Retry Peer", Some(&World::phone(21, 2))).map_err(|e| fail("open", e))?;
    w.give_dt("steppe", &a, 1_000_00)?;
    let body = json!({"from": a, "to": {"phone": World::phone(21, 2)}, "amount_tiyn": 300_00});
    let first =
        w.client.post_with_key("/v1/nodes/steppe/transfers", &body, "retry-key-1").map_err(|e| fail("first", e))?;
    let second =
        w.client.post_with_key("/v1/nodes/steppe/transfers", &body, "retry-key-1").map_err(|e| fail("retry", e))?;
    ensure(first == second, || "retry answered differently".into())?;
    ensure(w.dt("steppe", &b)? == 300_00, || "retry paid twice".into())?;
    out.push("A retried transfer with the same Idempotency-Key returns the first receipt and pays once".into());
    let other = json!({"from": a, "to": {"phone": World::phone(21, 2)}, "amount_tiyn": 301_00});
    expect_code(
        w.client.post_with_key("/v1/nodes/steppe/transfers", &other, "retry-key-1"),
        "IDEMPOTENCY_KEY_REUSED",
        "key reused",
    )?;
    expect_code(
        w.client.raw("POST", "/v1/nodes/steppe/transfers", None, &body.to_string()),
        "MALFORMED_INPUT",
        "no key",
    )?;
    expect_code(
        w.client.raw("POST", "/v1/nodes/steppe/transfers", Some("k-bad-json"), "{\"from\": "),
        "MALFORMED_INPUT",
        "bad JSON",
    )?;
    expect_code(
        w.client.raw(
            "POST",
            "/v1/nodes/steppe/transfers",
            Some("k-neg"),
            &json!({"from": a, "to": {"phone": World::phone(21, 2)}, "amount_tiyn": -5}).to_string(),
        ),
        "MALFORMED_INPUT",
        "negative amount",
    )?;
    expect_code(
        w.client.raw(
            "POST",
            "/v1/nodes/steppe/transfers",
            Some("k-float"),
            &json!({"from": a, "to": {"phone": World::phone(21, 2)}, "amount_tiyn": 1.5}).to_string(),
        ),
        "MALFORMED_INPUT",
        "fractional tiyn",
    )?;
    expect_code(
        w.client.raw(
            "POST",
            "/v1/nodes/steppe/transfers",
            Some("k-huge"),
            &json!({"from": a, "to": {"phone": World::phone(21, 2)}, "amount_tiyn": 9_007_199_254_740_992u64})
                .to_string(),
        ),
        "MALFORMED_INPUT",
        "amount over the maximum",
    )?;
    expect_code(
        w.client.raw("POST", "/v1/nodes/nowhere/transfers", Some("k-node"), &body.to_string()),
        // No client is certified for a node that does not exist: nobody may call it.
        "UNAUTHORIZED",
        "unknown node",
    )?;
    expect_code(w.client.get("/v1/no/such/route"), "NOT_FOUND", "unknown route")?;
    expect_code(w.client.raw("DELETE", "/v1/operator/monitoring", None, ""), "METHOD_NOT_ALLOWED", "wrong method")?;
    expect_code(w.client.get("/v1/nodes/%FF/accounts"), "MALFORMED_INPUT", "undecodable path")?;
    expect_code(
        w.client.post_oversized("/v1/nodes/steppe/transfers", "k-big", 9 * 1024 * 1024, 8 * 1024 * 1024 + 128 * 1024),
        "LIMIT_EXCEEDED",
        "oversized body",
    )?;
    ensure(w.dt("steppe", &a)? == 700_00, || "refused requests moved money".into())?;
    out.push("Missing key, bad JSON, negative, fractional and oversized amounts, a 9 MiB body, unknown node, route and method: each a structured error; nothing moved".into());
    Ok(())
}
