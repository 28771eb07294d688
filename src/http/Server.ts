import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { Context, Data, Effect, Layer, Runtime } from "effect"
import { Settings } from "../config/ConfigFile.js"
import { Metrics, type WebhookOutcome } from "../observability/Metrics.js"
import { Events } from "../store/Events.js"
import { json, problem, type Reply } from "./Reply.js"
import { sourceCheck } from "./SourceAddress.js"
import { Webhook } from "./Webhook.js"

/** Where the server actually listens (the port is the OS's choice when `server.port` is 0 in tests). */
export class ServerAddress extends Context.Tag("kyc-relay/ServerAddress")<ServerAddress, {
  readonly host: string
  readonly port: number
  readonly url: string
}>() {}

export class ListenFailed extends Data.TaggedError("ListenFailed")<{ readonly host: string; readonly port: number; readonly cause: Error }> {
  override get message() {
    const code = (this.cause as NodeJS.ErrnoException).code
    const why = code === "EADDRINUSE" ? "the port is already in use" : this.cause.message
    return `cannot listen on ${this.host}:${this.port}: ${why} (change server.port or server.host)`
  }
}

const send = (res: ServerResponse, reply: Reply, close = false) => {
  const body = JSON.stringify(reply.body)
  res.writeHead(reply.status, {
    "content-type": reply.contentType,
    "content-length": Buffer.byteLength(body),
    ...reply.headers,
    ...(close ? { connection: "close" } : {})
  })
  res.end(body)
}

const tooLarge = (limit: number) =>
  problem(413, "body-too-large", "Body too large", `The body is larger than server.max_body_bytes (${limit} bytes)`)

/**
 * Reads the body up to `limit` bytes. An announced or actual overflow is answered 413 at once and the
 * connection closed, so nothing past the limit is buffered.
 */
const readBody = (
  req: IncomingMessage,
  limit: number,
  onTooLarge: (reply: Reply) => void,
  onBody: (body: Buffer) => void
) => {
  const announced = Number(req.headers["content-length"] ?? 0)
  if (announced > limit) {
    onTooLarge(tooLarge(limit))
    req.resume()
    return
  }
  const chunks: Array<Buffer> = []
  let size = 0
  req.on("data", (chunk: Buffer) => {
    size += chunk.length
    if (size > limit) {
      onTooLarge(tooLarge(limit))
      req.removeAllListeners("data")
      req.resume()
      return
    }
    chunks.push(chunk)
  })
  req.on("end", () => {
    if (size <= limit) onBody(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size))
  })
}

/** How long stopping waits for connections with a request still open. */
const SHUTDOWN_GRACE_MS = 1_000

const notFound = problem(404, "not-found", "Not found", "No such endpoint")

/**
 * The HTTP front end, on bare `node:http`: the webhook route is the hot path, and the routing it needs
 * (one POST path and two probes) is too small to pay for a general router per request.
 */
export const layer = Layer.scoped(
  ServerAddress,
  Effect.gen(function*() {
    const { config } = yield* Settings
    const webhook = yield* Webhook
    const events = yield* Events
    const metrics = yield* Metrics
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runPromise(runtime)
    const { host, port, path, max_body_bytes: limit } = config.server
    const allowedSource = sourceCheck(config.server.allowed_ips, config.server.trusted_proxies)

    const internalError = (error: unknown) =>
      Effect.runFork(Effect.logError("request failed", error))

    const ready = events.ping.pipe(
      Effect.timeout("2 seconds"),
      Effect.match({
        onFailure: () => problem(503, "not-ready", "Not ready", "The store is not reachable"),
        onSuccess: () => json(200, { status: "ready" })
      })
    )

    // Answers a webhook and counts it: stored outcomes by status, refusals by problem type.
    const answer = (res: ServerResponse, reply: Reply, started: number, close = false) => {
      const body = reply.body as { readonly status?: string; readonly type?: string }
      const stored = reply.status === 200 && body.status !== undefined
      metrics.webhook(
        stored ? body.status as WebhookOutcome : "rejected",
        stored ? reply.reason ?? "" : body.type ?? String(reply.status),
        (performance.now() - started) / 1000
      )
      send(res, reply, close)
    }

    const server = createServer((req, res) => {
      const started = performance.now()
      const url = req.url ?? "/"
      const query = url.indexOf("?")
      const route = query === -1 ? url : url.slice(0, query)
      if (route === path) {
        if (req.method !== "POST") {
          answer(res, { ...problem(405, "method-not-allowed", "Method not allowed", "Use POST"), headers: { allow: "POST" } }, started)
          req.resume()
          return
        }
        if (!allowedSource(req)) {
          answer(res, problem(403, "forbidden-source", "Forbidden", "This source address may not send webhooks"), started, true)
          req.resume()
          return
        }
        readBody(req, limit, (reply) => answer(res, reply, started, true), (body) => {
          webhook.handle({ headers: req.headers, body }).then(
            (reply) => answer(res, reply, started),
            (error) => {
              internalError(error)
              answer(res, problem(500, "internal-error", "Internal error", "The request could not be handled"), started)
            }
          )
        })
        return
      }
      req.resume()
      if (route === "/healthz" && req.method === "GET") return send(res, json(200, { status: "ok" }))
      if (route === "/metrics" && req.method === "GET") {
        run(metrics.render).then((text) => {
          res.writeHead(200, { "content-type": metrics.contentType, "content-length": Buffer.byteLength(text) })
          res.end(text)
        }, (error) => {
          internalError(error)
          send(res, problem(500, "internal-error", "Internal error", "Metrics could not be collected"))
        })
        return
      }
      if (route === "/readyz" && req.method === "GET") {
        run(ready).then((reply) => send(res, reply), (error) => {
          internalError(error)
          send(res, problem(503, "not-ready", "Not ready", "Readiness check failed"))
        })
        return
      }
      send(res, notFound)
    })
    server.headersTimeout = 10_000
    server.requestTimeout = 30_000
    server.keepAliveTimeout = 5_000

    yield* Effect.acquireRelease(
      Effect.async<void, ListenFailed>((resume) => {
        server.once("error", (cause) => resume(Effect.fail(new ListenFailed({ host, port, cause }))))
        server.listen(port, host, () => resume(Effect.void))
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeIdleConnections()
          // close() also stops the request timeouts, so a client that never finishes its request would hold
          // shutdown forever; requests being handled finish well within this.
          setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS).unref()
        })
    )
    const address = server.address() as AddressInfo
    const url = `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`
    yield* Effect.logInfo(`kyc-relay listening on ${url}${path}`)
    return { host: address.address, port: address.port, url }
  }).pipe(Effect.annotateLogs({ service: "Server" }))
)
