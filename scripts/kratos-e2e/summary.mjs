// One line per test from a Playwright JSON report: PASS/FAIL, title, and the first
// line of the failure.
import { readFileSync } from "node:fs"

const report = JSON.parse(readFileSync(process.argv[2], "utf8"))
const plain = (text) => text.replace(/\x1b\[[0-9;]*m/g, "")
// The first error's first line, and what the step that timed out was waiting for.
function reason(result, status) {
  const errors = (result?.errors ?? []).map((e) => plain(e.message ?? ""))
  if (errors.length === 0) return status
  const waiting = errors.join("\n").match(/- (waiting for [^\n]*)/)
  return [errors[0].split("\n")[0], waiting?.[1]].filter(Boolean).join("; ")
}
function walk(suite, path) {
  const here = suite.title && !suite.title.endsWith(".ts") ? [...path, suite.title] : path
  for (const spec of suite.specs ?? []) {
    for (const test of spec.tests) {
      const result = test.results.at(-1)
      const ok = test.status === "expected"
      const why = ok ? "" : ` (${reason(result, test.status)})`
      console.log(`${ok ? "PASS" : "FAIL"}  ${spec.file}: ${[...here, spec.title].join(" › ")}${why}`)
    }
  }
  for (const child of suite.suites ?? []) walk(child, here)
}
for (const suite of report.suites) walk(suite, [])
