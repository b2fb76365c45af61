// The web page against a real node, in Debian's chromium: a submitted job's row turns from
// running to succeeded without a reload, and the cancel button cancels a running job.
// Usage: node test.mjs http://127.0.0.1:PORT SCREENSHOT.png
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node test.mjs URL SCREENSHOT");
  process.exit(2);
}

async function submit(argv) {
  const r = await fetch(`${url}/v1/jobs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ argv, cwd: "/" }),
  });
  if (r.status !== 201) throw new Error(`submit: ${r.status} ${await r.text()}`);
  return (await r.json()).id;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
  page.on("pageerror", (e) => { console.error("page error:", e.message); failed = true; });
  await page.goto(url);
  await page.waitForSelector("#live:has-text('live')", { timeout: 10000 });

  // A job submitted through the API appears, runs, and succeeds — pushed, no reload.
  const ok = await submit(["sh", "-c", "echo hello from drover; sleep 1.5"]);
  await page.waitForSelector(`tr[data-id="${ok}"][data-state="running"]`, { timeout: 15000 });
  console.log("row is running");
  await page.waitForSelector(`tr[data-id="${ok}"][data-state="succeeded"]`, { timeout: 15000 });
  console.log("row turned succeeded without a reload");

  // Its output shows in the detail pane.
  await page.click(`tr[data-id="${ok}"]`);
  await page.waitForSelector("#log:has-text('hello from drover')", { timeout: 10000 });

  // The cancel button stops a running job.
  const long = await submit(["sleep", "600"]);
  await page.waitForSelector(`tr[data-id="${long}"][data-state="running"]`, { timeout: 15000 });
  await page.click(`button[data-cancel="${long}"]`);
  await page.waitForSelector(`tr[data-id="${long}"][data-state="cancelled"]`, { timeout: 30000 });
  console.log("cancel button cancelled the running job");

  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);
} catch (e) {
  console.error(e);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
