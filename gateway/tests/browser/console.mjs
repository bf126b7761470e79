//! The live sale console end to end in a real headless browser (Debian's chromium, driven by
//! playwright-core; `scripts/browser.sh` installs both): a manager signs in by pasting a token,
//! watches a rush of purchases move the sale's numbers live (no reload), and pauses the sale
//! from the page, after which purchases answer 409 `sale_not_active`; Resume opens it again,
//! and a last Pause leaves it paused for the caller to check.
//!
//! Run by the gateway's api test `console_browser` (which starts a gateway and a sale);
//! by hand: `node gateway/tests/browser/console.mjs` with
//!   FLASHGATE_CONSOLE_ADDR           the gateway's host:port
//!   FLASHGATE_CONSOLE_MANAGER_TOKEN  a manager's bearer token
//!   FLASHGATE_CONSOLE_SHOPPER_TOKENS shoppers' bearer tokens, comma separated
//!   FLASHGATE_CONSOLE_SALE_ID        an open, active sale with room for the rush
//!   FLASHGATE_CONSOLE_OTHER_SALE_ID  (optional) another open sale: shown too, and left alone
//!                                    by the first one's buttons
//!   FLASHGATE_CONSOLE_SCREENSHOT     (optional) where to save a PNG of the console mid-rush
//!   FLASHGATE_CONSOLE_WAIT_MS        (optional) the timeout of each wait, 15000 by default
//!   FLASHGATE_CHROMIUM               (optional) the browser; else chromium found on PATH
//!   FLASHGATE_BROWSER_DIR            (optional) where playwright-core is installed; else
//!                                    $FLASHGATE_STACK_DIR/browser, else .stack/browser
//! Exits 0 when every check held, 1 with the reason on the first that did not.

import { accessSync, constants } from "node:fs";
import { createRequire } from "node:module";
import { randomUUID } from "node:crypto";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const WAIT_MS = Number(process.env.FLASHGATE_CONSOLE_WAIT_MS || 15000);
// The whole run's bound, should a step hang where no wait covers it.
const RUN_MS = 6 * WAIT_MS;
// Purchases in flight at once during the rush, and the most the rush sends before it gives
// up waiting for the page (it stops as soon as the page has shown it moving).
const RUSH_CONCURRENCY = 8;
const RUSH_MAX = Number(process.env.FLASHGATE_CONSOLE_RUSH_MAX || 20000);

class Failed extends Error {}

function fail(message) {
  throw new Failed(message);
}

function need(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is not set (see the top of ${fileURLToPath(import.meta.url)})`);
  return value;
}

/** The chromium to drive: FLASHGATE_CHROMIUM, else the first chromium on PATH. */
function findChromium() {
  if (process.env.FLASHGATE_CHROMIUM) return process.env.FLASHGATE_CHROMIUM;
  for (const dir of (process.env.PATH || "").split(delimiter)) {
    for (const name of ["chromium", "chromium-browser"]) {
      const path = join(dir, name);
      try {
        accessSync(path, constants.X_OK);
        return path;
      } catch {
        // not here
      }
    }
  }
  fail("no chromium on PATH: run scripts/browser.sh");
}

function loadPlaywright() {
  const dir = process.env.FLASHGATE_BROWSER_DIR ||
    join(process.env.FLASHGATE_STACK_DIR || join(repo, ".stack"), "browser");
  try {
    return createRequire(join(dir, "package.json"))("playwright-core");
  } catch (err) {
    fail(`playwright-core is not installed in ${dir} (${err.code || err.message}): run scripts/browser.sh`);
  }
}

/** Waits for `check` (run in the page with `arg`) to hold; fails saying `what` after WAIT_MS. */
async function waitInPage(page, what, check, arg) {
  try {
    await page.waitForFunction(check, arg, { timeout: WAIT_MS, polling: 50 });
  } catch (err) {
    if (err.name === "TimeoutError") fail(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    throw err;
  }
}

/** The sale's row as the page shows it now (null when the row is not there). */
function readRow(page, saleId) {
  return page.evaluate((id) => {
    const row = document.querySelector(`#sales tr[data-sale="${id}"]`);
    if (!row) return null;
    const num = (field) => Number(row.querySelector(`td[data-field="${field}"]`).textContent);
    const button = row.querySelector("button[data-action]");
    return {
      status: row.querySelector(".status").textContent,
      remaining: num("remaining"),
      admitted: num("admitted"),
      persisted: num("persisted"),
      button: button && { action: button.dataset.action, text: button.textContent },
    };
  }, saleId);
}

/**
 * Run in the page: does the sale's row show `want` (`admittedAbove`, `admitted`, `remaining`,
 * each checked when given)? Self-contained, as playwright sends it to the page as text.
 */
function rowShows([id, want]) {
  const row = document.querySelector(`#sales tr[data-sale="${id}"]`);
  if (!row) return false;
  const num = (field) => Number(row.querySelector(`td[data-field="${field}"]`).textContent);
  if (want.admittedAbove !== undefined && !(num("admitted") > want.admittedAbove)) return false;
  if (want.admitted !== undefined && num("admitted") !== want.admitted) return false;
  if (want.remaining !== undefined && num("remaining") !== want.remaining) return false;
  return true;
}

