// Opens the device benchmark page (www/bench.html) in headless Chromium and prints its result
// as one JSON line. Run by `cargo xtask bench device`, which serves the page and sets
// LADDER_BENCH_URL and CHROMIUM.
import { chromium } from "playwright-core";

const url = process.env.LADDER_BENCH_URL;
if (!url) throw new Error("LADDER_BENCH_URL is not set: run `cargo xtask bench device`");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--enable-unsafe-webgpu",
  ],
});
try {
  const page = await browser.newPage();
  page.on("console", (m) => process.stderr.write(`  [page] ${m.text()}\n`));
  page.on("pageerror", (e) => process.stderr.write(`  [page error] ${e.message}\n`));
  await page.goto(url);
  await page.waitForSelector("#result[data-state]", { state: "attached", timeout: 30 * 60_000 });
  process.stderr.write(await page.locator("#log").innerText());
  console.log(await page.locator("#result").textContent());
} finally {
  await browser.close();
}
