/**
 * The "verify and parse" baseline for `bench/ingest.ts`: bare `node:http`, the same header HMAC check
 * kyc-relay does, `JSON.parse`, and no storage. Whatever kyc-relay costs beyond this is its own work.
 *
 * Environment: CASHFREE_CLIENT_SECRET, BASELINE_PORT, BASELINE_HOST (default 127.0.0.1),
 * BASELINE_PATH (default /webhooks/cashfree).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"

const secret = process.env.CASHFREE_CLIENT_SECRET ?? ""
const host = process.env.BASELINE_HOST ?? "127.0.0.1"
const port = Number(process.env.BASELINE_PORT ?? "0")
const webhookPath = process.env.BASELINE_PATH ?? "/webhooks/cashfree"

if (secret.length === 0) {
  console.error("baseline: CASHFREE_CLIENT_SECRET is not set")
  process.exit(1)
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

const signatureMatches = (timestamp: string, signature: string, body: Buffer): boolean => {
  const expected = Buffer.from(createHmac("sha256", secret).update(timestamp).update(body).digest("base64"))
  const received = Buffer.from(signature)
  return expected.length === received.length && timingSafeEqual(expected, received)
}

// Same shape as kyc-relay's ids, so both servers pay for an id per event.
const newEventId = () => `evt_${Date.now().toString(36).padStart(9, "0")}${randomBytes(8).toString("hex")}`

const handleWebhook = (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
  if (!signatureMatches(header(req, "x-webhook-timestamp"), header(req, "x-webhook-signature"), body)) {
    reply(res, 401, { status: "rejected", reason: "invalid-signature" })
    return
  }
  try {
    JSON.parse(body.toString("utf8"))
  } catch {
    reply(res, 400, { status: "rejected", reason: "malformed-body" })
    return
  }
  reply(res, 200, { status: "accepted", event_id: newEventId() })
}

const server = createServer((req, res) => {
  const route = (req.url ?? "/").split("?")[0]
  if (route === webhookPath && req.method === "POST") {
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
