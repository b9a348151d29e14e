// Builds a node project a suite serves: `npm ci` when its node_modules is
// missing or older than its lockfile, then `npm run build`.
import { spawnSync } from "node:child_process"
import fs from "node:fs"
import path from "node:path"
import { outDir } from "./processes.mjs"

export function npmBuild(dir, name) {
  fs.mkdirSync(path.join(outDir, "logs"), { recursive: true })
  const logPath = path.join(outDir, "logs", `${name}-build.log`)
  const installed = path.join(dir, "node_modules/.package-lock.json")
  const fresh =
    fs.existsSync(installed) &&
    fs.statSync(installed).mtimeMs >= fs.statSync(path.join(dir, "package-lock.json")).mtimeMs
  const steps = fresh ? [["run", "build"]] : [["ci", "--no-audit", "--no-fund"], ["run", "build"]]
  for (const args of steps) {
    const run = spawnSync("npm", args, { cwd: dir, encoding: "utf8", timeout: 300000 })
    fs.appendFileSync(logPath, `$ npm ${args.join(" ")}\n${run.stdout}${run.stderr}\n`)
    if (run.status !== 0) throw new Error(`npm ${args.join(" ")} in ${dir} failed; see ${logPath}`)
  }
}
