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
    time: "Time", user: "User", action: "Action", target: "Target", detail: "Detail", ok: "OK", failed: "failed", started: "started", interrupted: "interrupted",
    prev: "Previous", next: "Next", page: "Page {n} of {m}", showing: "Showing {a}-{b} of {n}", name: "Name", id: "IIN/BIN", phone: "Phone",
    balance: "Balance", standard: "Spendable", marked: "Marked", vat: "VAT-marked", held: "Held", bank_money: "Bank money",
    history: "History", holds: "Holds", direction: "Direction", amount: "Amount", counterparty: "Counterparty",
    event: "Event", role: "Role", expires: "Expires in", none: "Nothing yet.", astana: "Astana (UTC+5)",
    hours: "{h} h {m} min",
    operations: "Emissions and redemptions", reconciliation: "Reconciliation", calendar: "Calendar", health: "Health",
    all: "All", emission: "Emission", redemption: "Redemption", sort: "Sort", newest: "Newest first", oldest: "Oldest first",
    amount_desc: "Largest first", amount_asc: "Smallest first", filter: "Filter", run: "Run reconciliation",
    result: "Result", problems: "Problems", by_nbk: "By the NBK's registry", by_nodes: "By the nodes",
    year: "Year", working_days: "Working days: {n}", fill_weekends: "Make all weekends non-working",
    working: "working", holiday: "holiday", toggle_hint: "Select a day to switch it between working day and holiday.",
    committed: "Transactions committed", reconciled: "Last reconciliation", holding: "Holding", marking: "Marking",
    export_csv: "Export CSV", create_marking: "Create a marked transfer", initiator: "Initiator (BIN)",
    reference: "Purpose", level: "Level {n}", recipients: "Recipients (bank:IIN/BIN, one per line)", limit: "Limit, ₸",
    add_level: "Add a level", create: "Create", marked_transfer: "Move marked funds", marking_id: "Marking",
    from: "From (IIN/BIN)", to_bank: "To bank", to_client: "To (IIN/BIN)", send: "Send", trace: "Where the funds went",
    registry: "Registry distribution", payer: "Payer (BIN)", csv_file: "CSV file (phone or IIN, amount[, bank])",
    upload: "Pay the registry", line: "Line", paid: "Paid", recipient: "Recipient", convert: "Conversion",
    to_dt: "Bank money → DT", from_dt: "DT → bank money", client: "Client (IIN/BIN)", transfer_phone: "Transfer by phone",
    pay_qr: "Pay a merchant (QR code)", qr_payload: "Payment code (scan or paste)", pay: "Pay", done: "Done.",
    qr_confirm: "Pay {amount} to {name} ({bank}, {id})?", qr_cancelled: "Not paid.",
    amount_tenge: "Amount, ₸", invalid_amount: "Enter an amount in tenge, e.g. 1500.00.", sender: "sender", payee: "payee", released: "Released", returned: "Returned", credit_money: "Credit bank money (salary, cash deposit)", nbk_conversion: "The bank ↔ NBK (through the ABS)", budget: "Allocate budget funds to an agency",
    requests: "Requests", issue: "Issue and repayment", new_account_request: "Request to open an agency account",
    new_dt_request: "Transfer into DT under a state contract", contract: "State contract", register: "Register",
    approve: "Approve", reject: "Reject", reject_title: "Reject request {id}?", pending: "pending", successful: "successful",
    rejected: "rejected", request_kind: "Request", open_account: "Open account", to_dt_request: "Into DT",
    issue_dt: "Issue (bank money → DT)", repay_dt: "Repayment (DT → bank money)", open_new: "Open a digital account",
    individual: "individual", legal_entity: "legal entity", government_agency: "government agency", institution: "the node itself",
    bank: "bank", treasury: "Treasury", central_bank: "central bank", debit: "debit", credit: "credit", unheld: "released from hold",
    registered: "registered", completed: "completed", expired: "expired", single: "single", infinite: "infinite",
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
    failed: "ошибка", started: "начато", interrupted: "прервано", prev: "Назад", next: "Вперёд", page: "Страница {n} из {m}", showing: "Показаны {a}-{b} из {n}", name: "Наименование", id: "ИИН/БИН",
    phone: "Телефон", balance: "Баланс", standard: "Доступно", marked: "Маркированные", vat: "НДС-маркированные",
    held: "Заблокировано под событие", bank_money: "Безналичные", history: "История", holds: "Холдирование",
    direction: "Направление", amount: "Сумма", counterparty: "Контрагент", event: "Событие", role: "Роль",
    expires: "Истекает через", none: "Пока ничего нет.", astana: "Астана (UTC+5)", hours: "{h} ч {m} мин",
    operations: "Выпуск и погашение", reconciliation: "Сверка", calendar: "Календарь", health: "Состояние",
    all: "Все", emission: "Выпуск", redemption: "Погашение", sort: "Сортировка", newest: "Сначала новые",
    oldest: "Сначала старые", amount_desc: "Сначала крупные", amount_asc: "Сначала мелкие", filter: "Фильтр",
    run: "Провести сверку", result: "Результат", problems: "Расхождения", by_nbk: "По реестру НБК", by_nodes: "По узлам",
    year: "Год", working_days: "Рабочих дней: {n}", fill_weekends: "Сделать все выходные нерабочими",
    working: "рабочий", holiday: "выходной", toggle_hint: "Выберите день, чтобы сделать его рабочим или выходным.",
    committed: "Проведено транзакций", reconciled: "Последняя сверка", holding: "Холдирование", marking: "Маркировка",
    export_csv: "Выгрузить CSV", create_marking: "Создать маркированный перевод", initiator: "Инициатор (БИН)",
    reference: "Назначение", level: "Уровень {n}", recipients: "Получатели (банк:ИИН/БИН, по одному в строке)",
    limit: "Лимит, ₸", add_level: "Добавить уровень", create: "Создать", marked_transfer: "Перевести маркированные средства",
    marking_id: "Маркировка", from: "От (ИИН/БИН)", to_bank: "Банк получателя", to_client: "Кому (ИИН/БИН)",
    send: "Отправить", trace: "Куда ушли средства", registry: "Распределение по реестру", payer: "Плательщик (БИН)",
    csv_file: "Файл CSV (телефон или ИИН, сумма[, банк])", upload: "Оплатить реестр", line: "Строка", paid: "Оплачено",
    recipient: "Получатель", convert: "Конвертация", to_dt: "Безналичные → ЦТ", from_dt: "ЦТ → безналичные",
    client: "Клиент (ИИН/БИН)", transfer_phone: "Перевод по номеру телефона", pay_qr: "Оплата по QR-коду",
    qr_payload: "Платёжный код (сканируйте или вставьте)", pay: "Оплатить", done: "Готово.", amount_tenge: "Сумма, ₸",
    qr_confirm: "Оплатить {amount} получателю {name} ({bank}, {id})?", qr_cancelled: "Не оплачено.",
    invalid_amount: "Введите сумму в тенге, например 1500,00.", sender: "отправитель", payee: "получатель", released: "Выплачено", returned: "Возвращено", credit_money: "Зачислить безналичные (зарплата, взнос наличными)", nbk_conversion: "Банк ↔ НБК (через АБС)", budget: "Выделить бюджетные средства госоргану",
    requests: "Заявки", issue: "Выпуск и погашение", new_account_request: "Заявка на открытие счёта госоргана",
    new_dt_request: "Перевод в ЦТ по госконтракту", contract: "Госконтракт", register: "Зарегистрировать",
    approve: "Одобрить", reject: "Отклонить", reject_title: "Отклонить заявку {id}?", pending: "на рассмотрении",
    successful: "успешно", rejected: "отклонено", request_kind: "Заявка", open_account: "Открытие счёта",
    to_dt_request: "Перевод в ЦТ", issue_dt: "Выпуск (безналичные → ЦТ)", repay_dt: "Погашение (ЦТ → безналичные)",
    open_new: "Открыть цифровой счёт", individual: "физическое лицо", legal_entity: "юридическое лицо",
    government_agency: "госорган", institution: "сам узел", bank: "банк", treasury: "Казначейство", central_bank: "центральный банк",
    debit: "списание", credit: "зачисление", unheld: "снято с холда", registered: "зарегистрировано", completed: "исполнено",
    expired: "истекло", single: "однократное", infinite: "многократное",
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
    failed: "қате", started: "басталды", interrupted: "үзілді", prev: "Артқа", next: "Алға", page: "{m} беттің {n}-беті", showing: "{n} ішінен {a}-{b} көрсетілген", name: "Атауы", id: "ЖСН/БСН",
    phone: "Телефон", balance: "Қалдық", standard: "Қолжетімді", marked: "Таңбаланған", vat: "ҚҚС-таңбаланған",
    held: "Оқиғаға ұсталған", bank_money: "Қолма-қолсыз", history: "Тарих", holds: "Ұстау", direction: "Бағыты",
    amount: "Сомасы", counterparty: "Контрагент", event: "Оқиға", role: "Рөл", expires: "Мерзімі бітеді",
    none: "Әзірге ештеңе жоқ.", astana: "Астана (UTC+5)", hours: "{h} сағ {m} мин",
    operations: "Шығару және өтеу", reconciliation: "Салыстыру", calendar: "Күнтізбе", health: "Жай-күйі",
    all: "Барлығы", emission: "Шығару", redemption: "Өтеу", sort: "Сұрыптау", newest: "Алдымен жаңалары",
    oldest: "Алдымен ескілері", amount_desc: "Алдымен ірілері", amount_asc: "Алдымен ұсақтары", filter: "Сүзгі",
    run: "Салыстыру жүргізу", result: "Нәтиже", problems: "Айырмашылықтар", by_nbk: "ҰБ тізілімі бойынша",
    by_nodes: "Түйіндер бойынша", year: "Жыл", working_days: "Жұмыс күндері: {n}",
    fill_weekends: "Барлық демалыс күндерін жұмыссыз ету", working: "жұмыс", holiday: "демалыс",
    toggle_hint: "Күнді жұмыс немесе демалыс күні ету үшін таңдаңыз.", committed: "Жүргізілген транзакциялар",
    reconciled: "Соңғы салыстыру", holding: "Ұстау", marking: "Таңбалау", export_csv: "CSV жүктеу",
    create_marking: "Таңбаланған аударым құру", initiator: "Бастамашы (БСН)", reference: "Мақсаты", level: "{n}-деңгей",
    recipients: "Алушылар (банк:ЖСН/БСН, әр жолға біреуден)", limit: "Лимит, ₸", add_level: "Деңгей қосу",
    create: "Құру", marked_transfer: "Таңбаланған қаражатты аудару", marking_id: "Таңбалау", from: "Кімнен (ЖСН/БСН)",
    to_bank: "Алушының банкі", to_client: "Кімге (ЖСН/БСН)", send: "Жіберу", trace: "Қаражат қайда кетті",
    registry: "Тізілім бойынша бөлу", payer: "Төлеуші (БСН)", csv_file: "CSV файлы (телефон немесе ЖСН, сома[, банк])",
    upload: "Тізілімді төлеу", line: "Жол", paid: "Төленді", recipient: "Алушы", convert: "Айырбастау",
    to_dt: "Қолма-қолсыз → ЦТ", from_dt: "ЦТ → қолма-қолсыз", client: "Клиент (ЖСН/БСН)",
    transfer_phone: "Телефон нөмірі бойынша аударым", pay_qr: "QR-код бойынша төлеу",
    qr_payload: "Төлем коды (сканерлеңіз немесе қойыңыз)", pay: "Төлеу", done: "Дайын.", amount_tenge: "Сомасы, ₸",
    qr_confirm: "{name} ({bank}, {id}) алушыға {amount} төлеу керек пе?", qr_cancelled: "Төленбеді.",
    invalid_amount: "Соманы теңгемен енгізіңіз, мысалы 1500,00.", sender: "жіберуші", payee: "алушы", released: "Төленді", returned: "Қайтарылды", credit_money: "Қолма-қолсыз ақша есептеу (жалақы, қолма-қол салым)", nbk_conversion: "Банк ↔ ҰБ (АБЖ арқылы)", budget: "Мемлекеттік органға бюджет қаражатын бөлу",
    requests: "Өтінімдер", issue: "Шығару және өтеу", new_account_request: "Мемлекеттік орган шотын ашуға өтінім",
    new_dt_request: "Мемлекеттік келісімшарт бойынша ЦТ-ға аудару", contract: "Мемлекеттік келісімшарт",
    register: "Тіркеу", approve: "Мақұлдау", reject: "Қабылдамау", reject_title: "{id} өтінімі қабылданбасын ба?",
    pending: "қаралуда", successful: "сәтті", rejected: "қабылданбады", request_kind: "Өтінім", open_account: "Шот ашу",
    to_dt_request: "ЦТ-ға аудару", issue_dt: "Шығару (қолма-қолсыз → ЦТ)", repay_dt: "Өтеу (ЦТ → қолма-қолсыз)",
    open_new: "Цифрлық шот ашу", individual: "жеке тұлға", legal_entity: "заңды тұлға", government_agency: "мемлекеттік орган",
    institution: "түйіннің өзі", bank: "банк", treasury: "Қазынашылық", central_bank: "орталық банк", debit: "шығыс",
    credit: "кіріс", unheld: "ұстаудан босатылды", registered: "тіркелді", completed: "орындалды", expired: "мерзімі өтті",
    single: "бір реттік", infinite: "көп реттік",
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

