// Headless Debian Chromium through playwright-core (no browser download), and
// the screenshots every suite leaves in target/browser-screenshots/<suite>/.
import fs from "node:fs"
import path from "node:path"
import { chromium } from "playwright-core"
import { outDir, repo } from "./processes.mjs"

export const screenshotRoot = path.resolve(
  process.env.BROWSER_SCREENSHOTS || path.join(repo, "target/browser-screenshots"),
)

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox"],
    headless: true,
  })
}

/**
 * A fresh browser context (its own cookies) for one person's journey.
 * `shot(label)` saves the page as `<suite>/NN-label.png`; the browser's
 * console, page errors and failed requests go to `<outDir>/logs/<suite>-browser.log`.
 */
export async function openJourney(browser, suite) {
  const dir = path.join(screenshotRoot, suite)
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  fs.mkdirSync(path.join(outDir, "logs"), { recursive: true })
  const log = fs.createWriteStream(path.join(outDir, "logs", `${suite}-browser.log`))
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } })
  const page = await context.newPage()
  page.on("console", (m) => log.write(`console.${m.type()}: ${m.text()}\n`))
  page.on("pageerror", (e) => log.write(`pageerror: ${e.stack || e}\n`))
  page.on("requestfailed", (r) => log.write(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}\n`))
  page.on("framenavigated", (f) => f === page.mainFrame() && log.write(`navigated: ${f.url()}\n`))
  // BROWSER_TESTS_TRACE=1 also logs every non-GET request and its answer.
  if (process.env.BROWSER_TESTS_TRACE) {
    page.on("response", async (r) => {
      if (["GET", "OPTIONS"].includes(r.request().method())) return
      const body = await r.text().catch(() => "(no body)")
      log.write(`${r.request().method()} ${r.url()} ${r.request().postData() ?? ""}\n  -> ${r.status()} ${body}\n`)
    })
  }
  let count = 0
  const shots = []
  return {
    context,
    page,
    shots,
    async shot(label) {
      const file = path.join(dir, `${String(++count).padStart(2, "0")}-${label}.png`)
      await page.screenshot({ path: file, fullPage: true, animations: "disabled", caret: "hide", timeout: 15000 })
      shots.push(path.relative(repo, file))
      return file
    },
    /** Runs a test's steps; on failure saves the page as `NN-failed.png` first. */
    async guard(steps) {
      try {
        await steps()
      } catch (e) {
        await this.shot("failed").catch(() => {})
        throw e
      }
    },
    async close() {
      await context.close()
      await new Promise((resolve) => log.end(resolve))
    },
  }
}
