// The web page against a real node, in Debian's chromium: without its login the page says how
// to log in and gets no data; the login link (`drover web`) logs it in and leaves the address
// bar; then a submitted job's row turns from running to succeeded without a reload, the cancel
// button cancels a running job, the state filter narrows the table, the retry button runs a
// failed job again, a job that takes memory in steps gets a rising memory plot with points (and
// a sparkline in its row), and at 1,400 × 900 every column fits.
// Usage: node test.mjs LOGIN_LINK SCREENSHOT.png   (LOGIN_LINK = http://127.0.0.1:PORT/?token=…)
import { chromium } from "playwright-core";

const [link, screenshot] = process.argv.slice(2);
if (!link || !screenshot) {
  console.error("usage: node test.mjs LOGIN_LINK SCREENSHOT");
  process.exit(2);
}
const login = new URL(link);
const url = login.origin;
const token = login.searchParams.get("token");

async function submitSpec(spec) {
  const r = await fetch(`${url}/v1/jobs`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(spec),
  });
  if (r.status !== 201) throw new Error(`submit: ${r.status} ${await r.text()}`);
  return (await r.json()).id;
}
const submit = (argv) => submitSpec({ argv, cwd: "/" });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("pageerror", (e) => { console.error("page error:", e.message); failed = true; });
  page.on("console", (m) => { if (m.type() === "error") console.error("console:", m.text()); });

  // Not logged in: the page explains how to log in, and shows no jobs.
  const first = await page.goto(url);
  const csp = first.headers()["content-security-policy"] || "";
  if (!csp.includes("script-src 'self'") || first.headers()["x-frame-options"] !== "DENY") {
    throw new Error(`the page lacks its CSP or frame protection: ${JSON.stringify(first.headers())}`);
  }
  await page.waitForSelector("#login:visible", { timeout: 10000 });
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-login.png") });
  console.log("without its login the page asks for one");

  // The login link sets the cookie and leaves the token out of the address bar.
  await page.goto(link);
  if (page.url() !== `${url}/`) throw new Error(`the token stayed in the address: ${page.url()}`);
  const cookies = await page.context().cookies();
  const cookie = cookies.find((c) => c.name.startsWith("drover_token_"));
  if (!cookie || !cookie.httpOnly || cookie.sameSite !== "Strict") {
    throw new Error(`login cookie not HttpOnly+Strict: ${JSON.stringify(cookies)}`);
  }
  await page.waitForSelector("#live:has-text('live')", { timeout: 10000 });
  console.log("the login link logged the page in (HttpOnly, SameSite=Strict cookie)");

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

  // The state filter: only failed jobs are left in the table.
  const bad = await submit(["sh", "-c", "echo going wrong >&2; exit 3"]);
  await page.waitForSelector(`tr[data-id="${bad}"][data-state="failed"]`, { timeout: 15000 });
  await page.click(`#counts button[data-state="failed"]`);
  await page.waitForSelector(`tr[data-id="${ok}"]`, { state: "detached", timeout: 10000 });
  const states = await page.$$eval("#jobs tr", (rows) => rows.map((r) => r.dataset.state));
  if (!states.length || states.some((s) => s !== "failed")) throw new Error(`filter failed: ${states}`);
  console.log("the state filter shows failed jobs only");

  // Its detail shows both streams; retry runs it again from the page.
  await page.click(`tr[data-id="${bad}"]`);
  await page.waitForSelector("#errlog:has-text('going wrong')", { timeout: 10000 });
  // It wrote nothing to stdout: the empty box says so rather than showing a blank bar.
  const empty = await page.$eval("#log", (pre) => pre.textContent === "" ? getComputedStyle(pre, "::before").content : `text: ${pre.textContent}`);
  if (empty !== '"(nothing written)"') throw new Error(`the empty stdout box shows ${empty}`);
  console.log("an empty stream says it is empty");
  await page.click(`button[data-retry="${bad}"]`);
  await page.waitForSelector(`tr[data-id="${bad}"] td:has-text("failed #2")`, { timeout: 20000 });
  const retried = await (await fetch(`${url}/v1/jobs/${bad}`, { headers: { authorization: `Bearer ${token}` } })).json();
  if (retried.attempt !== 2) throw new Error(`retry did not run it again: ${JSON.stringify(retried)}`);
  console.log("the retry button ran the failed job again");

  // Resource graphs: a job that takes memory in steps shows a rising memory plot, with points
  // and its limit, and a sparkline in its row (the node samples every 500 ms here).
  const grow = await submitSpec({
    argv: ["python3", "-c", "import time\nkeep = []\nfor i in range(8):\n    keep.append(b'x' * (24 << 20))\n    t = time.time()\n    while time.time() - t < 0.6: pass\n"],
    cwd: "/", memory: "400M", cpus: 1,
  });
  await page.click(`#counts button[data-state=""]`);
  await page.waitForSelector(`tr[data-id="${grow}"][data-state="running"]`, { timeout: 15000 });
  await page.click(`tr[data-id="${grow}"]`);
  await page.waitForFunction(() => document.querySelectorAll("#usage svg.usage-plot circle.point").length >= 6,
    null, { timeout: 20000 });
  console.log("the selected running job's graphs fill in while it runs");
  await page.waitForSelector(`tr[data-id="${grow}"][data-state="succeeded"]`, { timeout: 30000 });
  const plotted = await page.$$eval("#usage figure.usage", (figs) => figs.map((f) => ({
    caption: f.querySelector("figcaption").textContent,
    points: [...f.querySelectorAll("circle.point")].map((c) => Number(c.getAttribute("cy"))),
    limit: !!f.querySelector("line.limit"),
  })));
  const memory = plotted[0];
  if (!memory || !memory.caption.startsWith("memory") || memory.points.length < 6 || !memory.limit) {
    throw new Error(`no memory plot with points and a limit: ${JSON.stringify(plotted)}`);
  }
  // SVG's y grows downwards: a rising series has a last point above its first.
  if (!(memory.points[memory.points.length - 1] < memory.points[0] - 10)) {
    throw new Error(`the memory plot does not rise: ${JSON.stringify(memory.points)}`);
  }
  if (!plotted[1] || !plotted[1].caption.startsWith("CPU") || !plotted[1].points.length) {
    throw new Error(`no CPU plot: ${JSON.stringify(plotted)}`);
  }
  await page.waitForSelector(`tr[data-id="${grow}"] td.memory svg.spark polyline`, { timeout: 10000 });
  console.log(`memory plot: ${memory.points.length} points rising, limit drawn; CPU plot: ${plotted[1].points.length} points; sparkline in the row`);
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-usage.png") });

  // Every column fits at 1,400 px: the table is no wider than its box.
  await page.click(`#counts button[data-state=""]`);
  await page.waitForSelector(`tr[data-id="${ok}"]`, { timeout: 10000 });
  const fit = await page.$eval("#list", (box) => ({ box: box.clientWidth, table: box.querySelector("table").scrollWidth }));
  if (fit.table > fit.box) throw new Error(`the job table is cut off: ${JSON.stringify(fit)}`);
  console.log(`every column fits (${fit.table} of ${fit.box} px)`);

  // Nothing waits or runs now, and no queue has settings: the queues box says so.
  await page.waitForSelector("#queues td.none", { timeout: 10000 });
  console.log("an empty queues table says why it is empty");

  await page.screenshot({ path: screenshot });
  console.log(`screenshot: ${screenshot}`);
} catch (e) {
  console.error(e);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