// `key`: the idempotency key of the user's action (see `newKey`), sent as Idempotency-Key.
async function api(path, { key, ...options } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (options.method && options.method !== "GET" && me) headers["X-CSRF-Token"] = me.csrf;
  if (key) headers["Idempotency-Key"] = key;
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

// A fresh idempotency key: 128 random bits as hex. One per user action, never one per HTTP
// request: a double click or a retry sends the same key, and the console acts once.
// crypto.getRandomValues rather than crypto.randomUUID, which browsers offer only on HTTPS
// and localhost, and the consoles may be served over plain HTTP inside a bank's network.
function newKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
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

// Previous / "page n of m" / next, for page `index` (0-based) of `pages`; `go(index)` turns.
function pager(index, pages, go) {
  return el("div", { class: "pager" },
    el("button", { type: "button", onclick: () => go(Math.max(0, index - 1)), disabled: index === 0 ? "" : null }, t("prev")),
    el("span", {}, t("page", { n: index + 1, m: pages })),
    el("button", { type: "button", onclick: () => go(Math.min(pages - 1, index + 1)), disabled: index >= pages - 1 ? "" : null }, t("next")));
}

// A table paged by the server (issue 19): `path` answers `{ accounts, total, offset, limit }`
// for `?offset=&limit=`; only the page shown is fetched. "Showing x-y of N", Previous, Next.
function serverPaged(columns, path, size = 20) {
  const holder = el("div", { class: "server-paged" });
  let offset = 0;
  const draw = async () => {
    const page = await api(`${path}?offset=${offset}&limit=${size}`);
    const pages = Math.max(1, Math.ceil(page.total / size));
    const shown = page.accounts.length;
    const first = shown ? offset + 1 : 0;
    holder.replaceChildren(
      table(columns, page.accounts),
      el("p", { class: "muted showing" }, t("showing", { a: first, b: offset + shown, n: page.total })),
      pager(Math.floor(offset / size), pages, (p) => { offset = p * size; draw(); }),
    );
  };
  draw();
  return holder;
}

// A paged table: `rows` all known here, shown `size` at a time.
function paged(columns, rows, size = 20) {
  const holder = el("div");
  let page = 0;
  const pages = Math.max(1, Math.ceil(rows.length / size));
  const draw = () => {
    holder.replaceChildren(
      table(columns, rows.slice(page * size, page * size + size)),
      pager(page, pages, (p) => { page = p; draw(); }),
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

// Download `rows` as a CSV file (amounts as tenge with two decimals, text quoted).
function downloadCsv(filename, header, rows) {
  const quote = (v) => `"${String(v).replace(/"/g, '""')}"`;
  const text = [header, ...rows].map((r) => r.map(quote).join(",")).join("\n") + "\n";
  const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: filename });
  document.body.append(link);
  link.click();
  link.remove();
}

const plain = (tiyn) => `${Math.floor(Number(tiyn) / 100)}.${String(Number(tiyn) % 100).padStart(2, "0")}`;

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
    nodes.replaceChildren(paged([
      { title: t("node"), cell: (n) => n.name },
      { title: t("kind"), cell: (n) => t(n.kind) },
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
    ], m.nodes.filter((n) => n.kind !== "central_bank"), 10));
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
      { title: t("user"), cell: (a) => a.actor },
      { title: t("action"), cell: (a) => a.action },
      { title: t("target"), cell: (a) => a.target },
      { title: t("detail"), cell: (a) => a.detail },
      { title: t("status"), cell: (a) => t(a.outcome === "intent" ? "started" : a.outcome) },
    ], page.entries), pager(offset / size, pages, (p) => { offset = p * size; draw(); }));
  };
  await draw();
}

