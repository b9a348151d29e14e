// Latchkey for one suite: tests/browser/latchkey.yml with free loopback
// ports, a SQLite file in a fresh temp directory and the suite's UI filled in,
// served by the debug binary with --dev (cookies without `Secure` on http).
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { freePort, repo, start, waitForHttp } from "./processes.mjs"

/**
 * @param {object} options
 * @param {string} options.name        log file name
 * @param {number} options.smtpPort    where the courier delivers
 * @param {(publicUrl: string) => string} [options.uiUrl]  base of every flow's ui_url
 *        (default: Latchkey's own `/ui` on its public port)
 * @param {Record<string,string>} [options.env]  extra config overrides (SERVE_PUBLIC_..., ...)
 */
export async function startLatchkey({ name, smtpPort, uiUrl = (url) => `${url}/ui`, env = {} }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "latchkey-browser-"))
  const publicPort = await freePort()
  const adminPort = await freePort()
  const publicUrl = `http://127.0.0.1:${publicPort}`
  const adminUrl = `http://127.0.0.1:${adminPort}`
  const ui = uiUrl(publicUrl).replace(/\/$/, "")
  const values = {
    dsn: `sqlite://${path.join(dir, "latchkey.db")}?_fk=true`,
    public_port: publicPort,
    public_url: publicUrl,
    admin_port: adminPort,
    admin_url: adminUrl,
    smtp_port: smtpPort,
    ui_url: ui,
    ui_origin: new URL(ui).origin,
    repo,
  }
  const template = fs.readFileSync(path.join(repo, "tests/browser/latchkey.yml"), "utf8")
  const config = template.replace(/\{\{(\w+)\}\}/g, (_, key) => {
    if (!(key in values)) throw new Error(`latchkey.yml: unknown placeholder ${key}`)
    return String(values[key])
  })
  const configPath = path.join(dir, "latchkey.yml")
  fs.writeFileSync(configPath, config)
  const bin = process.env.LATCHKEY_BIN || path.join(repo, "target/debug/latchkey")
  const server = start(name, bin, ["serve", "-c", configPath, "--dev"], {
    cwd: dir,
    env: { ...process.env, ...env },
  })
  try {
    await waitForHttp(`${adminUrl}/health/ready`, 30000, server.exited)
  } catch (e) {
    throw new Error(`${e.message}; latchkey's log:\n${server.tail()}`)
  }
  return {
    publicUrl,
    adminUrl,
    uiUrl: ui,
    log: server.logPath,
    async stop() {
      await server.stop()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}