/** One purchase of one unit as `token`: the status and the error code, if any. */
async function purchase(base, saleId, token) {
  const res = await fetch(`${base}/v1/sales/${saleId}/purchases`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      "idempotency-key": randomUUID(),
    },
    body: JSON.stringify({ quantity: 1 }),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  const body = await res.json().catch(() => ({}));
  return { status: res.status, code: body.error && body.error.code };
}

/**
 * The rush: RUSH_CONCURRENCY shoppers' purchases in flight at once, round the shoppers' tokens,
 * until `stop()` (or RUSH_MAX). `done` resolves to the count of 202s; any other answer fails it.
 */
function startRush(base, saleId, tokens) {
  let stopped = false;
  let sent = 0;
  let accepted = 0;
  const worker = async () => {
    while (!stopped && sent < RUSH_MAX) {
      const token = tokens[sent++ % tokens.length];
      const answer = await purchase(base, saleId, token);
      if (answer.status !== 202) {
        stopped = true;
        fail(`a purchase in the rush answered ${answer.status} ${answer.code || ""} (wanted 202)`);
      }
      accepted += 1;
    }
  };
  const done = Promise.all(Array.from({ length: RUSH_CONCURRENCY }, worker)).then(() => accepted);
  return {
    done,
    stop: () => { stopped = true; },
    running: () => !stopped && sent < RUSH_MAX,
    accepted: () => accepted,
  };
}

/** Clicks the sale's button that sets `next`, then waits until the page shows the sale so. */
async function setStatusFromPage(page, saleId, next) {
  const row = `#sales tr[data-sale="${saleId}"]`;
  const label = next === "paused" ? "Pause" : "Resume";
  const button = page.locator(`${row} button[data-action="${next}"]`);
  // The table is redrawn with every snapshot; the locator finds the current button each time.
  await button.click({ timeout: WAIT_MS }).catch((err) => {
    fail(`could not click the sale's ${label} button: ${err.message.split("\n")[0]}`);
  });
  await waitInPage(page, `the page to say "Sale ${saleId} is ${next}."`,
    ([want]) => document.getElementById("message").textContent === want,
    [`Sale ${saleId} is ${next}.`]);
  const other = next === "paused" ? "active" : "paused";
  await waitInPage(page, `the sale's row to show ${next} with a ${next === "paused" ? "Resume" : "Pause"} button`,
    ([selector, status, action]) => {
      const tr = document.querySelector(selector);
      const badge = tr && tr.querySelector(".status");
      const b = tr && tr.querySelector("button[data-action]");
      return badge && badge.textContent === status && b && b.dataset.action === action;
    }, [row, next, other]);
}

