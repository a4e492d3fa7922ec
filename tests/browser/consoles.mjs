// Real-browser tests of the consoles, in headless Debian Chromium through playwright-core.
// Started by crates/scenarios/tests/browser.rs, which runs the platform and passes:
//   BASE_URL       the platform (REST API and consoles)
//   USERS          JSON: {"operator": "password", "treasury": ..., "steppe-officer": ..., "aigerim": ...}
//   SCREENSHOTS    directory for one PNG per console page (a reviewer looks at them)
//   CHROMIUM       the browser binary (default /usr/bin/chromium)
// Exits 0 when every check holds; prints the failing check and exits 1 otherwise.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const base = process.env.BASE_URL;
const users = JSON.parse(process.env.USERS || "{}");
const shots = process.env.SCREENSHOTS || "target/screenshots";
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
    headers: { "Content-Type": "application/json", "Idempotency-Key": `browser-${Date.now()}-${Math.random()}` },
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
  await page.getByRole("cell", { name: "AML investigation 2026-118" }).waitFor();
  check(true, "the audit log shows the block with its reason");
  const time = await page.locator("tbody td").first().textContent();
  check(time.includes("Astana (UTC+5)"), `times are shown in Astana time with the zone named: ${time}`);
  await page.screenshot({ path: `${shots}/operator-audit-log.png`, fullPage: true });

  // The language switcher.
  await page.locator("#lang").selectOption("ru");
  await page.getByRole("heading", { name: "Журнал действий" }).waitFor();
  await page.locator("#lang").selectOption("kk");
  await page.getByRole("heading", { name: "Әрекеттер журналы" }).waitFor();
  check(true, "the interface switches to Russian and Kazakh");
  await page.screenshot({ path: `${shots}/operator-audit-log-kk.png`, fullPage: true });
  await page.locator("#lang").selectOption("en");
  await signOut(page);

  // A role sees only its own console: the operator's routes refuse the others.
  for (const [username, heading, file] of [
    ["treasury", "Accounts", "treasury-accounts"],
    ["steppe-officer", "Clients", "bank-clients"],
    ["aigerim", "Wallet: Aigerim Seitova", "client-wallet"],
  ]) {
    await signIn(page, username, users[username]);
    await page.getByRole("heading", { name: heading }).waitFor();
    const refused = await page.evaluate(async () => (await fetch("/console/api/operator/dashboard")).status);
    check(refused === 403, `${username} signs in to its console and is refused the operator's (${refused})`);
    await page.screenshot({ path: `${shots}/${file}.png`, fullPage: true });
    await signOut(page);
  }

  // A state change without the CSRF token is refused even with the session cookie.
  await signIn(page, "operator", users.operator);
  await page.locator("#circulation").waitFor();
  const forged = await page.evaluate(async () =>
    (await fetch("/console/api/operator/nodes/sapa/block", { method: "POST", body: JSON.stringify({ reason: "x" }) })).status);
  check(forged === 403, `a block without the CSRF token is refused (${forged})`);

  // Phone width: nothing overflows sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  await page.locator("#circulation").waitFor();
  check(await noHorizontalScroll(page), "the dashboard fits a phone-width window");
  await page.screenshot({ path: `${shots}/operator-dashboard-phone.png`, fullPage: true });
  await page.setViewportSize({ width: 1366, height: 768 });
  check(await noHorizontalScroll(page), "the dashboard fits a 1,366-pixel screen");

  console.log(`all ${checks} checks passed; screenshots in ${shots}`);
} catch (error) {
  console.error(error.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
