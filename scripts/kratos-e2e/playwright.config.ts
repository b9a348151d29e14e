// Kratos's mobile project, run against servers scripts/kratos-e2e.sh started:
// Debian's Chromium instead of a downloaded one, no Hydra global setup, no
// webServer entries (those build and start Kratos, MailHog and Hydra).
import { defineConfig, devices } from "@playwright/test"

export default defineConfig({
  testDir: "./playwright/tests",
  fullyParallel: false,
  retries: 0,
  workers: 1,
  reporter: [["list"], ["json", { outputFile: process.env.KRATOS_E2E_REPORT ?? "report.json" }]],
  use: { trace: "retain-on-failure" },
  projects: [
    {
      name: "mobile-chrome",
      testMatch: /.*\/mobile\/.*\.spec\.ts/,
      use: {
        ...devices["Pixel 5"],
        baseURL: "http://localhost:19006",
        launchOptions: { executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium" },
      },
    },
  ],
})
