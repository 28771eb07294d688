import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Exit, Fiber } from "effect"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { startCall } from "../../src/dispatch/CallTimeout.js"
import { headerOf, httpCall, MAX_ANSWER_BYTES } from "../../src/plugin/HttpCall.js"
import { eventually, pause, startReceiver } from "../support/Receiver.js"

/** A server that never answers, and counts the connections its clients closed. */
const silentServer = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly closed: () => number; readonly close: () => void }>((resume) => {
    let closed = 0
    const server = createServer((req) => {
      req.resume()
      req.socket.once("close", () => closed++)
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resume(Effect.succeed({
        url: `http://127.0.0.1:${port}`,
        closed: () => closed,
        close: () => {
          server.close()
          server.closeAllConnections()
        }
      }))
    })
  }),
  (server) => Effect.sync(server.close)
)

/** The URL of `server`, listening on a free loopback port until the scope closes. */
const listening = (server: Server) =>
  Effect.acquireRelease(
    Effect.async<string>((resume) => {
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)))
    }),
    () => Effect.sync(() => server.close(() => undefined))
  )

describe("httpCall", () => {
  it.scoped("sends the method, headers and body, and returns the status, headers and body of the answer", () =>
    Effect.gen(function*() {
      const receiver = yield* startReceiver([{ status: 503, headers: { "retry-after": "7" } }])
      const answer = yield* httpCall("PUT", `${receiver.url}/contacts/42`, { "idempotency-key": "k1" }, "{\"a\":1}")
      assert.strictEqual(answer.status, 503)
      assert.strictEqual(headerOf(answer, "retry-after"), "7")
      assert.deepStrictEqual(JSON.parse(answer.text), { ok: false })
      const [received] = receiver.received
      assert.strictEqual(received?.method, "PUT")
      assert.strictEqual(received?.path, "/contacts/42")
      assert.strictEqual(received?.headers["idempotency-key"], "k1")
      assert.strictEqual(received?.body, "{\"a\":1}")
    }))

  it.scoped("keeps at most MAX_ANSWER_BYTES of an answer that does not end", () =>
    Effect.gen(function*() {
      const server = createServer((req, res) => {
        req.resume()
        res.writeHead(200, { "content-type": "text/plain" })
        const chunk = "x".repeat(16 * 1024)
        const timer = setInterval(() => res.write(chunk), 1)
        res.once("close", () => clearInterval(timer))
      })
      const url = yield* listening(server)
      const answer = yield* httpCall("POST", url, {}, "{}")
      assert.strictEqual(answer.status, 200)
      assert.isFalse(answer.complete)
      assert.isAtMost(answer.text.length, MAX_ANSWER_BYTES)
    }))

  it.scoped("an answer whose body breaks off is still an answer: its status counts, its body is marked incomplete", () =>
    Effect.gen(function*() {
      const server = createServer((req, res) => {
        req.resume()
        res.writeHead(200, { "content-type": "application/json", "content-length": "1000" })
        res.write("{\"id\":")
        setTimeout(() => res.destroy(), 20)
      })
      const url = yield* listening(server)
      const answer = yield* httpCall("POST", url, {}, "{}")
      assert.strictEqual(answer.status, 200)
      assert.isFalse(answer.complete)
    }))

  it.scoped("sends a header given twice in different cases once, with the later value", () =>
    Effect.gen(function*() {
      const receiver = yield* startReceiver([{ status: 200 }])
      const answer = yield* httpCall("POST", receiver.url, { "Idempotency-Key": "from-settings", "idempotency-key": "from-plugin" }, "{}")
      assert.isTrue(answer.complete)
      assert.strictEqual(receiver.received[0]?.headers["idempotency-key"], "from-plugin")
    }))

  it.effect("a refused connection is Retryable and names the system code, not the URL", () =>
    Effect.gen(function*() {
      const probe = createServer()
      const port = yield* Effect.async<number>((resume) => {
        probe.listen(0, "127.0.0.1", () => {
          const { port } = probe.address() as AddressInfo
          probe.close(() => resume(Effect.succeed(port)))
        })
      })
      const outcome = yield* Effect.either(httpCall("POST", `http://127.0.0.1:${port}/secret-path`, {}, "{}"))
      assert.isTrue(Either.isLeft(outcome))
      if (Either.isLeft(outcome)) {
        assert.strictEqual(outcome.left._tag, "Retryable")
        assert.strictEqual(outcome.left.message, "POST request failed: ECONNREFUSED")
      }
    }))

  it.effect("a request that cannot be sent as written is Permanent", () =>
    Effect.gen(function*() {
      const outcome = yield* Effect.either(httpCall("POST", "http://127.0.0.1:1/", { "x-bad": "line\nbreak" }, "{}"))
      assert.isTrue(Either.isLeft(outcome))
      if (Either.isLeft(outcome)) {
        assert.strictEqual(outcome.left._tag, "Permanent")
        assert.match(outcome.left.message, /^POST request could not be built \(/)
      }
    }))
})

/** Starts `effect` with `startCall` and waits for the exit it reports. */
const called = <A, E>(effect: Effect.Effect<A, E>, millis: number) =>
  Effect.flatMap(Effect.runtime<never>(), (runtime) =>
    Effect.async<Exit.Exit<A, E | "timed out">>((resume) => {
      startCall(runtime, effect, millis, () => "timed out" as const, (exit) => resume(Effect.succeed(exit)))
    }))

describe("startCall", () => {
  it.scoped("fails with the timeout's error and aborts the call still on the wire", () =>
    Effect.gen(function*() {
      const server = yield* silentServer
      const exit = yield* called(httpCall("POST", server.url, {}, "{}"), 200)
      assert.deepStrictEqual(exit, Exit.fail("timed out"))
      yield* eventually(() => server.closed() === 1)
    }))

  it.effect("passes on the effect's success, failure and defect, also when they come at once", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* called(Effect.succeed(1), 1_000), Exit.succeed(1))
      assert.deepStrictEqual(yield* called(Effect.fail("refused"), 1_000), Exit.fail("refused"))
      assert.deepStrictEqual(yield* called(Effect.zipRight(pause(10), Effect.fail("later")), 1_000), Exit.fail("later"))
      assert.deepStrictEqual(yield* called(Effect.die("boom"), 1_000), Exit.die("boom"))
    }))

  it.effect("interrupting the returned fiber interrupts the call, and is not taken for a timeout", () =>
    Effect.gen(function*() {
      let interrupted = false
      const call = Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => (interrupted = true))))
      const runtime = yield* Effect.runtime<never>()
      let reported: Exit.Exit<never, "timed out"> | undefined
      const fiber = startCall(runtime, call, 60_000, () => "timed out" as const, (exit) => (reported = exit))
      yield* pause(50)
      yield* Fiber.interrupt(fiber)
      assert.isTrue(interrupted)
      assert.isTrue(reported !== undefined && Exit.isInterrupted(reported))
    }))
})
