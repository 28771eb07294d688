/**
 * Ingest throughput of kyc-relay against a bare "verify and parse" `node:http` server, in one run:
 * baseline, durable floor (bench/floor.ts: the baseline plus a minimal durable SQLite write), kyc-relay on
 * SQLite, kyc-relay on PostgreSQL, baseline again. Every request is a unique, correctly signed
 * VKYC_USER_CALL_QUEUED event, so kyc-relay stores each one rather than deduplicating.
 *
 *   npm run bench                                   # 50 connections, 2 s warm-up + 10 s per target
 *   BENCH_DURATION=30 BENCH_CONNECTIONS=100 npm run bench
 *   BENCH_PACED_RATE=2000 npm run bench             # the fixed-rate acknowledgement run at 2 000 req/s (default 1 000)
 *   BENCH_ONLY=delivery npm run bench               # one part only (or BENCH_ONLY=ingest)
 *
 * Prints a Markdown table on stdout; progress and warnings go to stderr.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process"
import { createHmac, randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { Agent, createServer as createHttpServer, get, request as httpRequest, type Server as HttpServer } from "node:http"
import { createServer } from "node:net"
import { cpus, platform, release, tmpdir, totalmem } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import Database from "better-sqlite3"
import { runLoad, type LoadResult } from "./load.js"

const SECRET = "bench-secret"
const HOST = "127.0.0.1"
const WEBHOOK_PATH = "/webhooks/cashfree"
const WARMUP_SECONDS = 2
const READY_TIMEOUT_MS = 30_000
const EXIT_TIMEOUT_MS = 10_000
const PSQL_TIMEOUT_MS = 15_000
const PG = { host: "127.0.0.1", port: 5432, user: "postgres", adminDatabase: "test" } as const

const ROOT = fileURLToPath(new URL("..", import.meta.url))
const BASELINE_SCRIPT = fileURLToPath(new URL("./baseline.ts", import.meta.url))
const FLOOR_SCRIPT = fileURLToPath(new URL("./floor.ts", import.meta.url))
const PRODUCT_ENTRY = join(ROOT, "dist", "src", "main.js")

const execFileAsync = promisify(execFile)

// ---------------------------------------------------------------------------------------------- settings

interface Settings {
  readonly seconds: number
  readonly connections: number
  /** The fixed rate of the acknowledgement-latency run, requests per second over the same connections. */
  readonly pacedRate: number
  readonly phases: ReadonlySet<Phase>
}

const positiveNumber = (name: string, fallback: number, integer: boolean): number => {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new Error(`${name} must be a positive ${integer ? "integer" : "number"}, got ${JSON.stringify(raw)}`)
  }
  return value
}

const PHASES = ["ingest", "delivery"] as const
type Phase = (typeof PHASES)[number]

/** BENCH_ONLY=ingest or BENCH_ONLY=delivery runs one of the two parts (default: both). */
const readPhases = (): ReadonlySet<Phase> => {
  const raw = process.env.BENCH_ONLY ?? ""
  if (raw === "") return new Set(PHASES)
  if (!(PHASES as ReadonlyArray<string>).includes(raw)) throw new Error(`BENCH_ONLY must be one of ${PHASES.join(", ")}, got ${JSON.stringify(raw)}`)
  return new Set([raw as Phase])
}

const readSettings = (): Settings => ({
  seconds: positiveNumber("BENCH_DURATION", 10, false),
  connections: positiveNumber("BENCH_CONNECTIONS", 50, true),
  pacedRate: positiveNumber("BENCH_PACED_RATE", 1_000, false),
  phases: readPhases()
})

// ---------------------------------------------------------------------------------------------- reporting

const warnings: Array<string> = []

const note = (message: string) => console.error(`[bench] ${message}`)

const warn = (message: string) => {
  warnings.push(message)
  console.error(`\n!!!!!!!! ${message}\n`)
}

// ---------------------------------------------------------------------------------------------- cleanup

const cleanups: Array<() => Promise<void>> = []

const runCleanups = async () => {
  while (cleanups.length > 0) {
    const cleanup = cleanups.pop()!
    try {
      await cleanup()
    } catch (error) {
      warn(`cleanup failed: ${String(error)}`)
    }
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const withTimeout = <A>(promise: PromiseLike<A>, ms: number, what: string): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      }
    )
  })

// ---------------------------------------------------------------------------------------------- payloads

const RUN_TAG = randomBytes(4).toString("hex")
let sequence = 0

/** A VKYC_USER_CALL_QUEUED event like Cashfree's sample, with a verification id no other request uses. */
const uniqueEvent = (): string => {
  sequence += 1
  return JSON.stringify({
    event_type: "VKYC_USER_CALL_QUEUED",
    event_time: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
    version: "v1",
    data: {
      verification_id: `vkyc_bench_${RUN_TAG}_${sequence}`,
      reference_id: sequence,
      user_reference_id: 10259,
      user_id: "user_58213",
      status: "PRE_VIDEO_CALL",
      sub_status: "USER_QUEUED",
      vkyc_link: "https://forms.cashfree.com/verification/c8k926bpt84g",
      link_expiry: "2025-06-21",
      recording_link: null,
      meeting_schedule: null,
      auditor_remarks: null,
      agent_remarks: null
    }
  })
}

const sign = (timestamp: string, body: string) =>
  createHmac("sha256", SECRET).update(timestamp).update(body).digest("base64")