function accountColumns() {
  return [
    { title: t("name"), cell: (a) => a.account.name },
    { title: t("id"), cell: (a) => a.account.client_id },
    { title: t("kind"), cell: (a) => t(a.account.kind) },
    { title: t("balance"), num: true, cell: (a) => money(a.balance.dt_tiyn) },
    { title: t("held"), num: true, cell: (a) => money(a.balance.dt_held_tiyn) },
    { title: t("marked"), num: true, cell: (a) => money(a.balance.dt_marked_tiyn) },
    { title: t("bank_money"), num: true, cell: (a) => money(a.balance.fiat_tiyn) },
  ];
}

async function treasuryView(main) {
  main.append(el("h1", {}, t("accounts")),
    el("p", {}, el("a", { href: "/console/api/treasury/accounts.csv", download: "treasury-accounts.csv", id: "export-csv" }, t("export_csv"))),
    serverPaged(accountColumns(), "/console/api/treasury/accounts"));
}

async function bankView(main) {
  main.append(el("h1", {}, t("clients")), serverPaged(accountColumns(), "/console/api/bank/clients"));
}

async function clientView(main) {
  const w = await api("/console/api/client/wallet");
  const history = el("div", { id: "history" });
  let offset = 0;
  const size = 10;
  const drawHistory = async () => {
    const page = await api(`/console/api/client/history?offset=${offset}&limit=${size}`);
    const pages = Math.max(1, Math.ceil(page.total / size));
    history.replaceChildren(table([
      { title: t("time"), cell: (l) => astana(l.at_unix_ms) },
      { title: t("direction"), cell: (l) => t(l.direction) },
      { title: t("amount"), num: true, cell: (l) => money(l.amount_tiyn) },
      { title: t("counterparty"), cell: (l) => l.counterparty_name || l.counterparty_bank || "" },
    ], page.lines), pager(offset / size, pages, (p) => { offset = p * size; drawHistory(); }));
  };
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
    paged([
      { title: t("event"), cell: (h) => `${h.event_id} ${h.reference}` },
      { title: t("role"), cell: (h) => t(h.role) },
      { title: t("status"), cell: (h) => t(h.status) },
      { title: t("amount"), num: true, cell: (h) => money(h.share_tiyn) },
      { title: t("expires"), cell: (h) => t("hours", { h: Math.floor(h.expires_in_ms / 3600000), m: Math.floor(h.expires_in_ms / 60000) % 60 }) },
    ], w.holds, 10),
    el("h2", {}, t("history")), history);
  await drawHistory();
}

