// Ory Elements (contrib/elements) on its own origin, against Latchkey with
// CORS and the stock SDK: a person signs up in two steps, verifies the
// address, changes the profile, signs out and in (after a wrong password), and
// recovers the account with the mailed code (after a wrong one), setting a new
// password that then signs in.
import assert from "node:assert/strict"
import path from "node:path"
import { after, before, describe, test } from "node:test"
import { launchBrowser, openJourney } from "../lib/browser.mjs"
import { startLatchkey } from "../lib/latchkey.mjs"
import { npmBuild } from "../lib/npm.mjs"
import { repo } from "../lib/processes.mjs"
import { startSmtp } from "../lib/smtp.mjs"
import { serveApp } from "../lib/static.mjs"

const appDir = path.join(repo, "contrib/elements")
let smtp, app, latchkey, browser, journey

before(async () => {
  npmBuild(appDir, "elements")
  smtp = await startSmtp()
  app = await serveApp(path.join(appDir, "dist"))
  latchkey = await startLatchkey({
    name: "elements-latchkey",
    smtpPort: smtp.port,
    uiUrl: () => app.origin,
    // Kratos's default, so what an Elements app meets there: traits first, then the password.
    env: { SELFSERVICE_FLOWS_REGISTRATION_STYLE: "profile_first" },
  })
  app.overrides["/config.js"] = `window.LATCHKEY_URL = ${JSON.stringify(latchkey.publicUrl)}`
  browser = await launchBrowser()
  journey = await openJourney(browser, "elements")
})

after(async () => {
  await journey?.close()
  await browser?.close()
  await latchkey?.stop()
  await app?.close()
  await smtp?.close()
})

const email = `ada-${Date.now()}@example.com`
const firstPassword = "correct horse battery staple 1"
const secondPassword = "a quite different passphrase 2"

/** Waits for the app to show `pathname` with its content rendered, and saves it. */
async function arrive(pathname, label) {
  const { page } = journey
  await page.waitForURL((url) => url.origin === app.origin && url.pathname === pathname, { timeout: 15000 })
  await page.locator("form, main, [data-testid='ory/screen/error']").first().waitFor({ timeout: 15000 })
  await page.waitForLoadState("networkidle")
  await journey.shot(label)
}

/** Clicks a submit button and waits for Latchkey's answer to the form. */
async function submit(button) {
  const { page } = journey
  const answered = page.waitForResponse(
    (r) => r.url().startsWith(`${latchkey.publicUrl}/self-service/`) && r.request().method() === "POST",
  )
  await page.locator(button).click()
  return answered
}

async function mailedCode(subject) {
  const mail = await smtp.waitFor(email, { match: subject })
  smtp.messages.splice(smtp.messages.indexOf(mail), 1)
  const code = /\b(\d{6})\b/.exec(mail.text)?.[1]
  assert.ok(code, `no code in: ${mail.text}`)
  return code
}

async function signOut() {
  const { page } = journey
  await page.goto(`${app.origin}/welcome`)
  await page.getByRole("link", { name: "Sign out" }).click()
  await arrive("/login", "signed-out-login")
}

async function signIn(password, label) {
  const { page } = journey
  await page.goto(`${app.origin}/login`)
  await arrive("/login", `${label}-login`)
  await page.fill('input[name="identifier"]', email)
  await page.fill('input[name="password"]', password)
  await submit('button[type="submit"][value="password"]')
  await arrive("/welcome", `${label}-welcome`)
  assert.match(await page.getByTestId("signed-in-as").innerText(), new RegExp(email))
}

test("a person signs up and verifies the address with the mailed code", () =>
  journey.guard(async () => {
    const { page } = journey
    await page.goto(`${app.origin}/registration`)
    await arrive("/registration", "registration")
    await page.fill('input[name="traits.email"]', email)
    await page.fill('input[name="traits.name.first"]', "Ada")
    await submit('button[type="submit"][value="profile"]')
    await page.locator('input[name="password"]').waitFor()
    await journey.shot("registration-password")
    await page.fill('input[name="password"]', firstPassword)
    const answer = await submit('button[type="submit"][value="password"]')
    assert.equal(answer.status(), 200)

    await arrive("/verification", "verification-code-sent")
    await page.fill('input[name="code"]', await mailedCode(/verif/i))
    await submit('button[type="submit"][value="code"]')
    await page.getByText("You successfully verified your email address.").waitFor()
    await journey.shot("verification-done")
  }))

test("the person changes the profile in settings", () =>
  journey.guard(async () => {
    const { page } = journey
    await page.goto(`${app.origin}/settings`)
    await arrive("/settings", "settings")
    await page.fill('input[name="traits.name.last"]', "Lovelace")
    const saved = await submit('button[type="submit"][value="profile"]')
    assert.equal(saved.status(), 200)
    await page.getByText("Your changes have been saved").waitFor()
    await journey.shot("settings-profile-saved")
    const session = await page.evaluate(
      (url) => fetch(`${url}/sessions/whoami`, { credentials: "include" }).then((r) => r.json()),
      latchkey.publicUrl,
    )
    assert.deepEqual(session.identity.traits.name, { first: "Ada", last: "Lovelace" })
  }))

test("the person signs out, mistypes the password, and signs in", () =>
  journey.guard(async () => {
    const { page } = journey
    await signOut()
    await page.fill('input[name="identifier"]', email)
    await page.fill('input[name="password"]', "not the password at all")
    const answer = await submit('button[type="submit"][value="password"]')
    assert.equal(answer.status(), 400)
    await page.getByText(/credentials are invalid/i).waitFor()
    await journey.shot("login-wrong-password")
    await signIn(firstPassword, "first")
  }))