/** A whole HTTP/1.1 request carrying a fresh event, signed as Cashfree signs it. */
const signedRequest = (): string => {
  const body = uniqueEvent()
  const timestamp = Date.now().toString()
  return `POST ${WEBHOOK_PATH} HTTP/1.1\r\nhost: ${HOST}\r\ncontent-type: application/json\r\n` +
    `x-webhook-timestamp: ${timestamp}\r\nx-webhook-signature: ${sign(timestamp, body)}\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
}

// ---------------------------------------------------------------------------------------------- load

interface LoadOutcome {
  readonly result: LoadResult
  /** `event_id` of every 2xx answer. */
  readonly acknowledged: ReadonlyArray<string>
  /** `<http status> <body status>` → count, e.g. `200 accepted`. */
  readonly answers: ReadonlyMap<string, number>
  /** A few bodies of non-2xx answers, for the report. */
  readonly rejections: ReadonlyArray<string>
  /** Written but never answered when the load stopped; the server may still have stored them. */
  readonly unanswered: number
}

const bodyStatus = (body: string): { readonly status: string; readonly eventId: string | undefined } => {
  try {
    // kyc-relay answers errors as problem details: `type` says what went wrong, `status` is the HTTP code.
    const parsed = JSON.parse(body) as { status?: unknown; type?: unknown; event_id?: unknown }
    return {
      status: typeof parsed.status === "string" ? parsed.status : typeof parsed.type === "string" ? parsed.type : "?",
      eventId: typeof parsed.event_id === "string" ? parsed.event_id : undefined
    }
  } catch {
    return { status: "unparseable", eventId: undefined }
  }
}

/** Closed loop without a `rate`; open loop at `rate` requests per second with one. */
const load = async (baseUrl: string, seconds: number, connections: number, collectIds: boolean, rate?: number): Promise<LoadOutcome> => {
  const acknowledged: Array<string> = []
  const answers = new Map<string, number>()
  const rejections: Array<string> = []
  const onAnswer = (status: number, body: string) => {
    const parsed = bodyStatus(body)
    const key = `${status} ${parsed.status}`
    answers.set(key, (answers.get(key) ?? 0) + 1)
    if (status >= 200 && status < 300) {
      if (collectIds && parsed.eventId !== undefined) acknowledged.push(parsed.eventId)
    } else if (rejections.length < 3) {
      const sample = `${status} ${body.slice(0, 300)}`
      if (!rejections.includes(sample)) rejections.push(sample)
    }
  }
  const { port } = new URL(baseUrl)
  const result = await withTimeout(
    runLoad({ host: HOST, port: Number(port), connections, seconds, request: signedRequest, onAnswer, ...(rate === undefined ? {} : { rate }) }),
    (seconds + 20) * 1000,
    "the load generator"
  )
  // A request that timed out or was cut off may still have been stored: it counts as unanswered too.
  return { result, acknowledged, answers, rejections, unanswered: result.written - result.answered }
}

const non2xx = (result: LoadResult) => [...result.statuses].reduce((sum, [status, count]) => sum + (status >= 200 && status < 300 ? 0 : count), 0)

// ---------------------------------------------------------------------------------------------- servers

interface ServerChild {
  readonly name: string
  readonly child: ChildProcess
  readonly url: string
  readonly exited: Promise<string>
  readonly exitInfo: () => string | undefined
  /** The last lines the server wrote, and how many it wrote in all. */
  readonly output: () => { readonly tail: string; readonly lines: number }
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const probe = createServer()
    probe.once("error", reject)
    probe.listen(0, HOST, () => {
      const address = probe.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      probe.close(() => resolve(port))
    })
  })

const startServer = (name: string, args: ReadonlyArray<string>, env: Record<string, string>, port: number): ServerChild => {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const tail: Array<string> = []
  let lines = 0
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString("utf8").split("\n")) {
      if (line.trim().length === 0) continue
      lines += 1
      tail.push(line)
      if (tail.length > 30) tail.shift()
    }
  }
  child.stdout?.on("data", keep)
  child.stderr?.on("data", keep)
  let exitInfo: string | undefined
  const exited = new Promise<string>((resolve) => {
    child.once("error", (error) => {
      exitInfo = `could not start: ${error.message}`
      resolve(exitInfo)
    })
    child.once("exit", (code, signal) => {
      exitInfo = signal === null ? `exit code ${code}` : `signal ${signal}`
      resolve(exitInfo)
    })
  })
  return {
    name,
    child,
    url: `http://${HOST}:${port}`,
    exited,
    exitInfo: () => exitInfo,
    output: () => ({ tail: tail.join("\n"), lines })
  }
}

const httpStatus = (url: string, timeoutMs: number) =>
  new Promise<number>((resolve) => {
    const request = get(url, { timeout: timeoutMs }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    request.once("timeout", () => request.destroy())
    request.once("error", () => resolve(0))
  })

const waitReady = async (server: ServerChild) => {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    const exit = server.exitInfo()
    if (exit !== undefined) throw new Error(`${server.name} exited before becoming ready (${exit})`)
    if ((await httpStatus(`${server.url}/readyz`, 2_000)) === 200) return
    await sleep(100)
  }
  throw new Error(`${server.name}: GET /readyz did not answer 200 within ${READY_TIMEOUT_MS / 1000} s`)
}

const stopServer = async (server: ServerChild) => {
  if (server.exitInfo() !== undefined) return
  server.child.kill("SIGTERM")
  const exit = await Promise.race([server.exited, sleep(EXIT_TIMEOUT_MS).then(() => undefined)])
  if (exit === undefined) {
    warn(`${server.name} did not exit within ${EXIT_TIMEOUT_MS / 1000} s of SIGTERM; sent SIGKILL`)
    server.child.kill("SIGKILL")
    await server.exited
  }
}

/** Peak resident set (VmHWM) of a live process, in KiB; undefined where /proc is not available. */
const peakRssKiB = (pid: number | undefined): number | undefined => {
  if (pid === undefined) return undefined
  try {
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? undefined : Number(match[1])
  } catch {
    return undefined
  }
}

// USER_HZ, the unit of /proc/<pid>/stat times: 100 on mainstream Linux builds.
const CLOCK_TICKS_PER_SECOND = 100

/** User + system CPU seconds a live process has used so far, all threads; undefined without /proc. */
const cpuSeconds = (pid: number | undefined): number | undefined => {
  if (pid === undefined) return undefined
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the parenthesised command name: state is first, utime 12th, stime 13th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND
  } catch {
    return undefined
  }
}

