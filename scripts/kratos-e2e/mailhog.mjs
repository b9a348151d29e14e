// A stand-in for the part of MailHog's HTTP API that Kratos's specs read
// (GET /api/v2/search and /api/v2/messages), answered from Latchkey's outbox
// (GET /admin/courier/messages; --dev shows subjects and bodies).
import http from "node:http"

const admin = process.env.LATCHKEY_ADMIN_URL ?? "http://127.0.0.1:4434"
const port = Number(process.env.MAILHOG_PORT ?? 8025)

async function outbox() {
  const all = []
  let token = ""
  for (;;) {
    const url = `${admin}/admin/courier/messages?page_size=250${token ? `&page_token=${encodeURIComponent(token)}` : ""}`
    const res = await fetch(url)
    if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`)
    all.push(...(await res.json()))
    const next = /page_token=([^&>]+)[^>]*>;\s*rel="next"/.exec(res.headers.get("link") ?? "")
    if (!next) return all
    token = decodeURIComponent(next[1])
  }
}

function address(a) {
  const [Mailbox, Domain] = String(a).split("@")
  return { Relays: null, Mailbox, Domain, Params: "" }
}

// One message in MailHog's shape; the mailhog npm client decodes text/html from Content.
function asMailhog(m) {
  const from = "no-reply@latchkey.local"
  const html = /<\w+[^>]*>/.test(m.body ?? "")
  return {
    ID: m.id,
    From: address(from),
    To: [address(m.recipient)],
    Content: {
      Headers: {
        "Content-Type": [html ? "text/html; charset=UTF-8" : "text/plain; charset=UTF-8"],
        Subject: [m.subject ?? ""],
        From: [from],
        To: [m.recipient],
        Date: [m.created_at],
      },
      Body: m.body ?? "",
      Size: (m.body ?? "").length,
      MIME: null,
    },
    Created: m.created_at,
    MIME: null,
    Raw: { From: from, To: [m.recipient], Data: m.body ?? "", Helo: "localhost" },
  }
}

function matches(m, kind, query) {
  const q = query.toLowerCase()
  if (kind === "to") return String(m.recipient).toLowerCase().includes(q)
  if (kind === "from") return "no-reply@latchkey.local".includes(q)
  return `${m.subject ?? ""}\n${m.body ?? ""}\n${m.recipient}`.toLowerCase().includes(q)
}

http
  .createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost")
    try {
      let items
      if (url.pathname === "/api/v2/search") {
        const kind = url.searchParams.get("kind") ?? "containing"
        const query = url.searchParams.get("query") ?? ""
        items = (await outbox()).filter((m) => matches(m, kind, query))
      } else if (url.pathname === "/api/v2/messages") {
        items = await outbox()
      } else if (url.pathname === "/") {
        res.end("mailhog stand-in\n")
        return
      } else {
        res.writeHead(404).end()
        return
      }
      // Newest first, as MailHog answers.
      items.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)))
      const start = Number(url.searchParams.get("start") ?? 0)
      const limit = Number(url.searchParams.get("limit") ?? 50)
      const page = items.slice(start, start + limit).map(asMailhog)
      res.setHeader("Content-Type", "application/json")
      res.end(JSON.stringify({ total: items.length, count: page.length, start, items: page }))
    } catch (e) {
      res.writeHead(502).end(String(e))
    }
  })
  .listen(port, "::", () => console.log(`mailhog stand-in on :${port}, reading ${admin}`))
