// The console in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by
// playwright-core, against a `rotor serve` that tests/it/console.rs started and filled. Every
// check prints "ok - WHAT"; the first failure throws (exit 1) with what the page showed.
// Screenshots of each page go to ROTOR_CONSOLE_SHOTS.
//
// Environment: ROTOR_CONSOLE_URL (https://127.0.0.1:PORT), ROTOR_CONSOLE_ADMIN and
// ROTOR_CONSOLE_NARROW ("user:password"), ROTOR_CONSOLE_DB (the PostgreSQL database and account
// base for the dual-account secret, "db:account"), ROTOR_CONSOLE_RAM_USER (a user of the RAM
// emulator behind target cloud), ROTOR_CONSOLE_SHOTS, ROTOR_TEST_CHROMIUM.
"use strict";

const { chromium } = require("playwright-core");
const path = require("path");

const base = process.env.ROTOR_CONSOLE_URL;
const [adminUser, adminPassword] = process.env.ROTOR_CONSOLE_ADMIN.split(":");
const [narrowUser, narrowPassword] = process.env.ROTOR_CONSOLE_NARROW.split(":");
const [database, account] = process.env.ROTOR_CONSOLE_DB.split(":");
const shots = process.env.ROTOR_CONSOLE_SHOTS;
const ramUser = process.env.ROTOR_CONSOLE_RAM_USER;