// A labelled form field.
function field(id, label, attrs = {}) {
  const input = attrs.multiline ? el("textarea", { id, name: id, rows: attrs.rows || 4, required: "" }) : el("input", { id, name: id, required: "", ...attrs });
  return el("div", { class: "field" }, el("label", { for: id }, label), input);
}

const AMOUNT = /^\s*\d{1,13}([.,]\d{1,2})?\s*$/;

// How long after a success the same values, submitted again, still count as the same action.
// A double click's second submit often comes after the first one's answer (the server answers
// in milliseconds, people double-click in a few hundred); nobody means to send the same
// payment twice within two seconds.
const SAME_ACTION_MS = 2000;

// A form whose submit runs `action(values, key)`; shows validation and the outcome in place.
// `key` is the action's idempotency key: the same while the values stay the same and the last
// submit has not succeeded more than SAME_ACTION_MS ago (a double click, a retry after an
// error or a lost answer), a new one otherwise.
function actionForm(id, title, fields, submitLabel, action) {
  const status = el("p", { class: "error", role: "alert", id: `${id}-status` });
  let attempt = null; // { key, values, succeededAt }
  const form = el("form", { class: "panel", id, novalidate: "" }, el("h2", {}, title), fields, el("button", { class: "primary", type: "submit" }, submitLabel), status);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    status.className = "error";
    const values = Object.fromEntries(new FormData(form).entries());
    for (const [name, value] of Object.entries(values)) {
      const input = form.elements[name];
      if (!String(value).trim() && input?.required !== false) { status.textContent = `${t("required")} (${form.querySelector(`label[for="${name}"]`)?.textContent || name})`; return; }
      if (name.includes("amount") && String(value).trim() && !AMOUNT.test(value)) { status.textContent = t("invalid_amount"); return; }
    }
    const signature = JSON.stringify(values);
    const stale = attempt && attempt.succeededAt !== null && performance.now() - attempt.succeededAt > SAME_ACTION_MS;
    if (!attempt || attempt.values !== signature || stale) attempt = { key: newKey(), values: signature, succeededAt: null };
    const mine = attempt;
    try {
      const result = await action(values, mine.key);
      mine.succeededAt = performance.now();
      status.className = "ok";
      status.textContent = typeof result === "string" ? result : t("done");
    } catch (err) {
      // The same action is still running (the first of a double click): its answer will show.
      if (err.code === "REQUEST_IN_PROGRESS") return;
      status.textContent = err.code ? `${err.code}: ${err.message}` : err.message;
    }
  });
  return form;
}

