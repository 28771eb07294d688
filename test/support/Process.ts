import { spawn, type ChildProcess } from "node:child_process"
import { createServer } from "node:net"
import { resolve } from "node:path"
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

/** Polls `url` until it answers 200, for at most `attempts` tries 100 ms apart. */
export const waitUntilReady = (url: string, attempts = 100) =>
  Effect.tryPromise(() => fetch(url).then((r) => (r.ok ? undefined : Promise.reject(new Error(String(r.status)))))).pipe(
    Effect.retry(Schedule.intersect(Schedule.spaced("100 millis"), Schedule.recurs(attempts))),
    Effect.orDie
  )