function check(cond, what, detail) {
  if (!cond) throw new Error(`FAILED - ${what}${detail ? `: ${detail}` : ""}`);
  console.log(`ok - ${what}`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

/// Clicks `selector` and waits for the page it leads to.
async function submit(page, selector) {
  await Promise.all([page.waitForNavigation(), page.click(selector)]);
}

async function login(page, user, password) {
  await page.goto(`${base}/console/login`);
  await page.fill("input[name=user]", user);
  await page.fill("input[name=password]", password);
  await submit(page, "button[type=submit]");
}

async function logout(page) {
  await Promise.all([page.waitForURL(/\/console\/login/), page.click("form.logout button")]);
}

/// The stages of each version on a secret's page: {"v1": ["ACSPrevious"], ...}.
async function stages(page) {
  return page.$$eval("table.versions tbody tr", (rows) =>
    Object.fromEntries(
      rows.map((r) => [r.dataset.version, [...r.querySelectorAll(".stage")].map((s) => s.textContent)]),
    ),
  );
}

let failing = null;

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.ROTOR_TEST_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
  // The server's certificate is signed by the installation's CA, which this throwaway
  // browser profile does not hold; everything else about TLS is real.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  failing = page;
  // The forms that ask before a big change (data-confirm) are answered yes.
  page.on("dialog", (d) => d.accept());
  const errors = [];
  // Script errors, and anything the Content-Security-Policy blocked of the console's own
  // (the framing test below is refused on purpose).
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    const text = m.text();
    if (m.type() === "error" && text.includes("Content Security Policy") && !text.includes("frame-ancestors")) errors.push(text);
  });

  // Security headers.
  const first = await page.goto(`${base}/console/login`);
  const h = first.headers();
  check(h["content-security-policy"].includes("frame-ancestors 'none'"), "CSP refuses framing", h["content-security-policy"]);
  check(/script-src 'self'(;|$)/.test(h["content-security-policy"]) && !h["content-security-policy"].includes("unsafe-inline"),
    "CSP allows scripts from this origin only", h["content-security-policy"]);
  check(h["x-frame-options"] === "DENY", "X-Frame-Options DENY");
  check(/max-age=\d+/.test(h["strict-transport-security"] || ""), "HSTS over TLS", h["strict-transport-security"]);
  await shot(page, "login");

  // A wrong password is refused.
  await login(page, adminUser, "not-the-password");
  check((await page.textContent("p.error")).includes("Wrong user or password"), "a wrong password is refused");

  // Log in: the session cookie is Secure, HttpOnly, SameSite=Strict.
  await login(page, adminUser, adminPassword);
  check(page.url().endsWith("/console/secrets"), "login leads to the secrets", page.url());
  const cookie = (await context.cookies()).find((c) => c.name === "rotor_console");
  check(cookie && cookie.secure && cookie.httpOnly && cookie.sameSite === "Strict", "the session cookie is Secure, HttpOnly, SameSite=Strict", JSON.stringify(cookie));
  check(await page.isVisible("tr[data-secret='app/one']"), "the admin sees app/one");
  check(await page.isVisible("tr[data-secret='other/two']"), "the admin sees other/two");
  await shot(page, "secrets");

  // Tabs and search.
  await submit(page, "nav.tabs a[data-tab=generic]");
  check(page.url().includes("tab=generic"), "the Generic tab opens", page.url());
  check(await page.isVisible("tr[data-secret='app/one']"), "the Generic tab lists Generic secrets");
  await page.fill("input[name=q]", "two");
  await submit(page, "form.filters button");
  check(!(await page.isVisible("tr[data-secret='app/one']")) && (await page.isVisible("tr[data-secret='other/two']")), "search by name");

  // Create a Generic secret.
  await page.goto(`${base}/console/create?type=Generic`);
  await page.fill("input[name=name]", "app/console-made");
  await page.fill("textarea[name=value]", "made-in-the-console");
  await page.fill("textarea[name=tags]", "team=platform");
  await page.fill("input[name=description]", "made by the browser test");
  await shot(page, "create-generic");
  await submit(page, "form.create button[type=submit]");
  check((await page.textContent("p.notice")).includes("version v1 is ACSCurrent"), "a Generic secret is created", await page.textContent("main"));

  // A Generic secret's new version: a bad version id refused next to its field, then v2.
  await page.fill("#put-value textarea[name=value]", "made-again");
  await page.fill("#put-value input[name=version_id]", "bad id!");
  await submit(page, "#put-value button[type=submit]");
  const versionError = await page.textContent(".field-error[data-field=version_id]");
  check(versionError.includes("version"), "a bad version id shows its error next to the field", versionError);
  await page.fill("#put-value textarea[name=value]", "made-again");
  await page.fill("#put-value input[name=version_id]", "v2");
  await submit(page, "#put-value button[type=submit]");
  check((await page.textContent("p.notice")).includes("version v2 is ACSCurrent"), "a new version is stored", await page.textContent("main"));
  let generic = await stages(page);
  check(generic.v2.includes("ACSCurrent") && generic.v1.includes("ACSPrevious"), "v2 ACSCurrent, v1 ACSPrevious", JSON.stringify(generic));
  await shot(page, "details-generic");
  // Roll back (ACSCurrent to the ACSPrevious version), then a custom stage moved onto v2.
  await submit(page, "#generic-rollback");
  generic = await stages(page);
  check(generic.v1.includes("ACSCurrent") && generic.v2.includes("ACSPrevious"), "a Generic secret rolls back", JSON.stringify(generic));
  await page.fill("#move-stage input[name=stage]", "blue");
  await page.selectOption("#move-stage select[name=move_to]", "v2");
  await submit(page, "#move-stage button[type=submit]");
  generic = await stages(page);
  check(generic.v2.includes("blue") && generic.v1.includes("ACSCurrent"), "a custom stage is moved", JSON.stringify(generic));

  // A bad tag: the CLI's message, next to the tags field; nothing created.
  await page.goto(`${base}/console/create?type=Generic`);
  await page.fill("input[name=name]", "app/bad-tag");
  await page.fill("textarea[name=value]", "x");
  await page.fill("textarea[name=tags]", "aliyun:reserved=x");
  await submit(page, "form.create button[type=submit]");
  const tagError = await page.textContent(".field-error[data-field=tags]");
  check(tagError.includes("reserved prefix"), "a bad tag shows its error next to the field", tagError);
  await shot(page, "create-bad-tag");

  // The RAM panel: an interval outside the type's bounds refused next to its field, then an
  // AccessKey secret for the emulator's RAM user, made on target cloud.
  await page.goto(`${base}/console/create?type=RAMCredentials`);
  await page.fill("input[name=name]", "ram/console");
  await page.selectOption("select[name=target]", "cloud");
  await page.fill("input[name='opt-ram-user']", ramUser);
  await page.check("input[name=rotation]");
  await page.fill("input[name=interval]", "1h");
  await submit(page, "form.create button[type=submit]");
  const ramError = await page.textContent(".field-error[data-field=interval]");
  check(ramError.includes("out of bounds"), "the RAM panel refuses an interval outside its bounds next to the field", ramError);
  await page.fill("input[name=interval]", "30d");
  await shot(page, "create-ram");
  await submit(page, "form.create button[type=submit]");
  check(page.url().includes("/console/secret?name=ram%2Fconsole"), "the RAM secret is created", await page.textContent("main"));
  check((await page.textContent("#kind")).includes("RAMCredentials"), "the RAM secret's type", await page.textContent("#kind"));
  // The ECS panel: no SSH target here, so the target is refused next to its field.
  await page.goto(`${base}/console/create?type=ECS`);
  await page.fill("input[name=name]", "ecs/console");
  await shot(page, "create-ecs");
  await submit(page, "form.create button[type=submit]");
  const ecsError = await page.textContent(".field-error[data-field=target]");
  check(ecsError.includes("choose the target"), "the ECS panel refuses a missing target next to the field", ecsError);

  // A dual-account PostgreSQL secret on target pg, created from its panel.
  await page.goto(`${base}/console/create?type=Rds`);
  await page.fill("input[name=name]", "db/console");
  await page.selectOption("select[name=sub_type]", "DoubleUsers");
  await page.selectOption("select[name=target]", "pg");
  await page.fill("input[name='opt-account']", account);
  await page.fill("input[name='opt-database']", database);
  await page.check("input[name=rotation]");
  await page.fill("input[name=interval]", "7d");
  await shot(page, "create-rds");
  await submit(page, "form.create button[type=submit]");
  check(page.url().includes("/console/secret?name=db%2Fconsole"), "the Rds secret is created", await page.textContent("main"));
  const before = await stages(page);
  const current = Object.keys(before).find((v) => before[v].includes("ACSCurrent"));
  check(current, "the new secret has an ACSCurrent version", JSON.stringify(before));

  // Rotate now, and watch the steps.
  await Promise.all([page.waitForURL(/run=/), page.click("#rotate-now")]);
  await page.waitForSelector("#progress[data-state=rotated]", { timeout: 60000 });
  const steps = await page.$$eval("#progress li", (lis) => lis.map((l) => `${l.dataset.step}:${l.className}`));
  check(steps.join(" ") === "create:done set:done test:done finish:done", "rotate now shows create, set, test, finish done", steps.join(" "));
  await shot(page, "rotate-progress");
  await submit(page, "#progress a.reload");
  const after = await stages(page);
  check(after[current].includes("ACSPrevious"), "the old version became ACSPrevious", JSON.stringify(after));
  const history = await page.$$eval("table.history tbody tr", (rows) => rows.map((r) => r.dataset.action));
  for (const step of ["rotation.create", "rotation.set", "rotation.test", "rotation.finish"]) {
    check(history.includes(step), `the rotation history shows ${step}`, history.join(" "));
  }

  // Reveal the new current value on an explicit click.
  const newCurrent = Object.keys(after).find((v) => after[v].includes("ACSCurrent"));
  check(!(await page.isVisible("pre.revealed")), "no value is shown before a click");
  await submit(page, `tr[data-version='${newCurrent}'] button.reveal`);
  const revealed = await page.textContent("pre.revealed");
  check(revealed.includes('"AccountName"') && revealed.includes(account), "reveal shows the value", revealed.slice(0, 20));
  await shot(page, "details-revealed");
  console.log(`REVEALED ${JSON.stringify(revealed)}`);

  // Rotation settings: off; a bad interval refused next to its field; then every 14 days.
  await page.check("input[name=mode][value=disable]");
  await submit(page, "button:has-text('Save rotation settings')");
  check((await page.textContent("p.notice")).includes("turned off"), "automatic rotation turned off");
  await page.check("input[name=mode][value=interval]");
  await page.fill("input[name=interval]", "1h");
  await submit(page, "button:has-text('Save rotation settings')");
  const intervalError = await page.textContent(".field-error[data-field=interval]");
  check(intervalError.includes("out of bounds"), "an interval outside the type's bounds is refused next to its field", intervalError);
  await page.check("input[name=mode][value=interval]");
  await page.fill("input[name=interval]", "14d");
  await submit(page, "button:has-text('Save rotation settings')");
  check((await page.textContent("p.notice")).includes("every 14 days"), "automatic rotation every 14 days", await page.textContent("main"));

  // A cron schedule with its window and jitter, each refusal next to its field (the CLI's
  // parsers and bounds), then saved.
  const rotationForm = async (cron, window, jitter) => {
    await page.check("input[name=mode][value=cron]");
    await page.fill("input[name=cron]", cron);
    await page.fill("input[name=window]", window);
    await page.fill("input[name=jitter]", jitter);
    await submit(page, "button:has-text('Save rotation settings')");
  };
  for (const [cron, window, jitter, field, words] of [
    ["61 3 * * *", "", "", "cron", "cron"],
    ["0 3 * * *", "2d", "", "window", "longer than"],
    ["0 3 * * *", "1h", "2h", "jitter", "shorter than"],
    ["0 3 * * *", "soon", "", "window", "duration"],
  ]) {
    await rotationForm(cron, window, jitter);
    const e = await page.textContent(`.field-error[data-field=${field}]`).catch(() => "");
    check(e.toLowerCase().includes(words), `rotation settings: ${cron} / ${window} / ${jitter} refused next to ${field}`, e || (await page.textContent("main")));
  }
  await rotationForm("0 3 * * *", "1h", "10m");
  const cronNotice = await page.textContent("p.notice");
  check(cronNotice.includes("cron '0 3 * * *' within 1 hour"), "a cron schedule with its window is saved", cronNotice);
  check((await page.inputValue("input[name=jitter]")) === "10m" && (await page.inputValue("input[name=window]")) === "1h",
    "the form shows the saved window and jitter", `${await page.inputValue("input[name=window]")} ${await page.inputValue("input[name=jitter]")}`);
  await shot(page, "details-settings");

  // Rollback: ACSCurrent goes back to the version it was on before the rotation.
  await submit(page, "button:has-text('Roll back to ACSPrevious')");
  const rolled = await stages(page);
  check(rolled[current].includes("ACSCurrent") && rolled[newCurrent].includes("ACSPrevious"), "rollback puts ACSCurrent back", JSON.stringify(rolled));

  // Delete with a recovery window, then restore.
  await page.goto(`${base}/console/secret?name=app%2Fconsole-made`);
  await page.fill("input[name=days]", "7");
  await submit(page, "button:has-text('Delete secret')");
  check((await page.textContent("p.notice")).includes("Deletion scheduled"), "deletion with a 7-day window", await page.textContent("main"));
  await shot(page, "details-deleted");
  await submit(page, "#restore");
  check((await page.textContent("p.notice")).includes("Restored"), "restore cancels the deletion", await page.textContent("main"));

  // A stored <script> description stays text.
  await page.goto(`${base}/console/secret?name=app%2Fxss`);
  const description = await page.textContent("#description");
  check(description.includes("<script>"), "a <script> description shows as text", description);
  check((await page.evaluate(() => window.__xss)) === undefined, "a stored <script> does not run");
  await shot(page, "details-xss");

  // Targets (with a check) and the audit log.
  await page.goto(`${base}/console/targets`);
  await submit(page, "tr[data-target=pg] button");
  check(await page.isVisible("tr[data-target=pg] .check-result.ok"), "the target check passes", await page.textContent("main"));
  await shot(page, "targets");
  await page.goto(`${base}/console/audit?action=secret.reveal`);
  check((await page.textContent("table.audit")).includes(`console:${adminUser}`), "the audit page shows the reveal by console:USER");
  await shot(page, "audit");
  // Paging: two records a page, older then newer again.
  await page.goto(`${base}/console/audit?limit=2`);
  const ids = () => page.$$eval("table.audit tbody tr", (rows) => rows.map((r) => r.dataset.id));
  const newest = await ids();
  check(newest.length === 2 && !(await page.isVisible("a[rel=prev]")), "the audit log's first page", newest.join(" "));
  await submit(page, "a[rel=next]");
  const older = await ids();
  check(older.length === 2 && Math.max(...older.map(Number)) < Math.min(...newest.map(Number)), "the audit log pages back", older.join(" "));
  await submit(page, "a[rel=prev]");
  check((await ids()).join(" ") === newest.join(" "), "and forward again", (await ids()).join(" "));

  // Changes without the CSRF token, or from another origin, are refused; nothing changes.
  const noToken = await page.request.post(`${base}/console/secret/delete`, {
    form: { name: "app/one", days: "7" },
    headers: { Origin: new URL(base).origin },
  });
  check(noToken.status() === 403, "a change without the CSRF token is refused", String(noToken.status()));
  const token = await page.getAttribute("form.logout input[name=_csrf]", "value");
  const crossOrigin = await page.request.post(`${base}/console/secret/delete`, {
    form: { name: "app/one", days: "7", _csrf: token },
    headers: { Origin: "https://evil.example" },
  });
  check(crossOrigin.status() === 403, "a cross-origin change is refused", String(crossOrigin.status()));
  await page.goto(`${base}/console/secret?name=app%2Fone`);
  check(!(await page.isVisible("#restore")), "app/one was not deleted");

  // Framing is refused by the browser.
  await page.goto("about:blank");
  await page.setContent(`<iframe src="${base}/console/secrets"></iframe>`);
  await page.waitForTimeout(500);
  const framed = page.frames().find((f) => f.url().includes("/console/secrets"));
  const framedText = framed ? await framed.evaluate(() => document.body && document.body.innerText).catch(() => "") : "";
  check(!framedText.includes("Secrets"), "the console does not render in a frame", framedText);

  // Logout ends the session.
  await page.goto(`${base}/console/secrets`);
  await logout(page);
  await page.goto(`${base}/console/secrets`);
  check(page.url().endsWith("/console/login"), "after logout the secrets need a login", page.url());

  // A user whose rules cover app/* sees only those.
  await login(page, narrowUser, narrowPassword);
  check(await page.isVisible("tr[data-secret='app/one']"), "the app/* user sees app/one");
  check(!(await page.isVisible("tr[data-secret='other/two']")), "the app/* user does not see other/two");
  check(!(await page.isVisible("tr[data-secret='db/console']")), "the app/* user does not see db/console");
  await shot(page, "secrets-narrow");
  const forbidden = await page.goto(`${base}/console/secret?name=other%2Ftwo`);
  check(forbidden.status() === 403, "the app/* user may not open other/two", String(forbidden.status()));
  await page.goto(`${base}/console/secrets`);
  await logout(page);

  // Failed logins are throttled: after 5 in a row, the 6th waits (even with the right password).
  for (let i = 0; i < 5; i++) await login(page, narrowUser, `wrong-${i}`);
  await login(page, narrowUser, narrowPassword);
  check((await page.textContent("p.error")).includes("Too many failed sign-ins"), "repeated failed logins are throttled");
  await shot(page, "login-throttled");

  check(errors.length === 0, "no script errors on any page", errors.join("; "));
  await browser.close();
}

main().catch(async (e) => {
  console.log(String(e && e.stack ? e.stack : e));
  if (failing) {
    // What the page showed when it failed.
    console.log(`page: ${failing.url()}`);
    await shot(failing, "failure").catch(() => {});
    console.log((await failing.content().catch(() => "")).slice(0, 3000));
  }
  process.exit(1);
});
