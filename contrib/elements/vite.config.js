import { defineConfig } from "vite"
import react from "@vitejs/plugin-react"

// Elements reads `process.env` (for Next.js); a browser bundle has none.
export default defineConfig({
  plugins: [react()],
  define: { "process.env": {} },
  build: { chunkSizeWarningLimit: 8192 },
})
