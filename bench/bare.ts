/**
 * The bare `node:http` webhook server the bench's references share (baseline.ts, floor.ts): the header HMAC
 * check kyc-relay does, `JSON.parse`, then `accept`, which answers 200 with the body it is given.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"

/**
 * Read from the environment: CASHFREE_CLIENT_SECRET, then `<PREFIX>_PORT`, `<PREFIX>_HOST` (default 127.0.0.1) and
 * `<PREFIX>_PATH` (default /webhooks/cashfree), the prefix being `name` in capitals.
 */
export interface BareOptions {
  readonly name: string
  readonly accept: (text: string, parsed: unknown, answer: (body: unknown) => void) => void
}

const header = (req: IncomingMessage, name: string): string => {
  const value = req.headers[name]
  return (Array.isArray(value) ? value[0] : value) ?? ""
}

const reply = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
  res.end(text)
}

// Same shape as kyc-relay's ids, so every server pays for an id per event.
export const newEventId = () => `evt_${Date.now().toString(36).padStart(9, "0")}${randomBytes(8).toString("hex")}`

export const serveBare = (options: BareOptions) => {
  const prefix = options.name.toUpperCase()
  const secret = process.env.CASHFREE_CLIENT_SECRET ?? ""
  const host = process.env[`${prefix}_HOST`] ?? "127.0.0.1"
  const port = Number(process.env[`${prefix}_PORT`] ?? "0")
  const path = process.env[`${prefix}_PATH`] ?? "/webhooks/cashfree"
  if (secret.length === 0) {
    console.error(`${options.name}: CASHFREE_CLIENT_SECRET is not set`)
    process.exit(1)
  }
  const signatureMatches = (timestamp: string, signature: string, body: Buffer): boolean => {
    const expected = Buffer.from(createHmac("sha256", secret).update(timestamp).update(body).digest("base64"))
    const received = Buffer.from(signature)
    return expected.length === received.length && timingSafeEqual(expected, received)
  }

  const handleWebhook = (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    if (!signatureMatches(header(req, "x-webhook-timestamp"), header(req, "x-webhook-signature"), body)) {
      return reply(res, 401, { status: "rejected", reason: "invalid-signature" })
    }
    const text = body.toString("utf8")
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      return reply(res, 400, { status: "rejected", reason: "malformed-body" })
    }
    options.accept(text, parsed, (answer) => reply(res, 200, answer))
  }

  const server = createServer((req, res) => {
    const route = (req.url ?? "/").split("?")[0]
    if (route === path && req.method === "POST") {
      const chunks: Array<Buffer> = []
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.on("end", () => handleWebhook(req, res, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)))
      return
    }
    req.resume()
    if (route === "/readyz" && req.method === "GET") return reply(res, 200, { status: "ready" })
    reply(res, 404, { status: "not-found" })
  })

  const shutdown = () => {
    server.close(() => process.exit(0))
    server.closeIdleConnections()
  }
  process.once("SIGTERM", shutdown)
  process.once("SIGINT", shutdown)
  server.listen(port, host)
}