async function operationsView(main) {
  const kind = el("select", { id: "op-kind" }, el("option", { value: "" }, t("all")), el("option", { value: "emission" }, t("emission")), el("option", { value: "redemption" }, t("redemption")));
  const node = el("select", { id: "op-node" }, el("option", { value: "" }, t("all")), ...["steppe", "tulpar", "sapa", "treasury"].map((n) => el("option", { value: n }, n)));
  const sort = el("select", { id: "op-sort" }, ...["newest", "oldest", "amount_desc", "amount_asc"].map((s) => el("option", { value: s }, t(s))));
  const holder = el("div");
  let offset = 0;
  const size = 20;
  const draw = async () => {
    const q = new URLSearchParams({ kind: kind.value, node: node.value, sort: sort.value, offset, limit: size });
    const page = await api(`/console/api/operator/operations?${q}`);
    const pages = Math.max(1, Math.ceil(page.total / size));
    holder.replaceChildren(table([
      { title: t("time"), cell: (o) => astana(o.at_unix_ms) },
      { title: t("kind"), cell: (o) => t(o.kind) },
      { title: t("node"), cell: (o) => o.node },
      { title: t("amount"), num: true, cell: (o) => money(o.amount_tiyn) },
    ], page.operations), pager(offset / size, pages, (p) => { offset = p * size; draw(); }));
  };
  for (const control of [kind, node, sort]) control.addEventListener("change", () => { offset = 0; draw(); });
  main.append(el("h1", {}, t("operations")), el("div", { class: "filters" },
    el("label", {}, t("kind"), " ", kind), el("label", {}, t("node"), " ", node), el("label", {}, t("sort"), " ", sort)), holder);
  await draw();
}

async function reconciliationView(main) {
  const holder = el("div");
  const draw = async () => {
    const runs = await api("/console/api/operator/reconciliation");
    holder.replaceChildren(paged([
      { title: t("time"), cell: (r) => astana(r.at_unix_ms) },
      { title: t("result"), cell: (r) => r.ok ? t("ok") : el("span", { class: "status-blocked" }, t("failed")) },
      { title: t("by_nbk"), num: true, cell: (r) => money(r.circulation_by_nbk_tiyn) },
      { title: t("by_nodes"), num: true, cell: (r) => money(r.circulation_by_nodes_tiyn) },
      { title: t("liability"), num: true, cell: (r) => money(r.dt_liability_tiyn) },
      { title: t("problems"), cell: (r) => r.problems.join("; ") },
    ], runs, 10));
  };
  main.append(el("h1", {}, t("reconciliation")), el("button", { class: "primary", type: "button", id: "run-reconciliation", onclick: async () => {
    await api("/console/api/operator/reconciliation", { method: "POST", body: "{}" });
    await draw();
  } }, t("run")), holder);
  await draw();
}

async function calendarView(main) {
  let year = new Date(Date.now() + 5 * 3600 * 1000).getUTCFullYear();
  const count = el("p", { id: "working-days" });
  const grid = el("div", { class: "months" });
  const draw = (data) => {
    count.textContent = t("working_days", { n: data.working_days });
    const months = [];
    for (let m = 1; m <= 12; m++) {
      const days = data.days.filter((d) => Number(d.date.split("-")[1]) === m);
      months.push(el("div", { class: "month" }, el("h3", {}, `${data.year}-${String(m).padStart(2, "0")}`),
        el("div", { class: "days" }, days.map((d) => el("button", {
          type: "button", class: d.working ? "day working" : "day holiday", id: `day-${d.date}`,
          "aria-pressed": d.working ? "false" : "true", title: `${d.date}: ${t(d.working ? "working" : "holiday")}`,
          onclick: async () => {
            await api(`/console/api/operator/days/${d.date}`, { method: "POST", body: JSON.stringify({ working: !d.working }) });
            draw(await api(`/console/api/operator/calendar/${data.year}`));
          } }, String(Number(d.date.split("-")[2])))))));
    }
    grid.replaceChildren(...months);
  };
  const yearInput = el("input", { id: "year", type: "number", value: String(year), min: "2000", max: "2100" });
  yearInput.addEventListener("change", async () => { year = Number(yearInput.value); draw(await api(`/console/api/operator/calendar/${year}`)); });
  main.append(el("h1", {}, t("calendar")), el("div", { class: "filters" }, el("label", { for: "year" }, t("year")), yearInput,
    el("button", { type: "button", id: "fill-weekends", onclick: async () => draw(await api(`/console/api/operator/calendar/${year}/weekends`, { method: "POST", body: "{}" })) }, t("fill_weekends"))),
    el("p", { class: "muted" }, t("toggle_hint")), count, grid);
  draw(await api(`/console/api/operator/calendar/${year}`));
}

async function healthView(main) {
  const h = await api("/console/api/operator/health");
  main.append(el("h1", {}, t("health")), el("div", { class: "cards" },
    card(t("unspent"), String(h.unspent_tokens)), card(t("committed"), String(h.committed_transactions)),
    card(t("reconciled"), h.reconciled ? t("ok") : t("failed"))),
    paged([
      { title: t("node"), cell: (n) => n.name },
      { title: t("status"), cell: (n) => n.blocked ? el("span", { class: "status-blocked" }, t("blocked")) : t("active") },
      { title: t("accounts"), num: true, cell: (n) => String(n.accounts) },
      { title: t("held_dt"), num: true, cell: (n) => money(n.dt_held_tiyn) },
    ], h.nodes));
}

async function holdingView(main) {
  const holds = await api("/console/api/treasury/holds");
  main.append(el("h1", {}, t("holding")), paged([
    { title: t("name"), cell: ([name]) => name },
    { title: t("event"), cell: ([, h]) => `${h.event_id} ${h.reference}` },
    { title: t("role"), cell: ([, h]) => t(h.role) },
    { title: t("status"), cell: ([, h]) => t(h.status) },
    { title: t("held"), num: true, cell: ([, h]) => money(h.held_tiyn) },
    { title: t("released"), num: true, cell: ([, h]) => money(h.released_tiyn) },
    { title: t("returned"), num: true, cell: ([, h]) => money(h.returned_tiyn) },
    { title: t("expires"), cell: ([, h]) => t("hours", { h: Math.floor(h.expires_in_ms / 3600000), m: Math.floor(h.expires_in_ms / 60000) % 60 }) },
  ], holds));
}

