// The dtenge consoles: one page, no build step. Talks only to /console/api/, which checks
// the session's role on every call. Amounts arrive as integer tiyn and are formatted without
// floating point; times are shown in Astana time (UTC+5) with the zone named.

const T = {
  en: {
    brand: "Digital Tenge", language: "Language", sign_in: "Sign in", sign_out: "Sign out", username: "Username",
    password: "Password", wrong: "Wrong username or password.", required: "Fill in this field.",
    dashboard: "Dashboard", audit: "Audit log", accounts: "Accounts", clients: "Clients", wallet: "Wallet",
    circulation: "DT in circulation", emitted: "Emitted", redeemed: "Redeemed", liability: "NBK DT liability",
    unspent: "Unspent tokens", per_node: "Banks and the Treasury", node: "Node", kind: "Kind", status: "Status",
    held_dt: "DT held", correspondent: "Correspondent account", active: "active", blocked: "blocked",
    block: "Block", unblock: "Unblock", reason: "Reason", cancel: "Cancel", confirm: "Confirm",
    block_title: "Block {node}?", unblock_title: "Unblock {node}?", rate: "Payments per second",
    time: "Time", user: "User", action: "Action", target: "Target", detail: "Detail", ok: "OK", failed: "failed",
    prev: "Previous", next: "Next", page: "Page {n} of {m}", name: "Name", id: "IIN/BIN", phone: "Phone",
    balance: "Balance", standard: "Spendable", marked: "Marked", vat: "VAT-marked", held: "Held", bank_money: "Bank money",
    history: "History", holds: "Holds", direction: "Direction", amount: "Amount", counterparty: "Counterparty",
    event: "Event", role: "Role", expires: "Expires in", none: "Nothing yet.", astana: "Astana (UTC+5)",
    hours: "{h} h {m} min",
  },
  ru: {
    brand: "Цифровой тенге", language: "Язык", sign_in: "Войти", sign_out: "Выйти", username: "Имя пользователя",
    password: "Пароль", wrong: "Неверное имя пользователя или пароль.", required: "Заполните это поле.",
    dashboard: "Панель", audit: "Журнал действий", accounts: "Счета", clients: "Клиенты", wallet: "Кошелёк",
    circulation: "ЦТ в обращении", emitted: "Выпущено", redeemed: "Погашено", liability: "Обязательства НБК по ЦТ",
    unspent: "Непотраченные токены", per_node: "Банки и Казначейство", node: "Узел", kind: "Тип", status: "Статус",
    held_dt: "ЦТ на узле", correspondent: "Корреспондентский счёт", active: "активен", blocked: "заблокирован",
    block: "Заблокировать", unblock: "Разблокировать", reason: "Причина", cancel: "Отмена", confirm: "Подтвердить",
    block_title: "Заблокировать {node}?", unblock_title: "Разблокировать {node}?", rate: "Платежей в секунду",
    time: "Время", user: "Пользователь", action: "Действие", target: "Объект", detail: "Подробности", ok: "Успешно",
    failed: "ошибка", prev: "Назад", next: "Вперёд", page: "Страница {n} из {m}", name: "Наименование", id: "ИИН/БИН",
    phone: "Телефон", balance: "Баланс", standard: "Доступно", marked: "Маркированные", vat: "НДС-маркированные",
    held: "Заблокировано под событие", bank_money: "Безналичные", history: "История", holds: "Холдирование",
    direction: "Направление", amount: "Сумма", counterparty: "Контрагент", event: "Событие", role: "Роль",
    expires: "Истекает через", none: "Пока ничего нет.", astana: "Астана (UTC+5)", hours: "{h} ч {m} мин",
  },
  kk: {
    brand: "Цифрлық теңге", language: "Тіл", sign_in: "Кіру", sign_out: "Шығу", username: "Пайдаланушы аты",
    password: "Құпиясөз", wrong: "Пайдаланушы аты немесе құпиясөз қате.", required: "Бұл өрісті толтырыңыз.",
    dashboard: "Басқару тақтасы", audit: "Әрекеттер журналы", accounts: "Шоттар", clients: "Клиенттер", wallet: "Әмиян",
    circulation: "Айналымдағы ЦТ", emitted: "Шығарылды", redeemed: "Өтелді", liability: "ҰБ-ның ЦТ бойынша міндеттемесі",
    unspent: "Жұмсалмаған токендер", per_node: "Банктер және Қазынашылық", node: "Түйін", kind: "Түрі", status: "Күйі",
    held_dt: "Түйіндегі ЦТ", correspondent: "Корреспонденттік шот", active: "белсенді", blocked: "бұғатталған",
    block: "Бұғаттау", unblock: "Бұғаттан шығару", reason: "Себебі", cancel: "Болдырмау", confirm: "Растау",
    block_title: "{node} бұғатталсын ба?", unblock_title: "{node} бұғаттан шығарылсын ба?", rate: "Секундына төлемдер",
    time: "Уақыт", user: "Пайдаланушы", action: "Әрекет", target: "Нысан", detail: "Толығырақ", ok: "Сәтті",
    failed: "қате", prev: "Артқа", next: "Алға", page: "{m} беттің {n}-беті", name: "Атауы", id: "ЖСН/БСН",
    phone: "Телефон", balance: "Қалдық", standard: "Қолжетімді", marked: "Таңбаланған", vat: "ҚҚС-таңбаланған",
    held: "Оқиғаға ұсталған", bank_money: "Қолма-қолсыз", history: "Тарих", holds: "Ұстау", direction: "Бағыты",
    amount: "Сомасы", counterparty: "Контрагент", event: "Оқиға", role: "Рөл", expires: "Мерзімі бітеді",
    none: "Әзірге ештеңе жоқ.", astana: "Астана (UTC+5)", hours: "{h} сағ {m} мин",
  },
};