async function main() {
  const addr = need("FLASHGATE_CONSOLE_ADDR");
  const managerToken = need("FLASHGATE_CONSOLE_MANAGER_TOKEN");
  const shopperTokens = need("FLASHGATE_CONSOLE_SHOPPER_TOKENS").split(",").map((t) => t.trim()).filter(Boolean);
  const saleId = Number(need("FLASHGATE_CONSOLE_SALE_ID"));
  const otherSaleId = process.env.FLASHGATE_CONSOLE_OTHER_SALE_ID
    ? Number(process.env.FLASHGATE_CONSOLE_OTHER_SALE_ID) : null;
  const screenshot = process.env.FLASHGATE_CONSOLE_SCREENSHOT;
  const base = addr.startsWith("http") ? addr : `http://${addr}`;
  const { chromium } = loadPlaywright();
  const executablePath = findChromium();

  const browser = await chromium.launch({ executablePath, headless: true, timeout: WAIT_MS });
  const pageErrors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.setDefaultTimeout(WAIT_MS);
    page.on("pageerror", (err) => pageErrors.push(err.message));
    let navigations = 0;
    page.on("framenavigated", (frame) => { if (frame === page.mainFrame()) navigations += 1; });

    // The page loads, signed out.
    const response = await page.goto(`${base}/console`, { timeout: WAIT_MS });
    if (!response || response.status() !== 200) fail(`GET /console answered ${response && response.status()}`);
    if (!(await page.title()).includes("live sale console")) fail(`unexpected title: ${await page.title()}`);
    if (!(await page.isVisible("form#signin-form"))) fail("the sign-in form is not shown");
    if (await page.isVisible("table#sales")) fail("the sales table is shown before signing in");
    console.log("console: the page loads and asks for a token");

    // Signing in with the pasted token shows the sale, live.
    await page.fill("textarea#token", managerToken);
    await page.click("form#signin-form button[type=submit]");
    await waitInPage(page, `the sale ${saleId} in the table`,
      ([id]) => !!document.querySelector(`#sales tr[data-sale="${id}"]`), [saleId]);
    if (otherSaleId !== null) {
      await waitInPage(page, `the other sale ${otherSaleId} in the table`,
        ([id]) => !!document.querySelector(`#sales tr[data-sale="${id}"]`), [otherSaleId]);
    }
    await waitInPage(page, "the stream to say live",
      () => document.getElementById("state").textContent === "live");
    if (page.url().includes(managerToken)) fail("the token is in the page's address");
    const before = await readRow(page, saleId);
    if (before.status !== "active") fail(`the sale shows ${before.status}, wanted active`);
    if (!Number.isInteger(before.remaining) || !Number.isInteger(before.admitted)) {
      fail(`the sale's numbers are not numbers: ${JSON.stringify(before)}`);
    }
    if (!before.button || before.button.action !== "paused" || before.button.text !== "Pause") {
      fail(`the sale has no Pause button: ${JSON.stringify(before.button)}`);
    }
    console.log(`console: signed in; sale ${saleId} shows remaining ${before.remaining}, admitted ${before.admitted}`);
    const navigationsBefore = navigations;

    // The rush, while the page stays open: the numbers move during it, on two snapshots at
    // least (more for a screenshot, so that the sparkline has a few points to draw).
    const moves = screenshot ? 6 : 2;
    const rush = startRush(base, saleId, shopperTokens);
    // Rejects as soon as a purchase of the rush fails, so no wait sits out its timeout then.
    const rushFailed = rush.done.then(() => new Promise(() => {}));
    rushFailed.catch(() => {}); // raced below; must not count as unhandled before then
    const seen = [];
    let during = before;
    try {
      while (seen.length < moves) {
        await Promise.race([rushFailed, waitInPage(page,
          `the page to show the rush moving (snapshot ${seen.length + 1} of ${moves} with more admitted than ${during.admitted})`,
          rowShows, [saleId, { admittedAbove: during.admitted }])]);
        during = await readRow(page, saleId);
        seen.push(during.admitted);
      }
      if (!rush.running()) fail("the rush ended before the page showed it moving (raise FLASHGATE_CONSOLE_RUSH_MAX)");
      if (screenshot) {
        await page.screenshot({ path: screenshot });
        console.log(`console: screenshot mid-rush saved to ${screenshot}`);
      }
      console.log(`console: mid-rush the page shows admitted ${seen.join(", then ")}` +
        ` (${rush.accepted()} purchases answered so far)`);
    } finally {
      rush.stop();
    }
    const accepted = await rush.done;

    // After the rush the page settles on exactly what the shoppers were told.
    const want = { remaining: before.remaining - accepted, admitted: before.admitted + accepted };
    await waitInPage(page, `the page to show remaining ${want.remaining} and admitted ${want.admitted} after ${accepted} purchases`,
      rowShows, [saleId, want]);
    if (navigations !== navigationsBefore) fail("the page reloaded during the rush");
    // Mid-rush, remaining + admitted may be off by the purchases admitted between the
    // snapshot's two Redis reads; settled, the check above holds them to the shoppers' count.
    if (!(during.remaining < before.remaining)) fail(`mid-rush remaining did not fall: ${JSON.stringify(during)}`);
    console.log(`console: after ${accepted} purchases the page shows remaining ${want.remaining}, admitted ${want.admitted}, without a reload`);

    // Pause from the page: purchases answer 409 sale_not_active.
    const expectRefused = async (when) => {
      const answer = await purchase(base, saleId, shopperTokens[0]);
      if (answer.status !== 409 || answer.code !== "sale_not_active") {
        fail(`${when}, a purchase answered ${answer.status} ${answer.code || ""} (wanted 409 sale_not_active)`);
      }
    };
    await setStatusFromPage(page, saleId, "paused");
    await expectRefused("after Pause on the page");
    if (otherSaleId !== null) {
      const other = await readRow(page, otherSaleId);
      if (!other || other.status !== "active") fail(`Pause on sale ${saleId} changed sale ${otherSaleId}: ${JSON.stringify(other)}`);
    }
    console.log("console: Pause on the page: the sale shows paused, a purchase answers 409 sale_not_active");

    // Resume opens it again; a last Pause leaves it paused for the caller to check.
    await setStatusFromPage(page, saleId, "active");
    const again = await purchase(base, saleId, shopperTokens[0]);
    if (again.status !== 202) fail(`after Resume on the page, a purchase answered ${again.status} ${again.code || ""} (wanted 202)`);
    await waitInPage(page, "the page to count the purchase after Resume",
      rowShows, [saleId, { admitted: want.admitted + 1 }]);
    console.log("console: Resume on the page: purchases are admitted again, and the page counts them");
    await setStatusFromPage(page, saleId, "paused");
    await expectRefused("after the second Pause on the page");
    if (pageErrors.length) fail(`the page threw: ${pageErrors.join("; ")}`);
    console.log("console: paused again from the page; every check held");
  } catch (err) {
    if (pageErrors.length) console.error(`console: the page threw: ${pageErrors.join("; ")}`);
    throw err;
  } finally {
    await browser.close();
  }
}

const watchdog = setTimeout(() => {
  console.error(`console: FAILED: the run took longer than ${RUN_MS} ms`);
  process.exit(1);
}, RUN_MS);
watchdog.unref();

try {
  await main();
} catch (err) {
  console.error(`console: FAILED: ${err instanceof Failed ? err.message : err.stack || err}`);
  process.exit(1);
}