function traceTree(m) {
  // Level 0 is the initiator; every move hangs under the party it came from.
  const children = new Map();
  for (const mv of m.moves) {
    const key = mv.body.from.address;
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(mv);
  }
  const branch = (address, depth) => el("ul", {}, (children.get(address) || []).map((mv) => el("li", {},
    `${mv.body.to.client_id} @ ${mv.body.to.bank} — ${money(mv.body.amount_tiyn)} (${t("level", { n: mv.body.to_level })}${mv.body.unmarked ? ", standard" : ""})`,
    depth < 8 ? branch(mv.body.to.address, depth + 1) : "")));
  return el("div", { class: "tree", id: `trace-${m.id}` }, el("strong", {}, `${m.id}: ${m.reference} — ${m.initiator.client_id}`), branch(m.initiator.address, 0));
}

async function markingView(main) {
  const levels = el("div", { id: "levels" });
  const addLevel = () => {
    const n = levels.children.length + 1;
    levels.append(el("fieldset", { class: "level" }, el("legend", {}, t("level", { n })),
      field(`recipients-${n}`, t("recipients"), { multiline: true, rows: 2 }), field(`limit_amount-${n}`, t("limit"), { inputmode: "decimal" })));
  };
  addLevel();
  const trees = el("div");
  const drawTrees = async () => {
    const markings = await api("/console/api/treasury/markings");
    trees.replaceChildren(...(markings.length ? markings.map(traceTree) : [el("p", { class: "muted" }, t("none"))]));
  };
  const create = actionForm("create-marking", t("create_marking"),
    [field("initiator", t("initiator")), field("reference", t("reference")), levels,
      el("button", { type: "button", onclick: addLevel }, t("add_level"))],
    t("create"), async (v, key) => {
      const lv = [];
      for (let n = 1; v[`recipients-${n}`] !== undefined; n++) {
        const recipients = v[`recipients-${n}`].split(/\n/).map((l) => l.trim()).filter(Boolean).map((l) => {
          const [bank, client_id] = l.split(":").map((x) => x.trim());
          return { bank, client_id };
        });
        lv.push({ recipients, limit_tiyn: tiyn(v[`limit_amount-${n}`]) });
      }
      const m = await api("/console/api/treasury/markings", { method: "POST", key, body: JSON.stringify({ initiator: v.initiator.trim(), reference: v.reference.trim(), levels: lv }) });
      await drawTrees();
      return `${t("done")} ${m.id}`;
    });
  const move = actionForm("marked-transfer", t("marked_transfer"),
    [field("marking_id", t("marking_id")), field("from", t("from")), field("to_bank", t("to_bank")), field("to_client_id", t("to_client")), field("amount", t("amount_tenge"), { inputmode: "decimal" })],
    t("send"), async (v, key) => {
      await api("/console/api/treasury/marked-transfers", { method: "POST", key, body: JSON.stringify({ marking_id: v.marking_id.trim(), from: v.from.trim(), to_bank: v.to_bank.trim(), to_client_id: v.to_client_id.trim(), amount: v.amount }) });
      await drawTrees();
    });
  main.append(el("h1", {}, t("marking")), el("div", { class: "two" }, create, move), el("h2", {}, t("trace")), trees);
  await drawTrees();
}

// "1 500,25" -> 150025, without floating point.
function tiyn(text) {
  const [whole, fraction = ""] = text.replace(/[\s\u00a0]/g, "").replace(",", ".").split(".");
  return Number(whole) * 100 + Number(fraction.padEnd(2, "0"));
}

async function registryView(main) {
  const results = el("div", { id: "registry-results" });
  const form = actionForm("registry-form", t("registry"),
    [field("from", t("payer")), field("reference", t("reference")), field("csv", t("csv_file"), { multiline: true, rows: 6 }),
      el("input", { type: "file", accept: ".csv,text/csv", id: "csv-file", "aria-label": t("csv_file"), onchange: async (e) => {
        const file = e.target.files[0];
        if (file) $("#csv").value = await file.text();
      } })],
    t("upload"), async (v, key) => {
      const report = await api("/console/api/bank/registry", { method: "POST", key, body: JSON.stringify({ from: v.from.trim(), reference: v.reference.trim(), csv: v.csv }) });
      results.replaceChildren(el("p", {}, `${t("paid")}: ${report.lines_paid} / ${report.lines_total}, ${money(report.amount_paid_tiyn)}`), paged([
        { title: t("line"), num: true, cell: (r) => String(r.line) },
        { title: t("paid"), cell: (r) => r.paid ? t("ok") : el("span", { class: "status-blocked" }, `${r.error_code}: ${r.error}`) },
        { title: t("recipient"), cell: (r) => r.recipient ? `${r.recipient.client_id} @ ${r.recipient.bank}` : "" },
        { title: t("amount"), num: true, cell: (r) => money(r.amount_tiyn) },
      ], report.results, 50));
    });
  main.append(el("h1", {}, t("registry")), form, results);
}

