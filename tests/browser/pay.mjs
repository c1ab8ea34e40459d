// Pays one sandbox gateway order through its checkout page in headless Chromium.
//
//   node tests/browser/pay.mjs <checkout_url> <screenshot.png> [expected amount, e.g. "3.00 USD"]
//
// Opens the checkout page, checks that it shows the amount in major units with
// its currency, screenshots it beside the given path (`<name>.checkout.png`),
// clicks Pay, waits for the result page, screenshots it to the path and prints
// one line of JSON. Exits 0 only when every check passed; on any failure it
// still tries to screenshot what the browser shows, prints `{"ok":false,...}`
// and exits non-zero. Every wait is bounded.
//
// Needs Debian's /usr/bin/chromium (or PELAGO_CHROMIUM) and playwright-core
// from package.json: tests/browser/ensure-deps.sh installs both.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const STEP_TIMEOUT_MS = 10_000;
const NAVIGATION_TIMEOUT_MS = 15_000;
const LAUNCH_TIMEOUT_MS = 30_000;
const WHOLE_RUN_TIMEOUT_MS = 90_000;

const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // Only loopback is visited: never go through a proxy from the environment.
  "--no-proxy-server",
];

const started = Date.now();
const result = { ok: false };

function finish(code) {
  result.elapsed_ms = Date.now() - started;
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(code);
}

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

const [checkoutUrl, screenshotPath, expectedAmount] = process.argv.slice(2);
if (!checkoutUrl || !screenshotPath) {
  result.error = "usage: node pay.mjs <checkout_url> <screenshot.png> [expected amount]";
  finish(64);
}
result.checkout_url = checkoutUrl;
result.screenshot = screenshotPath;
const checkoutScreenshotPath = screenshotPath.replace(/(\.png)?$/i, ".checkout.png");
result.checkout_screenshot = checkoutScreenshotPath;

// The last word: whatever hangs, the script ends.
setTimeout(() => {
  result.error = `gave up after ${WHOLE_RUN_TIMEOUT_MS} ms`;
  finish(2);
}, WHOLE_RUN_TIMEOUT_MS).unref();

const gatewayOrderId = new URL(checkoutUrl).pathname.split("/").filter(Boolean).pop();
const payUrl = `${checkoutUrl.replace(/\/+$/, "")}/pay`;
const amountPattern = /\b\d+(?:\.\d+)? [A-Z]{3}\b/;
const userDataDir = mkdtempSync(join(tmpdir(), "pelago-chromium-"));
let context;
let page;
let code = 1;

try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.PELAGO_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: LAUNCH_TIMEOUT_MS,
    viewport: { width: 800, height: 600 },
  });
  result.browser = context.browser()?.version() ?? null;
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));

  // 1. The checkout page.
  const opened = await page.goto(checkoutUrl, { waitUntil: "load" });
  check(opened, "no response for the checkout page");
  check(opened.status() === 200, `checkout page answered HTTP ${opened.status()}`);
  const heading = (await page.getByRole("heading", { level: 1 }).innerText()).trim();
  result.checkout_heading = heading;
  const shown = heading.match(amountPattern)?.[0];
  check(shown, `the checkout heading shows no amount with a currency: ${JSON.stringify(heading)}`);
  result.amount = shown;
  if (expectedAmount) {
    check(shown === expectedAmount, `the checkout page shows ${shown}, expected ${expectedAmount}`);
  }
  check((await page.title()).includes(shown), `the page title does not show ${shown}`);
  const pay = page.getByRole("button", { name: /^Pay\b/ });
  check((await pay.count()) === 1, "expected exactly one Pay button");
  const payLabel = (await pay.innerText()).trim();
  check(payLabel.includes(shown), `the Pay button does not show the amount: ${JSON.stringify(payLabel)}`);
  check((await page.getByRole("button", { name: "Fail" }).count()) === 1, "expected a Fail button");
  check(
    (await page.locator("body").innerText()).includes(gatewayOrderId),
    `the checkout page does not name order ${gatewayOrderId}`,
  );

  await page.screenshot({ path: checkoutScreenshotPath, fullPage: true, timeout: STEP_TIMEOUT_MS });

  // 2. Pay: the form posts to {checkout_url}/pay and the browser lands on the result page.
  const [posted] = await Promise.all([
    page.waitForResponse(
      (response) => response.url() === payUrl && response.request().method() === "POST",
      { timeout: NAVIGATION_TIMEOUT_MS },
    ),
    pay.click(),
  ]);
  result.pay_status = posted.status();
  check(posted.ok(), `POST ${payUrl} answered HTTP ${posted.status()}`);
  await page.waitForURL(payUrl, { waitUntil: "load" });
  result.result_url = page.url();

  // 3. The result page.
  const headline = (await page.getByRole("heading", { level: 1 }).innerText()).trim();
  result.result_heading = headline;
  check(headline === "Payment successful", `the result page says ${JSON.stringify(headline)}`);
  const resultText = await page.locator("body").innerText();
  check(resultText.includes(shown), `the result page does not show ${shown}`);
  check(resultText.includes(gatewayOrderId), `the result page does not name order ${gatewayOrderId}`);
  check(pageErrors.length === 0, `script errors on the page: ${pageErrors.join("; ")}`);

  await page.screenshot({ path: screenshotPath, fullPage: true, timeout: STEP_TIMEOUT_MS });
  result.ok = true;
  code = 0;
} catch (error) {
  result.error = String(error?.message ?? error).split("\n")[0];
  if (page) {
    // What the browser showed when it failed, if it still can.
    await page
      .screenshot({ path: screenshotPath, fullPage: true, timeout: 5_000 })
      .catch(() => {});
    result.failed_at_url = page.url();
  }
}

await context?.close().catch(() => {});
rmSync(userDataDir, { recursive: true, force: true });
finish(code);
