// Latchkey's own pages under /ui/ (ui.enabled), as a person without any
// other UI meets them: sign up in two steps, verify the address with the
// mailed code, sign out, sign in after a wrong password, recover the account
// (after a wrong code) and set a new password in settings, which then signs
// in. Then what goes wrong: a flow that expired, and a form posted after its
// anti-CSRF cookie was lost, which lands on the error page.
import assert from "node:assert/strict"
import path from "node:path"
import { after, before, test } from "node:test"
import { launchBrowser, openJourney, screenshotRoot } from "../lib/browser.mjs"
import { startLatchkey } from "../lib/latchkey.mjs"
import { startSmtp } from "../lib/smtp.mjs"

const pagesOn = { UI_ENABLED: "true", SELFSERVICE_FLOWS_REGISTRATION_STYLE: "profile_first" }
let smtp, latchkey, shortLived, browser, journey

before(async () => {
  smtp = await startSmtp()
  latchkey = await startLatchkey({ name: "pages-latchkey", smtpPort: smtp.port, env: pagesOn })
  // Sign-in flows that expire while the person looks at them.
  shortLived = await startLatchkey({
    name: "pages-short-latchkey",
    smtpPort: smtp.port,
    env: { ...pagesOn, SELFSERVICE_FLOWS_LOGIN_LIFESPAN: "1s" },
  })
  browser = await launchBrowser()
  journey = await openJourney(browser, "pages")
})

after(async () => {
  await journey?.close()
  await browser?.close()
  await latchkey?.stop()
  await shortLived?.stop()
  await smtp?.close()
})

const email = `grace-${Date.now()}@example.com`
const firstPassword = "correct horse battery staple 1"
const secondPassword = "a quite different passphrase 2"

/** Waits for the page `name` (its `data-testid=page-<name>`) and saves it. */
async function arrive(name, label, server = latchkey) {
  const { page } = journey
  await page.waitForURL((url) => url.origin === server.publicUrl && url.pathname.startsWith("/ui/"))
  await page.getByTestId(`page-${name}`).waitFor({ timeout: 15000 })
  await journey.shot(label)
}

async function messageShown(id) {
  await journey.page.locator(`[data-message-id="${id}"]`).first().waitFor({ timeout: 15000 })
}

async function mailedCode(subject) {
  const mail = await smtp.waitFor(email, { match: subject })
  smtp.messages.splice(smtp.messages.indexOf(mail), 1)
  const code = /\b(\d{6})\b/.exec(mail.text)?.[1]
  assert.ok(code, `no code in: ${mail.text}`)
  return code
}

async function signIn(password, label) {
  const { page } = journey
  await page.goto(`${latchkey.publicUrl}/ui/login`)
  await arrive("login", `${label}-login`)
  await page.fill('input[name="identifier"]', email)
  await page.fill('input[name="password"]', password)
  await page.click("#submit-password")
}

async function signOut(label) {
  const { page } = journey
  await page.goto(`${latchkey.publicUrl}/ui/welcome`)
  await arrive("welcome", `${label}-welcome`)
  await page.getByTestId("logout-link").click()
  await arrive("login", `${label}-signed-out`)
}

test("a person signs up in two steps and verifies the address with the mailed code", () =>
  journey.guard(async () => {
    const { page } = journey
    await page.goto(`${latchkey.publicUrl}/ui/registration`)
    await arrive("registration", "registration")
    // The label is the schema's title, as in Kratos.
    assert.match(await page.locator('label[for="input-traits-email"]').innerText(), /E-Mail/)
    await page.fill('input[name="traits.email"]', email)
    await page.fill('input[name="traits.name.first"]', "Grace")
    await page.click("#submit-profile")
    await page.locator('input[name="password"]').waitFor()
    await journey.shot("registration-password")
    await page.fill('input[name="password"]', firstPassword)
    await page.click("#submit-password")

    await arrive("verification", "verification-code-sent")
    await messageShown(1080003)
    await page.fill('input[name="code"]', await mailedCode(/verif/i))
    await page.click("#submit-code")
    await messageShown(1080002)
    await journey.shot("verification-done")
  }))