async function bankClientsView(main) {
  const history = el("div", { id: "client-history" });
  const columns = [...accountColumns(), { title: t("history"), cell: (a) => el("button", { type: "button", onclick: async () => {
    const page = await api(`/console/api/bank/clients/${encodeURIComponent(a.account.client_id)}/history`);
    history.replaceChildren(el("h2", {}, `${t("history")}: ${a.account.name}`), table([
      { title: t("time"), cell: (l) => astana(l.at_unix_ms) },
      { title: t("direction"), cell: (l) => t(l.direction) },
      { title: t("amount"), num: true, cell: (l) => money(l.amount_tiyn) },
      { title: t("counterparty"), cell: (l) => l.counterparty_name || l.counterparty_bank || "" },
    ], page.lines));
  } }, t("history")) }];
  const conversion = actionForm("conversion", t("convert"),
    [field("client_id", t("client")), field("amount", t("amount_tenge"), { inputmode: "decimal" }),
      el("div", { class: "field" }, el("label", { for: "direction" }, t("convert")),
        el("select", { id: "direction", name: "direction" }, el("option", { value: "to" }, t("to_dt")), el("option", { value: "from" }, t("from_dt"))))],
    t("send"), async (v, key) => {
      await api("/console/api/bank/conversions", { method: "POST", key, body: JSON.stringify({ client_id: v.client_id.trim(), to_dt: v.direction === "to", amount: v.amount }) });
    });
  const open = actionForm("open-account", t("open_new"),
    [el("div", { class: "field" }, el("label", { for: "open_kind" }, t("kind")),
      el("select", { id: "open_kind", name: "open_kind" }, el("option", { value: "individual" }, t("individual")), el("option", { value: "legal_entity" }, t("legal_entity")))),
      field("open_client_id", t("id")), field("open_name", t("name")), field("open_phone", t("phone"), { type: "tel", required: null, placeholder: "+7XXXXXXXXXX" })],
    t("create"), async (v, key) => {
      await api("/console/api/bank/accounts", { method: "POST", key, body: JSON.stringify({ kind: v.open_kind, client_id: v.open_client_id.trim(), name: v.open_name.trim(), phone: v.open_phone.trim() || null }) });
      setTimeout(() => route(), 800);
    });
  const deposit = actionForm("deposit", t("credit_money"), [field("deposit_client_id", t("client")), field("deposit_amount", t("amount_tenge"), { inputmode: "decimal" })],
    t("send"), async (v, key) => {
      await api("/console/api/bank/deposits", { method: "POST", key, body: JSON.stringify({ client_id: v.deposit_client_id.trim(), amount: v.deposit_amount }) });
      setTimeout(() => route(), 800);
    });
  const nbk = actionForm("nbk", t("nbk_conversion"),
    [field("nbk_amount", t("amount_tenge"), { inputmode: "decimal" }),
      el("div", { class: "field" }, el("label", { for: "nbk_direction" }, t("convert")),
        el("select", { id: "nbk_direction", name: "nbk_direction" }, el("option", { value: "to" }, t("emission")), el("option", { value: "from" }, t("redemption"))))],
    t("send"), async (v, key) => {
      await api("/console/api/bank/nbk-conversions", { method: "POST", key, body: JSON.stringify({ to_dt: v.nbk_direction === "to", amount: v.nbk_amount }) });
    });
  main.append(el("h1", {}, t("clients")), serverPaged(columns, "/console/api/bank/clients"), history, el("div", { class: "two" }, deposit, conversion, open, nbk));
}

async function walletView(main) {
  await clientView(main);
  const transfer = actionForm("transfer-form", t("transfer_phone"),
    [field("phone", t("phone"), { type: "tel", autocomplete: "tel", placeholder: "+7XXXXXXXXXX" }), field("amount", t("amount_tenge"), { inputmode: "decimal" })],
    t("send"), async (v, key) => {
      await api("/console/api/client/transfer", { method: "POST", key, body: JSON.stringify({ phone: v.phone.trim(), amount: v.amount }) });
      setTimeout(() => route(), 800);
    });
  // A code says whom to pay and how much: the wallet shows both, as the ID center names the
  // payee, and pays only when the client confirms (a pasted or scanned code is not trusted).
  const qr = actionForm("qr-form", t("pay_qr"), [field("payload", t("qr_payload"), { placeholder: "dtenge:pay?bank=…&to=…&amount=…" })],
    t("pay"), async (v, key) => {
      const payload = v.payload.trim();
      const button = qr.querySelector("button[type=submit]");
      // One question at a time: the button waits from the click until the answer.
      button.disabled = true;
      try {
        const seen = await api(`/console/api/client/qr/preview?${new URLSearchParams({ payload })}`);
        const question = t("qr_confirm", { amount: money(seen.amount_tiyn), name: seen.payee_name, bank: seen.bank, id: seen.client_id });
        if (!(await askToPay(qr, question))) return t("qr_cancelled");
        await api("/console/api/client/qr", { method: "POST", key, body: JSON.stringify({ payload }) });
        setTimeout(() => route(), 800);
      } finally {
        button.disabled = false;
      }
    });
  main.append(el("div", { class: "two" }, transfer, qr));
}

// Ask in `form` whether to pay, `question` saying what and to whom: true on Confirm, false on
// Cancel. Cancel has the focus, so that an Enter (a scanner's) never pays unread.
function askToPay(form, question) {
  return new Promise((resolve) => {
    const done = (answer) => { panel.remove(); resolve(answer); };
    const panel = el("div", { class: "confirm-pay", id: `${form.id}-confirm`, role: "group" },
      el("p", { id: `${form.id}-question` }, question),
      el("button", { class: "primary", type: "button", id: `${form.id}-yes`, onclick: () => done(true) }, t("confirm")),
      el("button", { type: "button", id: `${form.id}-no`, onclick: () => done(false) }, t("cancel")));
    form.append(panel);
    panel.querySelector(`#${form.id}-no`).focus();
  });
}