const clientCpuSeconds = () => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e6
}

// ---------------------------------------------------------------------------------------------- targets

/** The bare baseline, the durable floor (a reference that stores), or kyc-relay itself. */
type Kind = "baseline" | "floor" | "product"

interface Measurement {
  readonly label: string
  readonly store: string
  readonly kind: Kind
  readonly measured: LoadOutcome
  readonly peakRssKiB: number | undefined
  /** CPU used during the measured run, in % of one core. */
  readonly serverCpu: number | undefined
  readonly clientCpu: number
  /** The same connections at `Settings.pacedRate`, after the measured run. */
  readonly paced: LoadOutcome
  /** Warm-up and both runs together: what the store should hold. */
  readonly acknowledged: ReadonlyArray<string>
  readonly unanswered: number
}

interface TargetSpec {
  readonly label: string
  readonly store: string
  readonly kind: Kind
  readonly start: (port: number) => ServerChild
}

const describeAnswers = (answers: ReadonlyMap<string, number>) =>
  Array.from(answers, ([key, count]) => `${count} × ${key}`).join(", ")

/** Starts the target, warms it up, measures it, reads its peak RSS and stops it. Undefined if it never got ready. */
const runTarget = async (spec: TargetSpec, settings: Settings): Promise<Measurement | undefined> => {
  const server = spec.start(await freePort())
  cleanups.push(() => stopServer(server))
  try {
    await waitReady(server)
  } catch (error) {
    warn(`${spec.label}: ${(error as Error).message}; skipped. Last server output:\n${server.output().tail}`)
    await stopServer(server)
    return undefined
  }
  note(`${spec.label}: ready at ${server.url} (pid ${server.child.pid}); warm-up ${WARMUP_SECONDS} s`)
  const stores = spec.kind !== "baseline"
  const warmup = await load(server.url, WARMUP_SECONDS, settings.connections, stores)
  note(`${spec.label}: measuring ${settings.seconds} s with ${settings.connections} connections`)
  const serverBefore = cpuSeconds(server.child.pid)
  const clientBefore = clientCpuSeconds()
  const started = performance.now()
  const measured = await load(server.url, settings.seconds, settings.connections, stores)
  const elapsed = (performance.now() - started) / 1000
  const serverAfter = cpuSeconds(server.child.pid)
  const clientAfter = clientCpuSeconds()
  note(`${spec.label}: ${settings.seconds} s at a fixed ${settings.pacedRate} req/s over the same connections`)
  const paced = await load(server.url, settings.seconds, settings.connections, stores, settings.pacedRate)
  if (paced.result.unwritten > 0) {
    warn(`${spec.label}, fixed rate: ${paced.result.unwritten} requests fell due with every connection busy and were never sent; the rate is past what it serves`)
  }
  const rss = peakRssKiB(server.child.pid)
  const crashed = server.exitInfo()
  if (crashed !== undefined) warn(`${spec.label}: the server exited during the run (${crashed})`)
  await stopServer(server)

  for (const [phase, outcome] of [["warm-up", warmup], ["measured run", measured], ["fixed-rate run", paced]] as const) {
    const { result } = outcome
    const bad = non2xx(result) + result.errors
    if (bad > 0) {
      const loud = spec.kind === "product" ? "PRODUCT ANSWERED NON-2XX / FAILED REQUESTS" : `${spec.kind} answered non-2xx / failed requests`
      warn(
        `${loud} — ${spec.label}, ${phase}: ${non2xx(result)} non-2xx, ${result.errors} errors (timeouts, resets, unreadable answers); ` +
          `answers: ${describeAnswers(outcome.answers)}` +
          (outcome.rejections.length > 0 ? `\n  sample bodies:\n  ${outcome.rejections.join("\n  ")}` : "")
      )
    }
  }
  // A 2xx that is not "accepted" (duplicate, quarantined) means the events did not go the intended path.
  for (const outcome of [warmup, measured, paced]) {
    if (Array.from(outcome.answers.keys()).some((key) => key.startsWith("2") && key !== "200 accepted")) {
      warn(`${spec.label}: 2xx answers other than "200 accepted": ${describeAnswers(outcome.answers)}`)
    }
  }
  const { lines, tail } = server.output()
  if (lines > 0) note(`${spec.label}: server wrote ${lines} log line(s); last ones:\n${tail}`)

  return {
    label: spec.label,
    store: spec.store,
    kind: spec.kind,
    measured,
    paced,
    peakRssKiB: rss,
    serverCpu: serverBefore === undefined || serverAfter === undefined ? undefined : (100 * (serverAfter - serverBefore)) / elapsed,
    clientCpu: (100 * (clientAfter - clientBefore)) / elapsed,
    acknowledged: [...warmup.acknowledged, ...measured.acknowledged, ...paced.acknowledged],
    unanswered: warmup.unanswered + measured.unanswered + paced.unanswered
  }
}

const baselineTarget = (label: string): TargetSpec => ({
  label,
  store: "none",
  kind: "baseline",
  start: (port) =>
    startServer(label, ["--import", "tsx", BASELINE_SCRIPT], {
      CASHFREE_CLIENT_SECRET: SECRET,
      BASELINE_HOST: HOST,
      BASELINE_PORT: String(port),
      BASELINE_PATH: WEBHOOK_PATH
    }, port)
})

const floorTarget = (database: string): TargetSpec => ({
  label: "durable floor",
  store: "SQLite",
  kind: "floor",
  start: (port) =>
    startServer("durable floor", ["--import", "tsx", FLOOR_SCRIPT], {
      CASHFREE_CLIENT_SECRET: SECRET,
      FLOOR_DATABASE: database,
      FLOOR_HOST: HOST,
      FLOOR_PORT: String(port),
      FLOOR_PATH: WEBHOOK_PATH
    }, port)
})