test("the person recovers the account with the mailed code and sets a new password", () =>
  journey.guard(async () => {
    const { page } = journey
    await signOut()
    await page.goto(`${app.origin}/recovery`)
    await arrive("/recovery", "recovery")
    await page.fill('input[name="email"]', email)
    await submit('button[type="submit"][value="code"]')
    await page.locator('input[name="code"]').waitFor()
    await journey.shot("recovery-code-sent")
    const code = await mailedCode(/recover/i)

    const wrong = code === "000000" ? "111111" : "000000"
    await page.fill('input[name="code"]', wrong)
    await submit('button[type="submit"][value="code"]')
    await page.getByText(/code is invalid or has already been used/i).waitFor()
    await journey.shot("recovery-wrong-code")

    await page.fill('input[name="code"]', code)
    await submit('button[type="submit"][value="code"]')
    await arrive("/settings", "settings-after-recovery")
    await page.getByText(/successfully recovered your account/i).waitFor()
    await page.fill('input[name="password"]', secondPassword)
    const saved = await submit('button[type="submit"][value="password"]')
    assert.equal(saved.status(), 200)
    await page.getByText("Your changes have been saved").waitFor()
    await journey.shot("settings-password-saved")

    await signOut()
    await signIn(secondPassword, "second")
  }))

test("the error page shows an error Latchkey stored", () =>
    journey.guard(async () => {
      const { page } = journey
      const stored = await fetch(`${latchkey.publicUrl}/self-service/errors?id=stub:500`)
      assert.equal(stored.status, 200)
      const { error } = await stored.json()
      await page.goto(`${app.origin}/error?id=stub:500`)
      await arrive("/error", "error")
      const screen = page.getByTestId("ory/screen/error")
      await screen.getByText(error.message).waitFor()
      // As Kratos, the stub is answered under a fresh id, not `stub:500`.
      await screen.getByText(error.reason).first().waitFor()
    }))

// A second Latchkey whose privileged sessions last 5 s, so changing the
// password in settings asks for a refresh login first; and a lost CSRF cookie.
describe("a stale session and a lost cookie", () => {
  let main
  before(async () => {
    main = { app, latchkey, journey }
    app = await serveApp(path.join(appDir, "dist"))
    latchkey = await startLatchkey({
      name: "elements-refresh-latchkey",
      smtpPort: smtp.port,
      uiUrl: () => app.origin,
      // One-step registration here, so both styles meet Elements.
      env: {
        SELFSERVICE_FLOWS_SETTINGS_PRIVILEGED_SESSION_MAX_AGE: "5s",
        SELFSERVICE_FLOWS_REGISTRATION_STYLE: "unified",
      },
    })
    app.overrides["/config.js"] = `window.LATCHKEY_URL = ${JSON.stringify(latchkey.publicUrl)}`
    journey = await openJourney(browser, "elements-refresh")
  })
  after(async () => {
    await journey?.close()
    await latchkey?.stop()
    await app?.close()
    ;({ app, latchkey, journey } = main)
  })

  test("a password change after the session aged asks for the password again, then saves", () =>
    journey.guard(async () => {
      const { page } = journey
      await page.goto(`${app.origin}/registration`)
      await arrive("/registration", "registration")
      await page.fill('input[name="traits.email"]', email)
      await page.fill('input[name="password"]', firstPassword)
      await submit('button[type="submit"][value="password"]')
      await arrive("/verification", "verification")

      await page.goto(`${app.origin}/settings`)
      await arrive("/settings", "settings")
      await page.waitForTimeout(5500)
      await page.fill('input[name="password"]', secondPassword)
      const refused = await submit('button[type="submit"][value="password"]')
      assert.equal(refused.status(), 403)
      await arrive("/login", "refresh-login")
      // Only the password is asked for: the identifier is known.
      assert.equal(await page.locator('input[name="identifier"]').getAttribute("type"), "hidden")
      await page.fill('input[name="password"]', firstPassword)
      await submit('button[type="submit"][value="password"]')

      await arrive("/settings", "settings-after-refresh")
      await page.fill('input[name="password"]', secondPassword)
      const saved = await submit('button[type="submit"][value="password"]')
      assert.equal(saved.status(), 200)
      await page.getByText("Your changes have been saved").waitFor()
      await journey.shot("settings-password-saved")
    }))

  test("a login whose CSRF cookie was lost starts a new flow, which signs in", () =>
    journey.guard(async () => {
      const { page, context } = journey
      await page.goto(`${app.origin}/welcome`)
      await page.getByRole("link", { name: "Sign out" }).click()
      await arrive("/login", "signed-out-login")
      const firstFlow = new URL(page.url()).searchParams.get("flow")
      await context.clearCookies({ name: /^csrf_token_/ })
      await page.fill('input[name="identifier"]', email)
      await page.fill('input[name="password"]', secondPassword)
      const refused = await submit('button[type="submit"][value="password"]')
      // 403 security_csrf_violation; Elements starts a new flow at once.
      assert.equal(refused.status(), 403)
      await page.waitForURL((url) => url.pathname === "/login" && url.searchParams.get("flow") !== firstFlow)
      await arrive("/login", "login-new-flow")
      await page.fill('input[name="identifier"]', email)
      await page.fill('input[name="password"]', secondPassword)
      await submit('button[type="submit"][value="password"]')
      await arrive("/welcome", "welcome")
    }))
})