let lang = localStorage.getItem("lang") || "kk";
let me = null;
let timer = null;

const t = (key, vars = {}) => (T[lang][key] || T.en[key] || key).replace(/\{(\w+)\}/g, (_, k) => vars[k] ?? "");
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const child of children.flat()) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

// 1234567 tiyn -> "12 345.67 ₸" (grouping by the language's convention), no floating point.
function money(tiyn) {
  const n = Math.trunc(Number(tiyn));
  const negative = n < 0;
  const abs = Math.abs(n);
  const whole = Math.floor(abs / 100).toString();
  const cents = (abs % 100).toString().padStart(2, "0");
  const sep = lang === "en" ? "," : "\u00a0";
  const dec = lang === "en" ? "." : ",";
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, sep);
  return `${negative ? "−" : ""}${grouped}${dec}${cents} ₸`;
}

// Unix ms -> "2026-11-23 10:00:00 Astana (UTC+5)".
function astana(ms) {
  const d = new Date(Number(ms) + 5 * 3600 * 1000);
  const p = (x) => String(x).padStart(2, "0");
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${t("astana")}`;
}

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (options.method && options.method !== "GET" && me) headers["X-CSRF-Token"] = me.csrf;
  const response = await fetch(path, { credentials: "same-origin", ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body?.error?.message || response.statusText);
    error.code = body?.error?.code;
    error.status = response.status;
    throw error;
  }
  return body;
}

function translate() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
  $("#lang").value = lang;
}

function table(columns, rows) {
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : "" }, c.title)));
  const body = rows.length
    ? rows.map((row) => el("tr", {}, columns.map((c) => el("td", { class: c.num ? "num" : "" }, c.cell(row)))))
    : [el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, t("none")))];
  return el("div", { class: "scroll" }, el("table", {}, el("thead", {}, head), el("tbody", {}, body)));
}

// A paged table: `rows` all known here, shown `size` at a time.
function paged(columns, rows, size = 20) {
  const holder = el("div");
  let page = 0;
  const pages = Math.max(1, Math.ceil(rows.length / size));
  const draw = () => {
    holder.replaceChildren(
      table(columns, rows.slice(page * size, page * size + size)),
      el("div", { class: "pager" },
        el("button", { type: "button", onclick: () => { page = Math.max(0, page - 1); draw(); }, disabled: page === 0 ? "" : null }, t("prev")),
        el("span", {}, t("page", { n: page + 1, m: pages })),
        el("button", { type: "button", onclick: () => { page = Math.min(pages - 1, page + 1); draw(); }, disabled: page >= pages - 1 ? "" : null }, t("next"))),
    );
  };
  draw();
  return holder;
}

function card(label, value, id) {
  return el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "value", id }, value));
}

function ask(title) {
  return new Promise((resolve) => {
    const dialog = $("#confirm");
    $("#confirm-title").textContent = title;
    $("#confirm-reason").value = "";
    $("#confirm-error").textContent = "";
    const done = (value) => { dialog.close(); resolve(value); };
    $("#confirm-cancel").onclick = () => done(null);
    $("#confirm-form").onsubmit = (e) => {
      e.preventDefault();
      const reason = $("#confirm-reason").value.trim();
      if (!reason) { $("#confirm-error").textContent = t("required"); return; }
      done(reason);
    };
    dialog.showModal();
    $("#confirm-reason").focus();
  });
}

// ---- views ----

function loginView() {
  const error = el("p", { class: "error", role: "alert", id: "login-error" });
  const form = el("form", { class: "login", novalidate: "" },
    el("h1", {}, t("sign_in")),
    el("label", { for: "username" }, t("username")),
    el("input", { id: "username", name: "username", autocomplete: "username", required: "" }),
    el("label", { for: "password" }, t("password")),
    el("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: "" }),
    error,
    el("button", { class: "primary", type: "submit", id: "sign-in" }, t("sign_in")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const username = $("#username").value.trim();
    const password = $("#password").value;
    if (!username || !password) { error.textContent = t("required"); return; }
    try {
      me = await api("/console/api/login", { method: "POST", body: JSON.stringify({ username, password }) });
      navigate(`#/${me.console}`);
    } catch (err) {
      error.textContent = err.status === 401 ? t("wrong") : err.message;
    }
  });
  return form;
}