let productNodeOptions: ReadonlyArray<string> | undefined

/**
 * kyc-relay runs as `npm start` runs it: built first (`npm run build`, quick when nothing changed), then the
 * compiled entry with the Node options of the start script. Once per bench run; returns those options.
 */
const buildProduct = (): ReadonlyArray<string> => {
  if (productNodeOptions !== undefined) return productNodeOptions
  const { scripts } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }
  const start = /^node((?: --\S+)*) dist\/src\/main\.js serve$/.exec(scripts.start ?? "")
  if (start === null) throw new Error(`package.json scripts.start is not "node [--option ...] dist/src/main.js serve": ${scripts.start}`)
  note("npm run build")
  execFileSync("npm", ["run", "--silent", "build"], { cwd: ROOT, stdio: ["ignore", 2, 2] })
  const profiles = process.env.BENCH_CPU_PROFILE ?? ""
  productNodeOptions = [
    ...start[1]!.split(" ").filter((option) => option !== ""),
    // A V8 CPU profile of each kyc-relay process (and its writer thread), written into this directory when it stops.
    ...(profiles === "" ? [] : ["--cpu-prof", `--cpu-prof-dir=${profiles}`])
  ]
  return productNodeOptions
}

const productTarget = (
  label: string,
  store: string,
  storeUrl: string,
  directory: string,
  extraConfig: ReadonlyArray<string> = [],
  configName = store.toLowerCase()
): TargetSpec => ({
  label,
  store,
  kind: "product",
  start: (port) => {
    const config = join(directory, `${configName}.yaml`)
    writeFileSync(
      config,
      [
        "server:",
        `  host: ${HOST}`,
        `  port: ${port}`,
        `  path: ${WEBHOOK_PATH}`,
        "cashfree:",
        "  secrets: [\"${CASHFREE_CLIENT_SECRET}\"]",
        "store:",
        `  url: ${JSON.stringify(storeUrl)}`,
        ...extraConfig,
        ""
      ].join("\n")
    )
    return startServer(label, [...buildProduct(), PRODUCT_ENTRY, "serve", "--config", config], {
      CASHFREE_CLIENT_SECRET: SECRET,
      // Effect's level names (case-insensitive): "Warning" is refused at start-up, "Warn" is accepted.
      KYC_RELAY_LOG_LEVEL: "warning"
    }, port)
  }
})

// ---------------------------------------------------------------------------------------------- store checks

interface StoreCheck {
  readonly label: string
  readonly stored: number
  readonly acknowledged: number
  readonly missing: number
  readonly extra: number
  readonly unanswered: number
  readonly ok: boolean
}

/**
 * Every acknowledged event must be stored. A few more rows than acknowledgements are expected: requests
 * written before the load stopped whose answers never came; there can be no more of those than
 * requests it left unanswered.
 */
const checkStore = (label: string, storedCount: number, storedIds: ReadonlySet<string>, measurement: Measurement): StoreCheck => {
  const missing = measurement.acknowledged.filter((id) => !storedIds.has(id)).length
  const extra = storedCount - (measurement.acknowledged.length - missing)
  const ok = missing === 0 && extra >= 0 && extra <= measurement.unanswered && storedIds.size === storedCount
  const check: StoreCheck = {
    label,
    stored: storedCount,
    acknowledged: measurement.acknowledged.length,
    missing,
    extra,
    unanswered: measurement.unanswered,
    ok
  }
  if (!ok) {
    warn(
      `STORE MISMATCH (${label}): ${storedCount} rows stored, ${check.acknowledged} events acknowledged with 2xx, ` +
        `${missing} acknowledged but not stored, ${extra} stored without a counted answer ` +
        `(at most ${measurement.unanswered} requests were left unanswered when the load stopped)`
    )
  }
  return check
}

const sqliteContents = (file: string): { readonly count: number; readonly ids: ReadonlySet<string> } => {
  const db = new Database(file, { fileMustExist: true })
  try {
    const count = Number(db.prepare("SELECT COUNT(*) FROM events").pluck().get())
    const ids = new Set(db.prepare("SELECT id FROM events").pluck().all().map(String))
    return { count, ids }
  } finally {
    db.close()
  }
}

// ---------------------------------------------------------------------------------------------- postgres

const psql = async (database: string, sql: string): Promise<string> => {
  const { stdout } = await execFileAsync(
    "psql",
    ["-h", PG.host, "-p", String(PG.port), "-U", PG.user, "-d", database, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
    { timeout: PSQL_TIMEOUT_MS, maxBuffer: 256 * 1024 * 1024, env: { ...process.env, PGCONNECT_TIMEOUT: "3" } }
  )
  return stdout.trim()
}

const postgresContents = async (database: string): Promise<{ readonly count: number; readonly ids: ReadonlySet<string> }> => {
  const count = Number(await psql(database, "SELECT COUNT(*) FROM events"))
  const ids = (await psql(database, "SELECT id FROM events")).split("\n").filter((id) => id.length > 0)
  return { count, ids: new Set(ids) }
}

const skipped: Array<string> = []

/** The server version, or undefined (with the reason noted) when PostgreSQL cannot be used. */
const postgresVersion = async (): Promise<string | undefined> => {
  try {
    return await psql(PG.adminDatabase, "SHOW server_version")
  } catch (error) {
    const { message, stderr } = error as { readonly message: string; readonly stderr?: string }
    const reason = `${stderr ?? ""}\n${message}`.split("\n").find((line) => line.trim().length > 0)?.trim() ?? "unknown error"
    const line = `PostgreSQL case SKIPPED: cannot reach ${PG.user}@${PG.host}:${PG.port}/${PG.adminDatabase} with psql (${reason})`
    skipped.push(line)
    note(line)
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------- delivery

const DELIVERY_RATE = 500
const DELIVERY_SECONDS = 10
const DELIVERY_WARMUP_SECONDS = 3
const DRAIN_TIMEOUT_MS = 10_000
const BURST_EVENTS = 2_000
const BURST_CONCURRENCY = 50
const BURST_TIMEOUT_MS = 20_000
const SINK_PATH = "/hook"
const EVENT_ID_HEADER = "x-kyc-relay-event-id"

/** A local destination for the `webhook` plugin: answers 200 at once, notes when each event id first arrived. */
interface Sink {
  readonly port: number
  readonly arrivals: Map<string, number>
  /** Deliveries of an event id the sink had already seen. */
  readonly duplicates: () => number
  readonly close: () => Promise<void>
}

const startSink = () =>
  new Promise<Sink>((resolve, reject) => {
    const arrivals = new Map<string, number>()
    let duplicates = 0
    const server: HttpServer = createHttpServer((req, res) => {
      const arrived = performance.now()
      const id = req.headers[EVENT_ID_HEADER]
      if (typeof id === "string") {
        if (arrivals.has(id)) duplicates += 1
        else arrivals.set(id, arrived)
      }
      req.resume()
      req.once("end", () => {
        res.writeHead(200, { "content-type": "text/plain" })
        res.end("ok")
      })
    })
    server.keepAliveTimeout = 60_000
    server.once("error", reject)
    server.listen(0, HOST, () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resolve({
        port,
        arrivals,
        duplicates: () => duplicates,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections()
            server.close(() => done())
          })
      })
    })
  })