async function requestsView(main) {
  const list = el("div", { id: "requests-list" });
  let current = [];
  const draw = async () => {
    current = await api("/console/api/treasury/requests");
    list.replaceChildren(paged([
      { title: "№", num: true, cell: (r) => String(r.id) },
      { title: t("time"), cell: (r) => astana(r.created_at_unix_ms) },
      { title: t("request_kind"), cell: (r) => r.kind.open_account ? `${t("open_account")}: ${r.kind.open_account.name} (${r.kind.open_account.client_id})` : `${t("to_dt_request")}: ${r.kind.to_dt.client_id}, ${r.kind.to_dt.contract}` },
      { title: t("amount"), num: true, cell: (r) => r.kind.to_dt ? money(r.kind.to_dt.amount_tiyn) : "" },
      { title: t("status"), cell: (r) => el("span", { class: r.status === "rejected" ? "status-blocked" : "", id: `request-${r.id}-status` }, t(r.status)) },
      { title: t("detail"), cell: (r) => r.reason || "" },
      // One key per decision: made with the button (approve) or when the dialog opens (reject),
      // so a double click sends the same decision with the same key.
      { title: "", cell: (r) => { if (r.status !== "pending") return ""; const approveKey = newKey(); return el("span", { class: "actions" },
          el("button", { type: "button", class: "primary", id: `approve-${r.id}`, onclick: async () => {
            await api(`/console/api/treasury/requests/${r.id}/decision`, { method: "POST", key: approveKey, body: JSON.stringify({ approve: true }) });
            await draw();
          } }, t("approve")),
          el("button", { type: "button", class: "danger", id: `reject-${r.id}`, onclick: async () => {
            const key = newKey();
            const reason = await ask(t("reject_title", { id: r.id }));
            if (!reason) return;
            await api(`/console/api/treasury/requests/${r.id}/decision`, { method: "POST", key, body: JSON.stringify({ approve: false, reason }) });
            await draw();
          } }, t("reject"))); } },
    ], current));
  };
  const openForm = actionForm("account-request", t("new_account_request"), [field("request_client_id", t("id")), field("request_name", t("name"))],
    t("register"), async (v) => {
      await api("/console/api/treasury/requests", { method: "POST", body: JSON.stringify({ kind: "open_account", client_id: v.request_client_id, name: v.request_name }) });
      await draw();
    });
  const dtForm = actionForm("dt-request", t("new_dt_request"), [field("dt_client_id", t("id")), field("dt_contract", t("contract")), field("dt_amount", t("amount_tenge"), { inputmode: "decimal" })],
    t("register"), async (v) => {
      await api("/console/api/treasury/requests", { method: "POST", body: JSON.stringify({ kind: "to_dt", client_id: v.dt_client_id, contract: v.dt_contract, amount: v.dt_amount }) });
      await draw();
    });
  const budget = actionForm("budget", t("budget"), [field("budget_client_id", t("id")), field("budget_amount", t("amount_tenge"), { inputmode: "decimal" })],
    t("send"), async (v, key) => {
      await api("/console/api/treasury/budget", { method: "POST", key, body: JSON.stringify({ client_id: v.budget_client_id.trim(), amount: v.budget_amount }) });
    });
  main.append(el("h1", {}, t("requests")), el("div", { class: "two" }, openForm, dtForm, budget),
    el("p", {}, el("button", { type: "button", id: "export-requests", onclick: () => downloadCsv("treasury-requests.csv",
      ["id", "created", "request", "client_id", "contract", "amount", "status", "reason"],
      current.map((r) => [r.id, astana(r.created_at_unix_ms), r.kind.open_account ? "open_account" : "to_dt",
        (r.kind.open_account || r.kind.to_dt).client_id, r.kind.to_dt?.contract || "", r.kind.to_dt ? plain(r.kind.to_dt.amount_tiyn) : "", r.status, r.reason || ""])) }, t("export_csv"))),
    list);
  await draw();
}

async function issueView(main) {
  const list = el("div");
  let ops = [];
  const draw = async () => {
    ops = await api("/console/api/treasury/operations");
    list.replaceChildren(paged([
      { title: t("time"), cell: (o) => astana(o.at_unix_ms) },
      { title: t("kind"), cell: (o) => t(o.kind) },
      { title: t("amount"), num: true, cell: (o) => money(o.amount_tiyn) },
    ], ops));
  };
  const form = (id, title, path) => actionForm(id, title, [field(`${id}_amount`, t("amount_tenge"), { inputmode: "decimal" })], t("send"), async (v, key) => {
    await api(path, { method: "POST", key, body: JSON.stringify({ amount: v[`${id}_amount`] }) });
    await draw();
  });
  main.append(el("h1", {}, t("issue")), el("div", { class: "two" }, form("issue", t("issue_dt"), "/console/api/treasury/issue"), form("repay", t("repay_dt"), "/console/api/treasury/repayment")),
    el("p", {}, el("button", { type: "button", onclick: () => downloadCsv("treasury-issue-repayment.csv", ["time", "kind", "amount"], ops.map((o) => [astana(o.at_unix_ms), o.kind, plain(o.amount_tiyn)])) }, t("export_csv"))),
    list);
  await draw();
}

const VIEWS = {
  operator: [["dashboard", operatorView], ["operations", operationsView], ["reconciliation", reconciliationView],
    ["calendar", calendarView], ["health", healthView], ["audit", auditView]],
  treasury: [["accounts", treasuryView], ["requests", requestsView], ["issue", issueView], ["holding", holdingView], ["marking", markingView]],
  bank: [["clients", bankClientsView], ["registry", registryView]],
  client: [["wallet", walletView]],
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