const rateSamples = [];

function drawChart(canvas) {
  const ctx = canvas.getContext("2d");
  const w = (canvas.width = canvas.clientWidth * devicePixelRatio);
  const h = (canvas.height = canvas.clientHeight * devicePixelRatio);
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...rateSamples);
  ctx.strokeStyle = "#0b6e4f";
  ctx.lineWidth = 2 * devicePixelRatio;
  ctx.beginPath();
  rateSamples.forEach((v, i) => {
    const x = (i / Math.max(1, rateSamples.length - 1)) * w;
    const y = h - (v / max) * (h - 10 * devicePixelRatio) - 4;
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = "#5b6675";
  ctx.font = `${12 * devicePixelRatio}px system-ui`;
  ctx.fillText(`max ${Math.round(max)}/s`, 6 * devicePixelRatio, 14 * devicePixelRatio);
}

async function operatorView(main) {
  const cards = el("div", { class: "cards" });
  const nodes = el("div");
  const canvas = el("canvas", { id: "rate-chart", role: "img", "aria-label": t("rate") });
  const rateNow = el("span", { id: "rate-now" }, "0");
  main.append(el("h1", {}, t("dashboard")), cards, el("h2", {}, t("rate"), ": ", rateNow), canvas,
    el("h2", {}, t("per_node")), nodes);
  let last = null;
  const refresh = async () => {
    const d = await api("/console/api/operator/dashboard");
    const m = d.monitoring;
    cards.replaceChildren(
      card(t("circulation"), money(m.circulation_tiyn), "circulation"),
      card(t("emitted"), money(m.emitted_tiyn), "emitted"),
      card(t("redeemed"), money(m.redeemed_tiyn), "redeemed"),
      card(t("liability"), money(m.dt_liability_tiyn), "liability"),
      card(t("unspent"), String(m.unspent_tokens), "unspent"));
    // The browser's own clock: the platform's may be a manual one (demo, tests).
    d.sampled_ms = performance.now();
    if (last) {
      const seconds = Math.max(0.001, (d.sampled_ms - last.sampled_ms) / 1000);
      const rate = Math.max(0, (d.committed_transactions - last.committed_transactions) / seconds);
      rateSamples.push(rate);
      if (rateSamples.length > 60) rateSamples.shift();
      rateNow.textContent = rate.toFixed(1);
    }
    last = d;
    drawChart(canvas);
    nodes.replaceChildren(table([
      { title: t("node"), cell: (n) => n.name },
      { title: t("kind"), cell: (n) => n.kind },
      { title: t("status"), cell: (n) => n.blocked ? el("span", { class: "status-blocked" }, `${t("blocked")}: ${n.block_reason}`) : t("active") },
      { title: t("held_dt"), num: true, cell: (n) => money(n.dt_held_tiyn) },
      { title: t("emitted"), num: true, cell: (n) => money(n.emitted_tiyn) },
      { title: t("redeemed"), num: true, cell: (n) => money(n.redeemed_tiyn) },
      { title: t("correspondent"), num: true, cell: (n) => money(n.correspondent_tiyn) },
      { title: "", cell: (n) => n.kind === "central_bank" ? "" : el("button", {
          type: "button", class: n.blocked ? "" : "danger", id: `${n.blocked ? "unblock" : "block"}-${n.id}`,
          onclick: async () => {
            const reason = await ask(t(n.blocked ? "unblock_title" : "block_title", { node: n.name }));
            if (!reason) return;
            await api(`/console/api/operator/nodes/${n.id}/${n.blocked ? "unblock" : "block"}`, { method: "POST", body: JSON.stringify({ reason }) });
            await refresh();
          } }, t(n.blocked ? "unblock" : "block")) },
    ], m.nodes.filter((n) => n.kind !== "central_bank")));
  };
  await refresh();
  const seq = renderSeq;
  clearInterval(timer);
  timer = setInterval(() => (seq === renderSeq ? refresh().catch(() => {}) : clearInterval(timer)), 2000);
}

async function auditView(main) {
  const holder = el("div");
  main.append(el("h1", {}, t("audit")), holder);
  let offset = 0;
  const size = 20;
  const draw = async () => {
    const page = await api(`/console/api/operator/audit?offset=${offset}&limit=${size}`);
    const pages = Math.max(1, Math.ceil(page.total / size));
    holder.replaceChildren(table([
      { title: t("time"), cell: (a) => astana(a.at_unix_ms) },
      { title: t("user"), cell: (a) => a.username },
      { title: t("action"), cell: (a) => a.action },
      { title: t("target"), cell: (a) => a.target },
      { title: t("detail"), cell: (a) => a.detail },
      { title: t("status"), cell: (a) => a.ok ? t("ok") : t("failed") },
    ], page.entries), el("div", { class: "pager" },
      el("button", { type: "button", disabled: offset === 0 ? "" : null, onclick: () => { offset = Math.max(0, offset - size); draw(); } }, t("prev")),
      el("span", {}, t("page", { n: offset / size + 1, m: pages })),
      el("button", { type: "button", disabled: offset + size >= page.total ? "" : null, onclick: () => { offset += size; draw(); } }, t("next"))));
  };
  await draw();
}

function accountColumns() {
  return [
    { title: t("name"), cell: (a) => a.account.name },
    { title: t("id"), cell: (a) => a.account.client_id },
    { title: t("kind"), cell: (a) => a.account.kind },
    { title: t("balance"), num: true, cell: (a) => money(a.balance.dt_tiyn) },
    { title: t("held"), num: true, cell: (a) => money(a.balance.dt_held_tiyn) },
    { title: t("marked"), num: true, cell: (a) => money(a.balance.dt_marked_tiyn) },
    { title: t("bank_money"), num: true, cell: (a) => money(a.balance.fiat_tiyn) },
  ];
}

async function treasuryView(main) {
  const accounts = await api("/console/api/treasury/accounts");
  main.append(el("h1", {}, t("accounts")), paged(accountColumns(), accounts));
}

async function bankView(main) {
  const clients = await api("/console/api/bank/clients");
  main.append(el("h1", {}, t("clients")), paged(accountColumns(), clients));
}

async function clientView(main) {
  const w = await api("/console/api/client/wallet");
  const b = w.account.balance;
  main.append(
    el("h1", {}, `${t("wallet")}: ${w.account.account.name}`),
    el("div", { class: "cards" },
      card(t("balance"), money(b.dt_tiyn), "balance"),
      card(t("standard"), money(b.dt_spendable_tiyn), "spendable"),
      card(t("marked"), money(b.dt_marked_tiyn + b.dt_vat_tiyn), "marked"),
      card(t("held"), money(b.dt_held_tiyn), "held"),
      card(t("bank_money"), money(b.fiat_tiyn), "fiat")),
    el("h2", {}, t("holds")),
    table([
      { title: t("event"), cell: (h) => `${h.event_id} ${h.reference}` },
      { title: t("role"), cell: (h) => h.role },
      { title: t("status"), cell: (h) => h.status },
      { title: t("amount"), num: true, cell: (h) => money(h.share_tiyn) },
      { title: t("expires"), cell: (h) => t("hours", { h: Math.floor(h.expires_in_ms / 3600000), m: Math.floor(h.expires_in_ms / 60000) % 60 }) },
    ], w.holds),
    el("h2", {}, t("history")),
    table([
      { title: t("time"), cell: (l) => astana(l.at_unix_ms) },
      { title: t("direction"), cell: (l) => l.direction },
      { title: t("amount"), num: true, cell: (l) => money(l.amount_tiyn) },
      { title: t("counterparty"), cell: (l) => l.counterparty_name || l.counterparty_bank || "" },
    ], w.history.lines));
}

const VIEWS = {
  operator: [["dashboard", operatorView], ["audit", auditView]],
  treasury: [["accounts", treasuryView]],
  bank: [["clients", bankView]],
  client: [["wallet", clientView]],
};

let renderSeq = 0;

// Go to `hash`: the hashchange event routes, or route now if the hash does not change.
function navigate(hash) {
  if (location.hash !== hash && !(hash === "" && location.hash === "")) location.hash = hash;
  else route();
}

async function route() {
  // Only the latest navigation renders: a sign-out both changes the hash and re-routes.
  const seq = ++renderSeq;
  clearInterval(timer);
  translate();
  if (!me) {
    try { me = await api("/console/api/me"); } catch { me = null; }
  }
  if (seq !== renderSeq) return;
  const main = el("div");
  $("#nav").replaceChildren();
  $("#signout").hidden = !me;
  $("#who").textContent = me ? `${me.display_name} (${me.username})` : "";
  if (!me) { $("#main").replaceChildren(loginView()); return; }
  const views = VIEWS[me.console];
  const wanted = location.hash.replace(/^#\//, "").split("/")[1];
  const [current, view] = views.find(([name]) => name === wanted) || views[0];
  for (const [name] of views) {
    $("#nav").append(el("a", { href: `#/${me.console}/${name}`, "aria-current": name === current ? "page" : null }, t(name)));
  }
  try {
    await view(main);
  } catch (err) {
    if (err.status === 401) { me = null; route(); return; }
    main.append(el("p", { class: "error", role: "alert" }, err.message));
  }
  if (seq !== renderSeq) return;
  $("#main").replaceChildren(...main.childNodes);
  $("#main").focus();
}

$("#lang").addEventListener("change", (e) => { lang = e.target.value; localStorage.setItem("lang", lang); route(); });
$("#signout").addEventListener("click", async () => {
  try { await api("/console/api/logout", { method: "POST", body: "{}" }); } finally { me = null; navigate(""); }
});
window.addEventListener("hashchange", route);
route();
