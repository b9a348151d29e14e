// Serves a built single-page app from `root` on a free loopback port: files
// as they are, any other path as index.html. `overrides` maps a path to a
// body served in its place (e.g. the app's runtime config); it may be filled
// in after the server starts.
import fs from "node:fs"
import http from "node:http"
import path from "node:path"

const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
}

export async function serveApp(root) {
  const overrides = {}
  const server = http.createServer((req, res) => {
    const pathname = decodeURIComponent(new URL(req.url, "http://x").pathname)
    if (pathname in overrides) {
      res.writeHead(200, { "content-type": types[path.extname(pathname)] || "text/plain" })
      res.end(overrides[pathname])
      return
    }
    let file = path.join(root, path.normalize(pathname))
    if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      file = path.join(root, "index.html")
    }
    res.writeHead(200, { "content-type": types[path.extname(file)] || "application/octet-stream" })
    fs.createReadStream(file).pipe(res)
  })
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    overrides,
    close: () => new Promise((resolve) => server.close(resolve)),
  }
}