interface Ack {
  /** performance.now() when the request was handed to node:http. */
  readonly start: number
  readonly ackMs: number
  readonly status: number
  readonly bodyStatus: string
  readonly eventId: string | undefined
}

/** POSTs one unique signed event; resolves (never rejects) with the answer and its timing. */
const postEvent = (agent: Agent, baseUrl: string) =>
  new Promise<Ack>((resolve) => {
    const body = uniqueEvent()
    const timestamp = Date.now().toString()
    const start = performance.now()
    const done = (status: number, text: string) => {
      const parsed = status === 0 ? { status: text, eventId: undefined } : bodyStatus(text)
      resolve({ start, ackMs: performance.now() - start, status, bodyStatus: parsed.status, eventId: parsed.eventId })
    }
    const request = httpRequest(`${baseUrl}${WEBHOOK_PATH}`, {
      method: "POST",
      agent,
      timeout: 10_000,
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        "x-webhook-timestamp": timestamp,
        "x-webhook-signature": sign(timestamp, body)
      }
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.once("end", () => done(res.statusCode ?? 0, Buffer.concat(chunks).toString("utf8")))
      res.once("error", (error) => done(0, `response error: ${error.message}`))
    })
    request.once("timeout", () => request.destroy(new Error("timeout")))
    request.once("error", (error) => done(0, `request error: ${error.message}`))
    request.end(body)
  })

/** Open-loop sender: `rate` events per second for `seconds`, however slowly the server answers. */
const sendPaced = async (agent: Agent, baseUrl: string, rate: number, seconds: number): Promise<ReadonlyArray<Ack>> => {
  const total = Math.round(rate * seconds)
  const pending: Array<Promise<Ack>> = []
  const started = performance.now()
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate))
      while (pending.length < due) pending.push(postEvent(agent, baseUrl))
      if (pending.length >= total) {
        clearInterval(timer)
        resolve()
      }
    }, 1)
  })
  return Promise.all(pending)
}

