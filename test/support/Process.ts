import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { createServer } from "node:net"
import { join, resolve } from "node:path"
import { Effect, Schedule } from "effect"
import { repoRoot } from "./Fixtures.js"

const BIN = resolve(repoRoot, "bin/kyc-relay.js")

export interface Finished {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs the `kyc-relay` command to completion. */
export const runCli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.async<Finished>((resume) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: repoRoot, env: { ...process.env, ...env } })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk) => (stdout += chunk))
    child.stderr.on("data", (chunk) => (stderr += chunk))
    child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
  })

/** Starts `kyc-relay` in the background; it is sent SIGTERM (and awaited) when the scope closes. */
export const spawnCli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, [BIN, ...args], { cwd: repoRoot, env: { ...process.env, ...env } })
      const output = { stdout: "", stderr: "" }
      child.stdout!.on("data", (chunk) => (output.stdout += chunk))
      child.stderr!.on("data", (chunk) => (output.stderr += chunk))
      return { child, output }
    }),
    ({ child }) => stop(child)
  )

/** SIGTERM, then the exit code once the process has gone. */
export const stop = (child: ChildProcess) =>
  Effect.async<number | null>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.succeed(child.exitCode))
    child.once("exit", (code) => resume(Effect.succeed(code)))
    child.kill("SIGTERM")
  })

export const freePort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as { port: number }
    server.close(() => resume(Effect.succeed(port)))
  })
})

/**
 * Polls `url` until it answers 200, for at most `attempts` tries 100 ms apart. A server started through tsx
 * takes 5–7 s of CPU to load on a 2-core machine, longer while another test file runs beside it.
 */
export const waitUntilReady = (url: string, attempts = 300) =>
  Effect.tryPromise(() => fetch(url).then((r) => (r.ok ? undefined : Promise.reject(new Error(String(r.status)))))).pipe(
    Effect.retry(Schedule.intersect(Schedule.spaced("100 millis"), Schedule.recurs(attempts))),
    Effect.orDie
  )

/** A fresh temporary directory, removed with the scope. */
export const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), prefix))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

export const alive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null

/** SIGKILL: no finalizer runs, nothing is flushed, leases stay held. Resolves with the signal once the process is gone. */
export const kill = (child: ChildProcess) =>
  Effect.async<NodeJS.Signals | null>((resume) => {
    if (!alive(child)) return resume(Effect.succeed(child.signalCode))
    child.once("exit", (_code, signal) => resume(Effect.succeed(signal)))
    child.kill("SIGKILL")
  })

/** Waits for the server's "listening on" log line and returns its base URL; dies with its output if it exits first. */
export const listening = (server: { readonly child: ChildProcess; readonly output: { stdout: string; stderr: string } }) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 30_000
    for (;;) {
      const found = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(server.output.stdout)
      if (found !== null) return found[1]!
      if (!alive(server.child) || Date.now() > deadline) {
        throw new Error(
          `the server did not start (exit ${server.child.exitCode ?? server.child.signalCode}):\n${server.output.stdout}${server.output.stderr}`
        )
      }
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })
