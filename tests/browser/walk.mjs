// The dashboard in a real browser: Debian's Chromium driven by playwright-core (never a
// downloaded browser). On a home filled by `bastion quickstart`, with a second version of
// the GBDT registered, traffic served and an incident raised by `bastion monitor`, it signs
// in, walks every section, compares runs, deploys a canary and rolls it back, sees the
// incident and acknowledges it, checks a viewer's refusals and keyboard use, and saves a
// screenshot of each page under target/screenshots/.
import { chromium } from "playwright-core";
import { execFileSync, spawn } from "node:child_process";
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const BIN = process.env.BASTION_BIN || path.join(root, "target/debug/bastion");
const SHOTS = process.env.BASTION_SCREENSHOTS || path.join(root, "target/screenshots");
const CHROMIUM = process.env.BASTION_CHROMIUM || "/usr/bin/chromium";
const ADMIN_PW = "admin-password-for-ui-tests";
const VIEWER_PW = "viewer-password-for-ui-tests";

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

function cli(home, args, input) {
  return execFileSync(BIN, ["--home", home, ...args], { input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
}

async function waitFor(url, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { if ((await fetch(url)).ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not come up`);
}

const home = fs.mkdtempSync(path.join(os.tmpdir(), "bastion-ui-"));
fs.mkdirSync(SHOTS, { recursive: true });
const out = cli(home, ["quickstart", "--no-serve"]);
const token = out.match(/bst_[A-Za-z0-9_-]+/)?.[0];
assert.ok(token, `quickstart printed no token:\n${out}`);
cli(home, ["user", "create", "ada", "--role", "admin", "--password-stdin"], `${ADMIN_PW}\n`);
cli(home, ["user", "create", "vic", "--role", "viewer", "--password-stdin"], `${VIEWER_PW}\n`);

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const server = spawn(BIN, ["--home", home, "server", "--port", String(port)], { stdio: ["ignore", "pipe", "pipe"] });
let serverLog = "";
server.stdout.on("data", (d) => { serverLog += d; });
server.stderr.on("data", (d) => { serverLog += d; });
const api = async (method, p, body) => {
  const r = await fetch(base + p, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${p}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : {};
};

let browser;
let failed = false;
try {
  await waitFor(`${base}/health`, 60_000);
  // A second version of the GBDT from the same files: signed and scanned at registration; the
  // gate decision and red-team results on its (equal) digest apply to it.
  const v1 = (await api("GET", "/api/2.0/mlflow/model-versions/get?name=breast-cancer-gbdt&version=1")).model_version;
  await api("POST", "/api/2.0/mlflow/model-versions/create", { name: "breast-cancer-gbdt", source: v1.source, run_id: v1.run_id });
  // Traffic, then the monitor, whose rule fires on it: the injected incident.
  const request = JSON.parse(fs.readFileSync(path.join(home, "quickstart/request.json"), "utf8"));
  for (let i = 0; i < 20; i++) await api("POST", "/v2/models/breast-cancer-gbdt/infer", request);
  const rules = path.join(home, "rules.toml");
  fs.writeFileSync(rules, '[window]\nsize = 10\n\n[[alert]]\nname = "ui_test_traffic"\nwhen = "requests >= 1"\nseverity = "high"\ncooldown = "0s"\n');
  await new Promise((r) => setTimeout(r, 1500));
  cli(home, ["monitor", "--rules", rules, "--once", "--settle-ms", "0"]);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  // Refusals the walk provokes (a wrong password, a viewer's denials) are expected errors.
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of (401|403)/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`script error: ${e.message}`));
  page.on("request", (r) => { if (!r.url().startsWith(base)) problems.push(`third-party request: ${r.url()}`); });
  const timings = {};
  const visit = async (name, p) => {
    const t0 = Date.now();
    const r = await page.goto(base + p);
    timings[name] = Date.now() - t0;
    assert.equal(r.status(), 200, `${p}: ${r.status()} ${await page.content()}`);
  };
  const shot = (name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

  // Signing in: a page asked for without a session goes to the login page and comes back.
  await page.goto(`${base}/ui/models`);
  assert.match(page.url(), /\/login\?next=%2Fui%2Fmodels$/);
  await shot("login");
  await page.fill("#user", "ada");
  await page.fill("#password", "wrong");
  await page.click("button[type=submit]");
  assert.match(await page.textContent("[role=alert]"), /Wrong user name or password/);
  await page.fill("#user", "ada");
  await page.fill("#password", ADMIN_PW);
  await page.click("button[type=submit]");
  await page.waitForURL(`${base}/ui/models`);

  // Keyboard: the first Tab lands on the skip link, which leads to the content.
  await visit("overview", "/");
  assert.match(await page.textContent("h1"), /Security posture/);
  const posture = await page.textContent("table");
  assert.match(posture, /breast-cancer-gbdt/);
  assert.match(posture, /production/);
  assert.match(await page.textContent("body"), /ui_test_traffic/, "the injected incident is on the overview");
  await shot("overview");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => document.activeElement.id), "main");

  // Experiments and runs: filter with the API's syntax, compare two training runs.
  await visit("experiments", "/ui/experiments");
  await page.click("text=quickstart");
  await page.waitForURL(/\/ui\/runs\?experiment_id=/);
  await page.fill("input[name=filter]", "tags.`mlflow.source.name` = 'bastion train'");
  await page.click("form.filter button[type=submit]");
  await page.waitForLoadState();
  const boxes = page.locator("input[name=run_id]");
  assert.equal(await boxes.count(), 2, "the two training runs match the filter");
  await shot("runs");
  await boxes.nth(0).check();
  await boxes.nth(1).check();
  assert.match(await page.textContent("[data-compare]"), /Compare 2 runs/);
  await page.click("[data-compare]");
  await page.waitForURL(/\/ui\/compare/);
  assert.ok((await page.locator("svg polyline").count()) >= 2, "metrics overlaid");
  await shot("compare");
  await page.locator("thead a").first().click();
  await page.waitForURL(/\/ui\/run\?run_id=/);
  assert.match(await page.textContent(".lineage"), /breast-cancer/);
  assert.ok((await page.locator("svg").count()) >= 1, "metric charts");
  await shot("run");

  // Models: evidence of the production version, its ML-BOM.
  await visit("model", "/ui/model?name=breast-cancer-gbdt");
  await shot("model");
  await visit("model_version", "/ui/model-version?name=breast-cancer-gbdt&version=1");
  const evidence = await page.textContent("main");
  assert.match(evidence, /Gate decision/);
  assert.match(evidence, /passed/);
  assert.match(evidence, /Signature/);
  assert.ok((await page.locator("table").count()) >= 3);
  const bom = await page.request.get(`${base}/ui/model-version/bom?name=breast-cancer-gbdt&version=1`);
  assert.equal((await bom.json()).bomFormat, "CycloneDX");
  await shot("model-version");

  // Datasets: profile histograms, validation, PII.
  await visit("datasets", "/ui/datasets");
  await page.locator("tbody a").first().click();
  await page.waitForURL(/\/ui\/datasets\//);
  const data = await page.textContent("main");
  assert.match(data, /Profile/);
  assert.match(data, /Validation/);
  assert.ok((await page.locator("svg rect").count()) > 10, "histograms");
  await shot("dataset");

  // Deploy v1 as stable and v2 as a canary through the confirmation pages, then roll back.
  await visit("deploy_confirm", "/ui/deployments/breast-cancer-gbdt/confirm?action=stable&version=1");
  await page.click("button:has-text('Confirm')");
  await page.waitForURL(/\/ui\/deployments\/breast-cancer-gbdt\?done=/);
  await visit("canary_confirm", "/ui/model-version?name=breast-cancer-gbdt&version=2");
  await page.click("text=Deploy as canary…");
  await page.fill("input[name=percent]", "25");
  await shot("deploy-confirm");
  await page.click("button:has-text('Confirm')");
  await page.waitForURL(/\/ui\/deployments\/breast-cancer-gbdt\?done=/);
  const split = await page.textContent("main");
  assert.match(split, /canary/);
  assert.match(split, /75%/);
  assert.match(split, /25%/);
  assert.match(split, /ui_test_traffic/, "the incident is on the deployment page");
  await shot("deployment");
  await page.click("text=Roll back…");
  await page.click("button:has-text('Confirm')");
  await page.waitForURL(/\/ui\/deployments\/breast-cancer-gbdt\?done=/);
  assert.match(await page.textContent("[role=status]"), /Rolled back/);
  assert.doesNotMatch(await page.textContent("table"), /canary/);
  // Acknowledge the incident.
  await page.locator("button:has-text('Acknowledge')").first().click();
  await page.waitForLoadState();
  assert.match(await page.textContent("main"), /acknowledged/);
  const deployments = await api("GET", "/api/bastion/v1/deployments/breast-cancer-gbdt");
  assert.equal(deployments.deployment.stable, "1");
  assert.equal(deployments.deployment.canary, undefined);

  // Audit: the deployment changes are there; an entry's inclusion proof verifies.
  await visit("audit", "/ui/audit");
  assert.match(await page.textContent("main"), /deployment/);
  await page.locator("text=prove").first().click();
  await page.waitForLoadState();
  assert.match(await page.textContent("#proof"), /the entry is in the signed tree/);
  await page.click("text=Verify the whole chain now");
  await page.waitForLoadState();
  assert.match(await page.textContent("main"), /signed tree heads verify/);
  await shot("audit");
  await visit("deployments", "/ui/deployments");

  // Sign out; the viewer sees no actions and is refused them.
  await page.click("text=Sign out");
  await page.waitForURL(/\/login/);
  await page.fill("#user", "vic");
  await page.fill("#password", VIEWER_PW);
  await page.click("button[type=submit]");
  await page.waitForURL(`${base}/`);
  assert.equal(await page.locator("nav a[href='/ui/audit']").count(), 0);
  let r = await page.goto(`${base}/ui/audit`);
  assert.equal(r.status(), 403);
  assert.match(await page.textContent("[role=alert]"), /Permission denied/);
  await shot("viewer-denied");
  r = await page.goto(`${base}/ui/deployments/breast-cancer-gbdt`);
  assert.equal(r.status(), 200);
  assert.equal(await page.locator("text=Roll back…").count(), 0);
  r = await page.goto(`${base}/ui/deployments/breast-cancer-gbdt/confirm?action=rollback`);
  assert.equal(r.status(), 403);

  assert.deepEqual(problems, [], "no CSP violations, script errors or third-party requests");
  console.log(JSON.stringify({ ok: true, page_load_ms: timings, screenshots: fs.readdirSync(SHOTS) }, null, 1));
} catch (e) {
  failed = true;
  console.error(e);
  console.error("--- server log (tail) ---\n" + serverLog.slice(-4000));
} finally {
  if (browser) await browser.close();
  server.kill("SIGTERM");
  fs.rmSync(home, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