test("the person signs out, and signs in again after a wrong password", () =>
  journey.guard(async () => {
    const { page } = journey
    await signOut("first")
    await signIn("not the password at all", "wrong-password")
    await arrive("login", "wrong-password-refused")
    await messageShown(4000006)
    await page.fill('input[name="password"]', firstPassword)
    await page.fill('input[name="identifier"]', email)
    await page.click("#submit-password")
    await arrive("welcome", "signed-in")
    await page.getByTestId("welcome-signed-in").waitFor()
    assert.match(await page.locator("main").innerText(), new RegExp(email))
  }))

test("the person recovers the account with the mailed code and sets a new password", () =>
  journey.guard(async () => {
    const { page } = journey
    await signOut("before-recovery")
    await page.goto(`${latchkey.publicUrl}/ui/recovery`)
    await arrive("recovery", "recovery")
    await page.fill('input[name="email"]', email)
    await page.click("#submit-code")
    await messageShown(1060003)
    await journey.shot("recovery-code-sent")
    const code = await mailedCode(/recover/i)

    await page.fill('input[name="code"]', code === "000000" ? "111111" : "000000")
    await page.click("#submit-code")
    await messageShown(4060006)
    await journey.shot("recovery-wrong-code")

    await page.fill('input[name="code"]', code)
    await page.click("#submit-code")
    await arrive("settings", "recovered-settings")
    await page.fill('input[name="password"]', secondPassword)
    await page.click("#submit-password")
    await messageShown(1050001)
    await journey.shot("new-password-saved")

    await signOut("after-recovery")
    await signIn(secondPassword, "new-password")
    await arrive("welcome", "new-password-signed-in")
    await page.getByTestId("welcome-signed-in").waitFor()
  }))

test("a sign-in form submitted after its flow expired comes back as a new flow saying so", () =>
  journey.guard(async () => {
    const { page } = journey
    await page.goto(`${shortLived.publicUrl}/ui/login`)
    await arrive("login", "short-lived-login", shortLived)
    // A real wait: this server runs on the wall clock, and its flows live 1 s.
    await page.waitForTimeout(1500)
    await page.fill('input[name="identifier"]', email)
    await page.fill('input[name="password"]', firstPassword)
    await page.click("#submit-password")
    await arrive("login", "expired-flow-replaced", shortLived)
    await messageShown(4010001)
  }))

test("a form posted without its anti-CSRF cookie lands on the error page", () =>
  journey.guard(async () => {
    const { page, context } = journey
    await signOut("before-csrf")
    const cookies = await context.cookies()
    await context.clearCookies()
    await context.addCookies(cookies.filter((c) => !c.name.startsWith("csrf_token")))
    await page.fill('input[name="identifier"]', email)
    await page.fill('input[name="password"]', secondPassword)
    await page.click("#submit-password")
    await arrive("error", "csrf-error-page")
    const shown = await page.locator("main").innerText()
    assert.match(shown, /security_csrf_violation|CSRF/i)
  }))

test("on a phone, in German, every page fits the screen and names its fields", () =>
  journey.guard(async () => {
    const phone = await browser.newContext({
      viewport: { width: 375, height: 740 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
      locale: "de-DE",
      extraHTTPHeaders: { "Accept-Language": "de-DE,de;q=0.9" },
    })
    try {
      const page = await phone.newPage()
      for (const name of ["login", "registration", "recovery", "verification"]) {
        await page.goto(`${latchkey.publicUrl}/ui/${name}`)
        await page.getByTestId(`page-${name}`).waitFor({ timeout: 15000 })
        assert.equal(await page.getAttribute("html", "lang"), "de")
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
        assert.ok(overflow <= 0, `${name} is ${overflow}px wider than the phone`)
        // Every visible input has a label that names it.
        const unlabelled = await page.$$eval("input:not([type=hidden])", (inputs) =>
          inputs.filter((i) => !(i.labels && i.labels.length && i.labels[0].innerText.trim())).map((i) => i.name),
        )
        assert.deepEqual(unlabelled, [], `${name}: inputs without a label`)
        await page.screenshot({
          path: path.join(screenshotRoot, "pages", `phone-de-${name}.png`),
          fullPage: true,
          animations: "disabled",
        })
      }
    } finally {
      await phone.close()
    }
  }))