/** Closed-loop sender: `count` events through `concurrency` parallel keep-alive connections. */
const sendBurst = async (agent: Agent, baseUrl: string, count: number, concurrency: number): Promise<ReadonlyArray<Ack>> => {
  const acks: Array<Ack> = []
  let issued = 0
  const worker = async () => {
    while (issued < count) {
      issued += 1
      acks.push(await postEvent(agent, baseUrl))
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return acks
}

const acceptedIds = (acks: ReadonlyArray<Ack>) =>
  acks.flatMap((ack) => (ack.status === 200 && ack.bodyStatus === "accepted" && ack.eventId !== undefined ? [ack.eventId] : []))

/** Waits until the sink has every id, or the timeout; returns performance.now() of the last arrival seen. */
const drain = async (sink: Sink, ids: ReadonlyArray<string>, timeoutMs: number) => {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline && ids.some((id) => !sink.arrivals.has(id))) await sleep(20)
  return ids.filter((id) => sink.arrivals.has(id)).length
}

const percentile = (sorted: ArrayLike<number>, p: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

const sorted = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)

const describeAcks = (acks: ReadonlyArray<Ack>) => {
  const counts = new Map<string, number>()
  for (const ack of acks) counts.set(`${ack.status} ${ack.bodyStatus}`, (counts.get(`${ack.status} ${ack.bodyStatus}`) ?? 0) + 1)
  return describeAnswers(counts)
}

interface DeliveryMeasurement {
  readonly store: string
  readonly sent: number
  readonly acknowledged: number
  readonly delivered: number
  readonly duplicates: number
  readonly ackP50: number
  readonly ackP99: number
  readonly e2eP50: number
  readonly e2eP99: number
  readonly e2eMax: number
  /** Deliveries per second at the sink, seconds 2–9 of the paced run. */
  readonly steadyRate: number
  /** Server CPU (ms) per event acknowledged in the paced run, from its first send to the end of its drain. */
  readonly cpuPerEvent: number | undefined
  readonly burstAcknowledged: number
  readonly burstDelivered: number
  readonly burstSeconds: number
  readonly peakRssKiB: number | undefined
}

const runDelivery = async (store: string, storeUrl: string, directory: string): Promise<DeliveryMeasurement | undefined> => {
  const label = `kyc-relay delivery on ${store}`
  const sink = await startSink()
  cleanups.push(sink.close)
  const extra = [
    "plugins:",
    "  sink:",
    "    use: webhook",
    `    url: http://${HOST}:${sink.port}${SINK_PATH}`,
    "    concurrency: 8",
    "routes:",
    "  - to: sink",
    "dispatch:",
    "  poll_interval: 200ms"
  ]
  const server = productTarget(label, store, storeUrl, directory, extra, `delivery-${store.toLowerCase()}`).start(await freePort())
  cleanups.push(() => stopServer(server))
  try {
    await waitReady(server)
  } catch (error) {
    warn(`${label}: ${(error as Error).message}; skipped. Last server output:\n${server.output().tail}`)
    await stopServer(server)
    return undefined
  }
  const agent = new Agent({ keepAlive: true, maxSockets: 256 })
  cleanups.push(async () => agent.destroy())

  note(`${label}: ready at ${server.url} (pid ${server.child.pid}), sink on port ${sink.port}; warm-up ${DELIVERY_WARMUP_SECONDS} s at ${DELIVERY_RATE}/s`)
  const warmupIds = acceptedIds(await sendPaced(agent, server.url, DELIVERY_RATE, DELIVERY_WARMUP_SECONDS))
  await drain(sink, warmupIds, DRAIN_TIMEOUT_MS)

  note(`${label}: ${DELIVERY_RATE} events/s for ${DELIVERY_SECONDS} s`)
  const pacedStarted = performance.now()
  const cpuBefore = cpuSeconds(server.child.pid)
  const acks = await sendPaced(agent, server.url, DELIVERY_RATE, DELIVERY_SECONDS)
  const ids = acceptedIds(acks)
  const delivered = await drain(sink, ids, DRAIN_TIMEOUT_MS)
  const cpuAfter = cpuSeconds(server.child.pid)
  const cpuPerEvent = cpuBefore === undefined || cpuAfter === undefined || ids.length === 0
    ? undefined
    : (1000 * (cpuAfter - cpuBefore)) / ids.length
  const starts = new Map(acks.flatMap((ack) => (ack.eventId === undefined ? [] : [[ack.eventId, ack.start] as const])))
  const e2e = sorted(ids.flatMap((id) => {
    const arrived = sink.arrivals.get(id)
    return arrived === undefined ? [] : [arrived - starts.get(id)!]
  }))
  const ackTimes = sorted(acks.filter((ack) => ack.status === 200).map((ack) => ack.ackMs))
  const steadyFrom = pacedStarted + 2_000
  const steadyTo = pacedStarted + 9_000
  const steadyCount = ids.filter((id) => {
    const arrived = sink.arrivals.get(id)
    return arrived !== undefined && arrived >= steadyFrom && arrived < steadyTo
  }).length
  if (acks.length !== ids.length) warn(`${label}, paced run: not every request was accepted: ${describeAcks(acks)}`)
  if (delivered < ids.length) {
    warn(`DELIVERIES MISSING (${label}, paced run): ${ids.length - delivered} of ${ids.length} acknowledged events not at the sink ${DRAIN_TIMEOUT_MS / 1000} s after the last send`)
  }

  note(`${label}: burst of ${BURST_EVENTS} events, ${BURST_CONCURRENCY} connections`)
  const burstStarted = performance.now()
  const burstAcks = await sendBurst(agent, server.url, BURST_EVENTS, BURST_CONCURRENCY)
  const burstIds = acceptedIds(burstAcks)
  const burstDelivered = await drain(sink, burstIds, BURST_TIMEOUT_MS)
  const lastArrival = Math.max(...burstIds.map((id) => sink.arrivals.get(id) ?? Number.NEGATIVE_INFINITY))
  if (burstAcks.length !== burstIds.length) warn(`${label}, burst: not every request was accepted: ${describeAcks(burstAcks)}`)
  if (burstDelivered < burstIds.length) {
    warn(`DELIVERIES MISSING (${label}, burst): ${burstIds.length - burstDelivered} of ${burstIds.length} acknowledged events not at the sink within ${BURST_TIMEOUT_MS / 1000} s`)
  }
  if (sink.duplicates() > 0) warn(`${label}: the sink received ${sink.duplicates()} duplicate deliveries`)

  const rss = peakRssKiB(server.child.pid)
  const crashed = server.exitInfo()
  if (crashed !== undefined) warn(`${label}: the server exited during the run (${crashed})`)
  agent.destroy()
  await stopServer(server)
  await sink.close()
  const { lines, tail } = server.output()
  if (lines > 0) note(`${label}: server wrote ${lines} log line(s); last ones:\n${tail}`)

  return {
    store,
    sent: acks.length,
    acknowledged: ids.length,
    delivered,
    duplicates: sink.duplicates(),
    ackP50: percentile(ackTimes, 50),
    ackP99: percentile(ackTimes, 99),
    e2eP50: percentile(e2e, 50),
    e2eP99: percentile(e2e, 99),
    e2eMax: e2e.length === 0 ? Number.NaN : e2e[e2e.length - 1]!,
    steadyRate: steadyCount / ((steadyTo - steadyFrom) / 1000),
    cpuPerEvent,
    burstAcknowledged: burstIds.length,
    burstDelivered,
    burstSeconds: (lastArrival - burstStarted) / 1000,
    peakRssKiB: rss
  }
}

const deliveryReport = (rows: ReadonlyArray<DeliveryMeasurement>): ReadonlyArray<string> => {
  if (rows.length === 0) return []
  const f1 = (value: number) => (Number.isFinite(value) ? value.toFixed(1) : "n/a")
  return [
    "",
    row([
      "Store", "Sent", "Acked", "Delivered", "Ack p50 ms", "Ack p99 ms", "E2E p50 ms", "E2E p99 ms", "E2E max ms",
      "Steady deliveries/s", "Server CPU ms/event", `Burst ${BURST_EVENTS}: delivered`, "Burst s", "Burst deliveries/s", "Peak RSS MiB"
    ]),
    row(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ...rows.map((m) =>
      row([
        m.store,
        String(m.sent),
        String(m.acknowledged),
        String(m.delivered),
        f1(m.ackP50),
        f1(m.ackP99),
        f1(m.e2eP50),
        f1(m.e2eP99),
        f1(m.e2eMax),
        m.steadyRate.toFixed(0),
        m.cpuPerEvent === undefined ? "n/a" : m.cpuPerEvent.toFixed(2),
        `${m.burstDelivered}/${m.burstAcknowledged}`,
        m.burstSeconds.toFixed(2),
        m.burstSeconds > 0 ? (m.burstDelivered / m.burstSeconds).toFixed(0) : "n/a",
        mib(m.peakRssKiB)
      ])
    ),
    "",
    `Delivery: kyc-relay with one \`webhook\` instance (concurrency 8, poll_interval 200ms) routed every event to a node:http sink in this process; ` +
      `${DELIVERY_WARMUP_SECONDS} s warm-up, then unique signed events at a fixed ${DELIVERY_RATE}/s for ${DELIVERY_SECONDS} s (open loop, keep-alive); ` +
      `E2E = sink arrival − send start per \`${EVENT_ID_HEADER}\`, drained ≤ ${DRAIN_TIMEOUT_MS / 1000} s; steady = sink arrivals in seconds 2–9; ` +
      `server CPU = user + system time of the server from the paced run's first send to the end of its drain, per event; ` +
      `burst = ${BURST_EVENTS} events over ${BURST_CONCURRENCY} connections, first send → last delivery. Peak RSS: VmHWM of the server after both phases.`
  ]
}

// ---------------------------------------------------------------------------------------------- output

const mib = (kib: number | undefined) => (kib === undefined ? "n/a" : (kib / 1024).toFixed(0))

const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(1) : "n/a")

const rate = (measurement: Measurement) => measurement.measured.result.rate

const row = (cells: ReadonlyArray<string>) => `| ${cells.join(" | ")} |`

const tableRow = (measurement: Measurement, baselineRate: number): string => {
  const { result } = measurement.measured
  return row([
    measurement.kind === "product" ? "kyc-relay" : measurement.label,
    measurement.store,
    rate(measurement).toFixed(0),
    ms(percentile(result.latencies, 50)),
    ms(percentile(result.latencies, 99)),
    String(result.answered - non2xx(result)),
    String(non2xx(result)),
    String(result.errors),
    baselineRate > 0 ? (rate(measurement) / baselineRate).toFixed(2) : "n/a",
    mib(measurement.peakRssKiB),
    measurement.serverCpu === undefined ? "n/a" : measurement.serverCpu.toFixed(0),
    measurement.clientCpu.toFixed(0)
  ])
}

const DRIFT_NOTE_THRESHOLD = 0.2

/** The baseline brackets the product runs; if it moved, the machine's speed changed under the product too. */
const driftNote = (baselines: ReadonlyArray<Measurement>): ReadonlyArray<string> => {
  if (baselines.length < 2) return []
  const rates = baselines.map(rate)
  const low = Math.min(...rates)
  const high = Math.max(...rates)
  return low > 0 && high / low - 1 > DRIFT_NOTE_THRESHOLD
    ? [
      `NOTE: the baseline runs differ by ${((high / low - 1) * 100).toFixed(0)}% (${rates.map((r) => r.toFixed(0)).join(" vs ")} req/s); ` +
        "this machine's speed changed during the run, so read the ratios with care or run again."
    ]
    : []
}

const commandLine = (): string => {
  const set = ["BENCH_DURATION", "BENCH_CONNECTIONS", "BENCH_PACED_RATE", "BENCH_ONLY", "BENCH_CPU_PROFILE"].filter((name) => (process.env[name] ?? "") !== "")
  return [...set.map((name) => `${name}=${process.env[name]}`), "npm run bench"].join(" ")
}

const printReport = (
  settings: Settings,
  measurements: ReadonlyArray<Measurement>,
  checks: ReadonlyArray<StoreCheck>,
  pgVersion: string | undefined,
  deliveries: ReadonlyArray<DeliveryMeasurement>
) => {
  const baselines = measurements.filter((m) => m.kind === "baseline")
  const baselineRate = baselines.length === 0 ? 0 : baselines.reduce((sum, m) => sum + rate(m), 0) / baselines.length
  const lines: Array<string> = measurements.length === 0 ? [] : [
    "",
    row([
      "Target", "Store", "Req/s (avg)", "p50 ms", "p99 ms", "2xx", "Non-2xx", "Errors", "vs baseline", "Peak RSS MiB",
      "Server CPU %", "Client CPU %"
    ]),
    row(["---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ...measurements.map((m) => tableRow(m, baselineRate))
  ]
  if (baselines.length > 1) {
    lines.push(row([`baseline, mean of ${baselines.length} runs`, "none", baselineRate.toFixed(0), "", "", "", "", "", "1.00", "", "", ""]))
  }
  if (measurements.length > 0) {
    lines.push(
      "",
      row(["Target", "Store", `Fixed rate req/s`, "Answered/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "Non-2xx", "Errors"]),
      row(["---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]),
      ...measurements.map((m) => {
        const { result } = m.paced
        return row([
          m.kind === "product" ? "kyc-relay" : m.label,
          m.store,
          String(settings.pacedRate),
          result.rate.toFixed(0),
          ms(percentile(result.latencies, 50)),
          ms(percentile(result.latencies, 99)),
          ms(percentile(result.latencies, 99.9)),
          ms(result.latencies.length === 0 ? Number.NaN : result.latencies[result.latencies.length - 1]!),
          String(non2xx(result)),
          String(result.errors)
        ])
      })
    )
  }
  const cpu = cpus()
  lines.push(
    "",
    `Baseline: bare node:http, header HMAC check + JSON.parse, no storage. "vs baseline" divides by the mean of the baseline runs.`,
    "Durable floor: the baseline plus one row per webhook (unique key, body) in SQLite, group-committed on a writer thread " +
      "that fsyncs the WAL before answering, as kyc-relay's does; nothing else (bench/floor.ts).",
    "Latency: from writing a request to reading its whole answer. Peak RSS: VmHWM of the server process.",
    "CPU %: user + system time during the measured run, 100 = one core; the client is the load generator in this process (bench/load.ts).",
    `Load: closed loop over ${settings.connections} keep-alive connections, ${WARMUP_SECONDS} s warm-up then ${settings.seconds} s measured per target, ` +
      `a unique signed VKYC_USER_CALL_QUEUED event per request; load generator on the same machine. ` +
      `Then ${settings.seconds} s at a fixed ${settings.pacedRate} req/s over the same connections (open loop: each request goes out ` +
      `when it falls due on a free connection, and its latency counts from when it fell due).`,
    `Machine: ${cpu[0]?.model.trim() ?? "unknown CPU"}, ${cpu.length} cores, ${(totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, ` +
      `Node ${process.version}, ${platform()} ${release()}${pgVersion === undefined ? "" : `, PostgreSQL ${pgVersion}`}`,
    `Command: ${commandLine()}`
  )
  for (const check of checks) {
    lines.push(
      `Store check (${check.label}): ${check.stored} rows, ${check.acknowledged} acknowledged (warm-up and both runs), ` +
        `${check.missing} acknowledged but missing, ${check.extra} stored from requests still in flight when the load stopped ` +
        `(≤ ${check.unanswered} unanswered) — ${check.ok ? "OK" : "MISMATCH"}`
    )
  }
  lines.push(...skipped, ...driftNote(baselines))
  lines.push(...deliveryReport(deliveries))
  if (warnings.length > 0) lines.push("", "WARNINGS:", ...warnings.map((w) => `- ${w}`))
  console.log(lines.join("\n"))
}

// ---------------------------------------------------------------------------------------------- main

const runPostgres = async (
  settings: Settings,
  directory: string,
  measurements: Array<Measurement>,
  checks: Array<StoreCheck>
): Promise<string | undefined> => {
  const version = await postgresVersion()
  if (version === undefined) return undefined
  const database = `kyc_relay_bench_${randomBytes(4).toString("hex")}`
  await psql(PG.adminDatabase, `CREATE DATABASE ${database}`)
  let dropped = false
  const drop = async () => {
    if (dropped) return
    dropped = true
    await psql(PG.adminDatabase, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
    note(`dropped database ${database}`)
  }
  cleanups.push(drop)
  const url = `postgres://${PG.user}@${PG.host}:${PG.port}/${database}`
  const measurement = await runTarget(productTarget("kyc-relay on PostgreSQL", "PostgreSQL", url, directory), settings)
  if (measurement !== undefined) {
    measurements.push(measurement)
    const { count, ids } = await postgresContents(database)
    checks.push(checkStore("PostgreSQL", count, ids, measurement))
  }
  // Now rather than at exit, so the database is gone before the second baseline run.
  await drop()
  return version
}

const main = async () => {
  const settings = readSettings()
  const directory = mkdtempSync(join(tmpdir(), "kyc-relay-bench-"))
  cleanups.push(async () => rmSync(directory, { recursive: true, force: true }))
  const measurements: Array<Measurement> = []
  const checks: Array<StoreCheck> = []
  const keep = (measurement: Measurement | undefined) => {
    if (measurement !== undefined) measurements.push(measurement)
    return measurement
  }

  let pgVersion: string | undefined
  if (settings.phases.has("ingest")) {
    keep(await runTarget(baselineTarget("baseline, run 1"), settings))

    const floorFile = join(directory, "floor.db")
    const floor = keep(await runTarget(floorTarget(floorFile), settings))
    if (floor !== undefined) {
      const { count, ids } = sqliteContents(floorFile)
      checks.push(checkStore("durable floor", count, ids, floor))
    }

    const sqliteFile = join(directory, "bench.db")
    const sqlite = keep(await runTarget(productTarget("kyc-relay on SQLite", "SQLite", `sqlite:${sqliteFile}`, directory), settings))
    if (sqlite !== undefined) {
      const { count, ids } = sqliteContents(sqliteFile)
      checks.push(checkStore("SQLite", count, ids, sqlite))
    }

    pgVersion = await runPostgres(settings, directory, measurements, checks)

    keep(await runTarget(baselineTarget("baseline, run 2"), settings))
  } else {
    pgVersion = await postgresVersion()
  }

  const deliveries: Array<DeliveryMeasurement> = []
  if (settings.phases.has("delivery")) {
    const delivery = await runDelivery("SQLite", `sqlite:${join(directory, "delivery.db")}`, directory)
    if (delivery !== undefined) deliveries.push(delivery)
    if (pgVersion !== undefined) {
      const database = `kyc_relay_bench_delivery_${randomBytes(4).toString("hex")}`
      await psql(PG.adminDatabase, `CREATE DATABASE ${database}`)
      cleanups.push(async () => {
        await psql(PG.adminDatabase, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
        note(`dropped database ${database}`)
      })
      const pg = await runDelivery("PostgreSQL", `postgres://${PG.user}@${PG.host}:${PG.port}/${database}`, directory)
      if (pg !== undefined) deliveries.push(pg)
    }
  }

  printReport(settings, measurements, checks, pgVersion, deliveries)
}

const interrupted = (signal: NodeJS.Signals) => {
  note(`${signal}: cleaning up`)
  void runCleanups().finally(() => process.exit(130))
}
process.once("SIGINT", interrupted)
process.once("SIGTERM", interrupted)

let exitCode = 0
try {
  await main()
  // Any loud warning (non-2xx, store mismatch, a server that did not start) fails the run.
  if (warnings.length > 0) exitCode = 1
} catch (error) {
  console.error(`[bench] failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
  exitCode = 1
} finally {
  await runCleanups()
}
// Servers' pipes and the sink's sockets may linger; do not wait for them.
process.exit(exitCode)
