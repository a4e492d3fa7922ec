// Real-browser tests of the consoles, in headless Debian Chromium through playwright-core.
// Started by crates/scenarios/tests/browser.rs, which runs the platform and passes:
//   BASE_URL       the platform (REST API and consoles)
//   USERS          JSON: {"operator": "password", "treasury": ..., "steppe-officer": ..., "aigerim": ...}
//   SCREENSHOTS    directory for one PNG per console page (a reviewer looks at them)
//   CHROMIUM       the browser binary (default /usr/bin/chromium)
//   TOKENS         JSON: {"bank:steppe": "Bearer ...", ..., "operator": "Bearer ..."}: the access
//                  tokens of the REST API's clients (a node's systems for /v1/nodes/{node}/...,
//                  the NBK operator for /v1/abs and /v1/operator)
// Exits 0 when every check holds; prints the failing check and exits 1 otherwise.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const base = process.env.BASE_URL;
const users = JSON.parse(process.env.USERS || "{}");
const shots = process.env.SCREENSHOTS || "target/screenshots";
const tokens = JSON.parse(process.env.TOKENS || "{}");

// The client a REST path is for, as the gateway's table (crates/api/src/access.rs) says.
function authorization(path) {
  const node = path.match(/^\/v1\/nodes\/([^/]+)\//);
  if (node) return tokens[`bank:${node[1]}`];
  if (/^\/v1\/(abs|operator)\//.test(path)) return tokens.operator;
  return undefined;
}
mkdirSync(shots, { recursive: true });

let checks = 0;
function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  checks += 1;
  console.log(`ok ${checks} - ${what}`);
}

async function rest(method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: {
      "Content-Type": "application/json",
      "Idempotency-Key": `browser-${Date.now()}-${Math.random()}`,
      ...(authorization(path) ? { Authorization: authorization(path) } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: response.status, body: await response.json() };
}

async function signIn(page, username, password) {
  await page.goto(base);
  await page.getByLabel(/Username|Имя пользователя|Пайдаланушы аты/).fill(username);
  await page.getByLabel(/^(Password|Пароль|Құпиясөз)$/).fill(password);
  await page.locator("#sign-in").click();
}

async function signOut(page) {
  await page.locator("#signout").click();
  await page.locator("#sign-in").waitFor();
}

async function noHorizontalScroll(page) {
  return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, locale: "en-US" });
  const page = await context.newPage();
  await page.addInitScript(() => localStorage.setItem("lang", localStorage.getItem("lang") || "en"));

  // Sign-in page, a wrong password.
  await page.goto(base);
  await page.locator("#sign-in").waitFor();
  await page.screenshot({ path: `${shots}/sign-in.png`, fullPage: true });
  await signIn(page, "operator", "not the password at all");
  await page.locator("#login-error").filter({ hasText: "Wrong username or password" }).waitFor();
  check(true, "a wrong password is refused with a clear message");

  // Operator: dashboard, totals change after an emission, blocking a bank, audit log.
  await signIn(page, "operator", users.operator);
  await page.locator("#circulation").waitFor();
  const before = await page.locator("#circulation").textContent();
  check(/\d[\d,]*\.\d\d ₸/.test(before), `circulation shown with separators and two decimals: ${before}`);
  await rest("POST", "/v1/abs/correspondent/sapa/credits", { amount_tiyn: 123456789 });
  const emission = await rest("POST", "/v1/nodes/sapa/emissions", { amount_tiyn: 123456789 });
  check(emission.status === 200, `an emission through the REST API (${JSON.stringify(emission.body).slice(0, 200)})`);
  await page.waitForFunction((old) => document.querySelector("#circulation")?.textContent !== old, before, { timeout: 10000 });
  const after = await page.locator("#circulation").textContent();
  check(after !== before, `the dashboard's circulation changed after the emission: ${before} -> ${after}`);
  await page.screenshot({ path: `${shots}/operator-dashboard.png`, fullPage: true });

  await page.locator("#block-tulpar").click();
  await page.getByLabel("Reason").fill("AML investigation 2026-118");
  await page.locator("#confirm-ok").click();
  await page.locator(".status-blocked").filter({ hasText: "AML investigation 2026-118" }).waitFor();
  check(true, "blocking Tulpar Bank shows it blocked with the reason");
  const payment = await rest("POST", "/v1/nodes/tulpar/emissions", { amount_tiyn: 100 });
  check(payment.body?.error?.code === "BANK_BLOCKED", `the blocked bank's next operation fails: ${payment.body?.error?.code}`);
  await page.locator("#unblock-tulpar").click();
  await page.getByLabel("Reason").fill("investigation closed");
  await page.locator("#confirm-ok").click();
  await page.locator("#block-tulpar").waitFor();
  check(true, "unblocking Tulpar Bank");

  await page.getByRole("link", { name: "Audit log" }).click();
  await page.getByRole("cell", { name: "block_bank", exact: true }).first().waitFor();
  // Twice: the intent before the block and its outcome after.
  await page.getByRole("cell", { name: "AML investigation 2026-118", exact: true }).first().waitFor();
  check(true, "the audit log shows the block with its reason");
  const time = await page.locator("tbody td").first().textContent();
  check(time.includes("Astana (UTC+5)"), `times are shown in Astana time with the zone named: ${time}`);
  await page.screenshot({ path: `${shots}/operator-audit-log.png`, fullPage: true });

  // Reconciliation with the ABS: run it, see the result in its history.
  await page.getByRole("link", { name: "Reconciliation" }).click();
  await page.locator("#run-reconciliation").click();
  await page.getByRole("cell", { name: "OK", exact: true }).first().waitFor();
  check(true, "a reconciliation run shows its result in the history");
  await page.screenshot({ path: `${shots}/operator-reconciliation.png`, fullPage: true });

  // The emissions list, filtered by node.
  await page.getByRole("link", { name: "Emissions and redemptions" }).click();
  await page.locator("#op-node").selectOption("sapa");
  await page.getByRole("cell", { name: "1,234,567.89 ₸" }).waitFor();
  check(true, "the emissions list filters by node and shows the emission");
  await page.screenshot({ path: `${shots}/operator-operations.png`, fullPage: true });

  // The operational-day calendar: toggle a holiday, the count of working days follows.
  await page.getByRole("link", { name: "Calendar" }).click();
  await page.locator("#year").fill("2026");
  await page.locator("#year").dispatchEvent("change");
  await page.locator("#day-2026-12-01").waitFor();
  const countBefore = await page.locator("#working-days").textContent();
  await page.locator("#day-2026-12-01").click();
  await page.locator("#day-2026-12-01.holiday").waitFor();
  const countAfter = await page.locator("#working-days").textContent();
  const n = (text) => Number(text.replace(/\D/g, ""));
  check(n(countAfter) === n(countBefore) - 1, `toggling 2026-12-01 to a holiday: ${countBefore} -> ${countAfter}`);
  await page.screenshot({ path: `${shots}/operator-calendar.png`, fullPage: true });
  await page.locator("#day-2026-12-01").click();
  await page.locator("#day-2026-12-01.working").waitFor();

  await page.getByRole("link", { name: "Health" }).click();
  await page.getByRole("heading", { name: "Health" }).waitFor();
  await page.screenshot({ path: `${shots}/operator-health.png`, fullPage: true });
  await page.getByRole("link", { name: "Audit log" }).click();
  await page.getByRole("heading", { name: "Audit log" }).waitFor();

  // The language switcher.
  await page.locator("#lang").selectOption("ru");
  await page.getByRole("heading", { name: "Журнал действий" }).waitFor();
  await page.locator("#lang").selectOption("kk");
  await page.getByRole("heading", { name: "Әрекеттер журналы" }).waitFor();
  check(true, "the interface switches to Russian and Kazakh");
  await page.screenshot({ path: `${shots}/operator-audit-log-kk.png`, fullPage: true });
  await page.locator("#lang").selectOption("en");
  await signOut(page);

  // Blocking a bank makes its client's next payment fail visibly.
  await signIn(page, "operator", users.operator);
  await page.locator("#block-steppe").click();
  await page.getByLabel("Reason").fill("liquidity check");
  await page.locator("#confirm-ok").click();
  await page.locator("#unblock-steppe").waitFor();
  await signOut(page);
  await signIn(page, "aigerim", users.aigerim);
  await page.locator("#transfer-form").waitFor();
  await page.locator("#phone").fill("+77027654321");
  await page.locator("#transfer-form #amount").fill("1500");
  await page.locator("#transfer-form button[type=submit]").click();
  await page.locator("#transfer-form-status").filter({ hasText: "BANK_BLOCKED" }).waitFor();
  check(true, "a client of the blocked bank sees its transfer refused: BANK_BLOCKED");
  await page.screenshot({ path: `${shots}/client-transfer-refused-bank-blocked.png`, fullPage: true });
  await signOut(page);
  await signIn(page, "operator", users.operator);
  await page.locator("#unblock-steppe").click();
  await page.getByLabel("Reason").fill("check passed");
  await page.locator("#confirm-ok").click();
  await page.locator("#block-steppe").waitFor();
  await signOut(page);

  // The client transfers by phone once the bank is unblocked.
  await signIn(page, "aigerim", users.aigerim);
  const spendableBefore = await page.locator("#spendable").textContent();
  await page.locator("#phone").fill("+77027654321");
  await page.locator("#transfer-form #amount").fill("1500");
  await page.locator("#transfer-form button[type=submit]").click();
  await page.locator("#transfer-form-status").filter({ hasText: "Done." }).waitFor();
  await page.waitForFunction((old) => document.querySelector("#spendable")?.textContent !== old, spendableBefore, { timeout: 10000 });
  check((await page.locator("#spendable").textContent()).startsWith("8,500.00"), "a client transfer by phone: 10,000.00 -> 8,500.00");
  await page.getByRole("cell", { name: "debit" }).first().waitFor();

  // A double click on Send pays once: both submits carry the action's one Idempotency-Key,
  // and the console runs the payment once. Aigerim first gets a second token (500.00 from her
  // employer), so two payments started together could both go through without the key.
  const pay = await rest("POST", "/v1/nodes/steppe/transfers", { from: process.env.EMPLOYER, to: { phone: "+77011234567" }, amount_tiyn: 50000 });
  check(pay.status === 200, `Aigerim's employer pays her 500.00 through the REST API (${pay.status})`);
  const aigerimHistory = "/v1/nodes/steppe/accounts/900101300007/history?limit=1";
  const spendableTiyn = async () => (await rest("GET", "/v1/nodes/steppe/accounts/900101300007")).body.balance.dt_spendable_tiyn;
  // Submits `amount` to Aigerim's transfer form with `clicks` (a double click, or a click, the
  // answer, and a second click) and checks that one payment happened.
  const payTwice = async (amount, clicks, what) => {
    const keys = [];
    const onTransfer = (request) => {
      if (request.method() === "POST" && request.url().endsWith("/console/api/client/transfer")) keys.push(request.headers()["idempotency-key"]);
    };
    await page.reload();
    await page.locator("#transfer-form").waitFor();
    const [linesBefore, tiynBefore] = [(await rest("GET", aigerimHistory)).body.total, await spendableTiyn()];
    page.on("request", onTransfer);
    await page.locator("#phone").fill("+77027654321");
    await page.locator("#transfer-form #amount").fill(amount);
    await clicks(page.locator("#transfer-form button[type=submit]"));
    await page.locator("#transfer-form-status").filter({ hasText: "Done." }).waitFor();
    // Long enough for a second payment to land and both submits' re-renders to finish.
    await page.waitForTimeout(2000);
    page.off("request", onTransfer);
    check(keys.length === 2 && /^[0-9a-f]{32}$/.test(keys[0]) && keys[0] === keys[1],
      `${what}: two submits with one idempotency key ${JSON.stringify(keys)}`);
    const [linesAfter, tiynAfter] = [(await rest("GET", aigerimHistory)).body.total, await spendableTiyn()];
    check(tiynAfter === tiynBefore - Number(amount) * 100 && linesAfter === linesBefore + 1,
      `${what} paid once: spendable ${tiynBefore} -> ${tiynAfter} tiyn, history ${linesBefore} -> ${linesAfter} lines`);
  };
  await payTwice("100", (button) => button.dblclick(), "a double click on Send");
  await payTwice("200", async (button) => {
    await button.click();
    await page.locator("#transfer-form-status").filter({ hasText: "Done." }).waitFor();
    await button.click();
  }, "a second click on Send just after the first one's answer");
  check((await page.locator("#spendable").textContent()).startsWith("8,700.00"), "the wallet shows 8,500.00 + 500.00 - 100.00 - 200.00 = 8,700.00");
  await page.screenshot({ path: `${shots}/client-wallet-after-double-click.png`, fullPage: true });

  await page.locator("#qr-form #payload").fill("dtenge:pay?bank=sapa&to=xx&amount=1");
  await page.locator("#qr-form button[type=submit]").click();
  await page.locator("#qr-form-status").filter({ hasText: "MALFORMED_INPUT" }).waitFor();
  check(true, "a malformed merchant QR payment is refused with a clear message");
  // A merchant's QR code: the wallet shows whom it pays (as the ID center names the payee) and
  // how much, and pays only when the client confirms (issue 19: the build before paid at once).
  const qrCode = `dtenge:pay?bank=sapa&to=${process.env.SUPPLIER}&amount=150&ref=order+7`;
  const beforeQr = await spendableTiyn();
  await page.locator("#qr-form #payload").fill(qrCode);
  await page.locator("#qr-form button[type=submit]").click();
  await page.locator("#qr-form-question").waitFor({ timeout: 10000 });
  const asked = await page.locator("#qr-form-question").textContent();
  // The ID center names a client by its first word and initial ("Final S."): the BIN beside
  // it tells one from another.
  check(asked.includes("Final S.") && asked.includes(process.env.SUPPLIER) && asked.includes("150.00"),
    `a QR payment asks first, naming the payee and the amount: ${asked}`);
  check((await spendableTiyn()) === beforeQr, "nothing is paid before the client confirms");
  await page.screenshot({ path: `${shots}/client-wallet-qr-confirmation.png`, fullPage: true });
  await page.locator("#qr-form-no").click();
  await page.locator("#qr-form-status").filter({ hasText: "Not paid." }).waitFor();
  check((await spendableTiyn()) === beforeQr, "a QR payment the client cancels pays nothing");
  await page.locator("#qr-form button[type=submit]").click();
  await page.locator("#qr-form-yes").click();
  await page.locator("#qr-form-status").filter({ hasText: "Done." }).waitFor();
  check((await spendableTiyn()) === beforeQr - 15000, "the confirmed QR payment pays its amount, once");
  await page.screenshot({ path: `${shots}/client-wallet-after-transfer.png`, fullPage: true });
  await signOut(page);

  // Treasury: create a marked transfer and see its trace.
  await signIn(page, "treasury", users.treasury);
  await page.getByRole("link", { name: "Marking" }).click();
  await page.locator("#initiator").fill(process.env.MINISTRY);
  await page.locator("#reference").fill("National Fund tranche, browser test");
  await page.locator("#recipients-1").fill(`tulpar:${process.env.CONTRACTOR}`);
  await page.locator("[name='limit_amount-1']").fill("500000");
  await page.getByRole("button", { name: "Add a level" }).click();
  await page.locator("#recipients-2").fill(`sapa:${process.env.SUPPLIER}`);
  await page.locator("[name='limit_amount-2']").fill("500000");
  await page.locator("#create-marking button[type=submit]").click();
  await page.locator("#create-marking-status").filter({ hasText: "MK0000001" }).waitFor();
  await page.locator("#marking_id").fill("MK0000001");
  await page.locator("#from").fill(process.env.MINISTRY);
  await page.locator("#to_bank").fill("tulpar");
  await page.locator("#to_client_id").fill(process.env.CONTRACTOR);
  await page.locator("#marked-transfer #amount").fill("250000");
  await page.locator("#marked-transfer button[type=submit]").click();
  await page.locator("#trace-MK0000001 li").filter({ hasText: process.env.CONTRACTOR }).waitFor();
  check(true, "a marked transfer created in the Treasury console shows in its trace");
  await page.locator("#marking_id").fill("MK0000001");
  await page.locator("#to_bank").fill("sapa");
  await page.locator("#to_client_id").fill(process.env.SUPPLIER);
  await page.locator("#marked-transfer button[type=submit]").click();
  await page.locator("#marked-transfer-status").filter({ hasText: "WRONG_LEVEL" }).waitFor();
  check(true, "skipping a level of the marking is refused visibly: WRONG_LEVEL");
  await page.screenshot({ path: `${shots}/treasury-marking.png`, fullPage: true });
  // Issue: the Treasury converts bank money (credited on its ABS account) into DT.
  await rest("POST", "/v1/abs/correspondent/treasury/credits", { amount_tiyn: 200000 });
  await page.getByRole("link", { name: "Issue and repayment" }).click();
  await page.locator("#issue_amount").fill("2000");
  await page.locator("#issue button[type=submit]").click();
  await page.locator("#issue-status").filter({ hasText: "Done." }).waitFor();
  await page.getByRole("cell", { name: "2,000.00 ₸" }).waitFor();
  check(true, "the Treasury issues DT against its ABS account and sees it in its operations");
  await page.screenshot({ path: `${shots}/treasury-issue-repayment.png`, fullPage: true });

  // Treasury requests: an agency account opened on approval, a transfer into DT rejected for
  // lack of budget money (the platform's error shown), one rejected by the officer.
  await page.getByRole("link", { name: "Requests" }).click();
  await page.locator("#request_client_id").fill(process.env.NEW_AGENCY);
  await page.locator("#request_name").fill("Committee for Roads");
  await page.locator("#account-request button[type=submit]").click();
  await page.locator("#request-1-status").filter({ hasText: "pending" }).waitFor();
  await page.locator("#approve-1").click();
  await page.locator("#request-1-status").filter({ hasText: "successful" }).waitFor();
  await page.locator("#dt_client_id").fill(process.env.NEW_AGENCY);
  await page.locator("#dt_contract").fill("GZ-2026-0001");
  await page.locator("#dt_amount").fill("1000");
  await page.locator("#dt-request button[type=submit]").click();
  await page.locator("#approve-2").click();
  await page.locator("#request-2-status").filter({ hasText: "rejected" }).waitFor();
  await page.getByRole("cell", { name: /INSUFFICIENT_FUNDS/ }).waitFor();
  await page.locator("#dt_amount").fill("abc");
  await page.locator("#dt-request button[type=submit]").click();
  await page.locator("#dt-request-status").filter({ hasText: "Enter an amount in tenge" }).waitFor();
  check(true, "Treasury requests: an account opened on approval, a transfer into DT rejected with the platform's reason, a bad amount caught by the form");
  await page.locator("#budget_client_id").fill(process.env.NEW_AGENCY);
  await page.locator("#budget_amount").fill("5000");
  await page.locator("#budget button[type=submit]").click();
  await page.locator("#budget-status").filter({ hasText: "Done." }).waitFor();
  await page.locator("#dt_amount").fill("1000");
  await page.locator("#dt-request button[type=submit]").click();
  await page.locator("#approve-3").click();
  await page.locator("#request-3-status").filter({ hasText: "successful" }).waitFor();
  check(true, "after a budget allocation, a transfer into DT under a state contract succeeds on approval");
  const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#export-requests").click()]);
  check(download.suggestedFilename() === "treasury-requests.csv", "the requests export as CSV");
  await page.screenshot({ path: `${shots}/treasury-requests.png`, fullPage: true });
  await page.getByRole("link", { name: "Holding" }).click();
  await page.getByRole("heading", { name: "Holding" }).waitFor();
  await page.screenshot({ path: `${shots}/treasury-holding.png`, fullPage: true });
  await signOut(page);

  // Bank back office: a registry distribution from a CSV file, with per-line results.
  await signIn(page, "steppe-officer", users["steppe-officer"]);
  await page.getByRole("link", { name: "Registry distribution" }).click();
  await page.locator("#from").fill(process.env.EMPLOYER);
  await page.locator("#reference").fill("payroll 2026-11");
  await page.locator("#csv-file").setInputFiles({
    name: "payroll.csv", mimeType: "text/csv",
    buffer: Buffer.from(`recipient,amount,bank\n+77027654321,1000.00\n900101300007,2500.50,steppe\n+77000000000,10\n`),
  });
  await page.waitForFunction(() => document.querySelector("#csv").value.includes("2500.50"));
  await page.locator("#registry-form button[type=submit]").click();
  await page.locator("#registry-results").filter({ hasText: "Paid: 2 / 3" }).waitFor();
  await page.getByRole("cell", { name: /UNKNOWN_ACCOUNT/ }).waitFor();
  check(true, "a CSV registry pays its valid lines and reports the bad one");
  await page.getByRole("link", { name: "Clients" }).click();
  await rest("POST", "/v1/abs/correspondent/steppe/credits", { amount_tiyn: 100000 });
  await page.locator("#nbk_amount").fill("1000");
  await page.locator("#nbk button[type=submit]").click();
  await page.locator("#nbk-status").filter({ hasText: "Done." }).waitFor();
  await page.locator("#deposit_client_id").fill("900101300007");
  await page.locator("#deposit_amount").fill("700");
  await page.locator("#deposit button[type=submit]").click();
  await page.locator("#deposit-status").filter({ hasText: "Done." }).waitFor();
  await page.locator("#client_id").fill("900101300007");
  await page.locator("#conversion #amount").fill("700");
  await page.locator("#conversion button[type=submit]").click();
  await page.locator("#conversion-status").filter({ hasText: "Done." }).waitFor();
  check(true, "the back office converts with the NBK, credits a client's bank money and converts it to DT");
  await page.screenshot({ path: `${shots}/bank-registry.png`, fullPage: true });
  await signOut(page);

  // A role sees only its own console: the operator's routes refuse the others.
  for (const [username, heading, file] of [
    ["treasury", "Accounts", "treasury-accounts"],
    ["steppe-officer", "Clients", "bank-clients"],
    ["aigerim", "Wallet: Aigerim Seitova", "client-wallet"],
  ]) {
    await signIn(page, username, users[username]);
    await page.getByRole("heading", { name: heading }).waitFor();
    if (username === "steppe-officer") {
      // Issue 19: the officer's client list comes from the server a page at a time, with
      // "Showing x-y of N", Previous and Next (Steppe has more clients than a page).
      const showing = page.locator(".server-paged .showing");
      await showing.waitFor();
      const first = (await showing.textContent()) ?? "";
      check(/^Showing 1-20 of \d+$/.test(first), `the clients' first page says which rows it shows (${first})`);
      const total = Number(first.split(" of ")[1]);
      check(total > 20, `Steppe has more clients than one page (${total})`);
      check(await page.locator(".server-paged .pager button", { hasText: "Previous" }).isDisabled(), "Previous is off on the first page");
      await page.locator(".server-paged .pager button", { hasText: "Next" }).click();
      await showing.filter({ hasText: "Showing 21-" }).waitFor();
      const second = (await showing.textContent()) ?? "";
      check(second === `Showing 21-${Math.min(40, total)} of ${total}`, `Next turns to the second page (${second})`);
      check(await page.locator(".server-paged .pager button", { hasText: "Previous" }).isEnabled(), "Previous is on on the second page");
      const rows = await page.locator(".server-paged tbody tr").count();
      check(rows === Math.min(40, total) - 20, `the second page shows its rows only (${rows})`);
    }
    const refused = await page.evaluate(async () => (await fetch("/console/api/operator/dashboard")).status);
    check(refused === 403, `${username} signs in to its console and is refused the operator's (${refused})`);
    await page.screenshot({ path: `${shots}/${file}.png`, fullPage: true });
    await signOut(page);
  }

  // A state change without the CSRF token is refused even with the session cookie.
  await signIn(page, "operator", users.operator);
  await page.locator("#circulation").waitFor();
  const forged = await page.evaluate(async () =>
    (await fetch("/console/api/operator/nodes/sapa/block", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ reason: "x" }),
    })).status);
  check(forged === 403, `a block without the CSRF token is refused (${forged})`);
  // A body not declared JSON (what a form or another site's page can send without a CORS
  // preflight; fetch labels a string body text/plain) is refused before the CSRF check.
  const plain = await page.evaluate(async () =>
    (await fetch("/console/api/operator/nodes/sapa/block", { method: "POST", body: JSON.stringify({ reason: "x" }) })).status);
  check(plain === 415, `a block sent as text/plain is refused with 415 (${plain})`);

  // Phone width: nothing overflows sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  await page.locator("#circulation").waitFor();
  check(await noHorizontalScroll(page), "the dashboard fits a phone-width window");
  await page.screenshot({ path: `${shots}/operator-dashboard-phone.png`, fullPage: true });
  await page.setViewportSize({ width: 1366, height: 768 });
  check(await noHorizontalScroll(page), "the dashboard fits a 1,366-pixel screen");

  await signOut(page);

  // Every page of every console fits a phone-width window and a 1,366-pixel screen.
  for (const [username, links] of [
    ["operator", ["Dashboard", "Emissions and redemptions", "Reconciliation", "Calendar", "Health", "Audit log"]],
    ["treasury", ["Accounts", "Requests", "Issue and repayment", "Holding", "Marking"]],
    ["steppe-officer", ["Clients", "Registry distribution"]],
    ["aigerim", ["Wallet"]],
  ]) {
    await page.setViewportSize({ width: 1366, height: 768 });
    await signIn(page, username, users[username]);
    await page.locator("#nav a").first().waitFor();
    for (const link of links) {
      for (const width of [390, 1366]) {
        await page.setViewportSize({ width, height: 844 });
        await page.getByRole("link", { name: link, exact: true }).click();
        await page.getByRole("heading", { level: 1 }).first().waitFor();
        await page.waitForTimeout(150);
        if (!(await noHorizontalScroll(page))) throw new Error(`check failed: ${username} / ${link} overflows at ${width} px`);
      }
    }
    check(true, `every page of the ${username} console fits 390 and 1,366 pixels`);
    await page.setViewportSize({ width: 1366, height: 768 });
    await signOut(page);
  }

  console.log(`all ${checks} checks passed; screenshots in ${shots}`);
} catch (error) {
  console.error(error.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
