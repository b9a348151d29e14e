// A real SMTP server on loopback that keeps every message in memory, so a
// suite reads the codes Latchkey mails exactly as a person would.
import net from "node:net"

export async function startSmtp() {
  const messages = []
  const waiters = new Set()
  const server = net.createServer((socket) => session(socket, (raw) => {
    messages.push(parseMessage(raw))
    for (const wake of waiters) wake()
  }))
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    port: server.address().port,
    messages,
    /** The first message to `to` (after the first `skip`) whose text matches. */
    async waitFor(to, { match = /./, skip = 0, timeoutMs = 15000 } = {}) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const found = messages.filter((m) => m.to.includes(to.toLowerCase()) && match.test(m.text))
        if (found.length > skip) return found[skip]
        if (Date.now() > deadline) throw new Error(`no mail to ${to} matching ${match} within ${timeoutMs} ms`)
        await new Promise((resolve) => {
          const wake = () => { waiters.delete(wake); resolve() }
          waiters.add(wake)
          setTimeout(wake, 200)
        })
      }
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  }
}

function session(socket, deliver) {
  let buffer = ""
  let data = null
  let recipients = []
  const reply = (line) => socket.write(`${line}\r\n`)
  reply("220 browser-tests ESMTP")
  socket.setEncoding("latin1")
  socket.on("error", () => {})
  socket.on("data", (chunk) => {
    buffer += chunk
    let end
    while ((end = buffer.indexOf("\r\n")) >= 0) {
      const line = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      if (data !== null) {
        if (line === ".") {
          deliver({ to: recipients, data: data.join("\r\n") })
          data = null
          recipients = []
          reply("250 OK queued")
        } else {
          data.push(line.startsWith("..") ? line.slice(1) : line)
        }
        continue
      }
      const verb = line.slice(0, 4).toUpperCase()
      if (verb === "EHLO") reply("250-browser-tests\r\n250-8BITMIME\r\n250 SMTPUTF8")
      else if (verb === "RCPT") {
        recipients.push(line.replace(/^RCPT TO:\s*<?([^>]*)>?.*$/i, "$1").toLowerCase())
        reply("250 OK")
      } else if (verb === "DATA") {
        data = []
        reply("354 go ahead")
      } else if (verb === "QUIT") {
        reply("221 bye")
        socket.end()
      } else reply("250 OK") // HELO, MAIL, RSET, NOOP
    }
  })
}

// The subject and the plain-text body; enough MIME for what lettre sends.
function parseMessage({ to, data }) {
  const [head, ...rest] = data.split("\r\n\r\n")
  const headers = unfold(head)
  const body = rest.join("\r\n\r\n")
  const type = headers["content-type"] || "text/plain"
  const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1]
  let text = decode(body, headers["content-transfer-encoding"])
  if (boundary) {
    const parts = body.split(`--${boundary}`).slice(1, -1)
    const plain = parts
      .map((part) => {
        const [partHead, ...partBody] = part.replace(/^\r\n/, "").split("\r\n\r\n")
        return { headers: unfold(partHead), body: partBody.join("\r\n\r\n") }
      })
      .find((part) => /^text\/plain/i.test(part.headers["content-type"] || ""))
    if (plain) text = decode(plain.body, plain.headers["content-transfer-encoding"])
  }
  return { to, subject: headers.subject || "", text }
}

function unfold(head) {
  const headers = {}
  for (const line of head.replace(/\r\n[ \t]+/g, " ").split("\r\n")) {
    const colon = line.indexOf(":")
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  return headers
}

function decode(body, encoding = "") {
  const bytes = (() => {
    switch (encoding.toLowerCase()) {
      case "base64":
        return Buffer.from(body.replace(/\s+/g, ""), "base64")
      case "quoted-printable":
        return Buffer.from(
          body.replace(/=\r\n/g, "").replace(/=([0-9A-F]{2})/gi, (_, hex) => String.fromCharCode(parseInt(hex, 16))),
          "latin1",
        )
      default:
        return Buffer.from(body, "latin1")
    }
  })()
  return bytes.toString("utf8")
}
