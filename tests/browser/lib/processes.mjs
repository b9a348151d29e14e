// Child processes the suites start, and where they log. Every pid goes into
// $BROWSER_TESTS_PIDS (when set) so scripts/browser-tests.sh's trap can stop
// them even if a suite dies without its `after` hooks.
import { spawn } from "node:child_process"
import fs from "node:fs"
import net from "node:net"
import path from "node:path"
import { fileURLToPath } from "node:url"

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..")
export const outDir = path.resolve(process.env.BROWSER_TESTS_OUT || path.join(repo, "target/browser-tests"))

const children = new Set()
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL")
})

/** Starts `command`, its output to `<outDir>/logs/<name>.log`. */
export function start(name, command, args, options = {}) {
  const logs = path.join(outDir, "logs")
  fs.mkdirSync(logs, { recursive: true })
  const logPath = path.join(logs, `${name}.log`)
  const log = fs.openSync(logPath, "w")
  const child = spawn(command, args, { ...options, stdio: ["ignore", log, log] })
  fs.closeSync(log)
  children.add(child)
  const pids = process.env.BROWSER_TESTS_PIDS
  if (pids) fs.appendFileSync(pids, `${child.pid}\n`)
  const exited = new Promise((resolve) =>
    child.on("exit", (code, signal) => {
      // Gone: its pid may be reused, so the script's trap must not kill it.
      if (pids) {
        const rest = fs.readFileSync(pids, "utf8").split("\n").filter((p) => p && p !== String(child.pid))
        fs.writeFileSync(pids, rest.map((p) => `${p}\n`).join(""))
      }
      resolve(code ?? signal)
    }),
  )
  return {
    child,
    logPath,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
      await Promise.race([exited, sleep(5000).then(() => child.kill("SIGKILL"))])
      children.delete(child)
    },
    tail: (lines = 40) => fs.readFileSync(logPath, "utf8").split("\n").slice(-lines).join("\n"),
  }
}

/** A port free on 127.0.0.1 right now. */
export async function freePort() {
  const server = net.createServer()
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `url` until it answers 2xx, or throws after `timeoutMs`. */
export async function waitForHttp(url, timeoutMs, exited) {
  const deadline = Date.now() + timeoutMs
  let gone = false
  exited?.then(() => (gone = true))
  while (Date.now() < deadline && !gone) {
    try {
      if ((await fetch(url)).ok) return
    } catch {
      // not listening yet
    }
    await sleep(100)
  }
  throw new Error(gone ? `the process behind ${url} exited` : `${url} did not answer within ${timeoutMs} ms`)
}
