/**
 * The ingest bench's load generator over `connections` keep-alive HTTP/1.1 connections, each with one request
 * in flight. Without a `rate` it is a closed loop: the next request is written as soon as the previous answer is
 * in, which measures the most the server can take. With a `rate` it is an open loop: requests fall due on a fixed
 * schedule and go out on whichever connection is free, and a request's latency counts from when it fell due, so
 * that time spent waiting for a free connection is not hidden (no coordinated omission). Raw `node:net`
 * sockets and a reader that knows only what a `Content-Length` answer needs, because the client shares the
 * machine with the server it measures: autocannon spent ~150–190 µs of CPU per request here, as much as the
 * baseline server itself, and took that time from the server's threads; this spends ~85 µs, most of it making
 * and signing each fresh event. Latencies are kept to the microsecond.
 */
import { connect, type Socket } from "node:net"

export interface LoadOptions {
  readonly host: string
  readonly port: number
  readonly connections: number
  readonly seconds: number
  /** The next request, whole: request line, headers and body. */
  readonly request: () => string
  /** Every answer, in the order they arrive. */
  readonly onAnswer: (status: number, body: string) => void
  /** An unanswered request counts as an error after this long; its connection is replaced. */
  readonly timeoutMs?: number
  /** Requests per second on a fixed schedule (open loop); without it, as many as the server answers. */
  readonly rate?: number
}

export interface LoadResult {
  /** Answers received within `seconds`, per second. */
  readonly rate: number
  /** Every answer's status, including those that came in after `seconds` for requests already written. */
  readonly statuses: ReadonlyMap<number, number>
  /** Requests that failed after they were written (timeouts, resets, unreadable answers), and refused connections. */
  readonly errors: number
  readonly written: number
  readonly answered: number
  /** With a `rate`: requests that fell due but found no free connection before the end. */
  readonly unwritten: number
  /** Milliseconds from writing a request (with a `rate`: from when it fell due) to reading its whole answer, sorted. */
  readonly latencies: Float64Array
}

const HEAD_END = Buffer.from("\r\n\r\n")
const LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i
/** After `seconds`, how long answers to requests already written are waited for. */
const DRAIN_MS = 5_000
const RECONNECT_PAUSE_MS = 100

/** How often an open loop looks at its schedule. */
const TICK_MS = 1

export const runLoad = (options: LoadOptions): Promise<LoadResult> =>
  new Promise((resolve) => {
    const timeoutMs = options.timeoutMs ?? 10_000
    const statuses = new Map<number, number>()
    let latencies = new Float64Array(1 << 16)
    let answered = 0
    let answeredInTime = 0
    let written = 0
    let errors = 0
    let stopping = false
    let finished = false
    const started = performance.now()
    const open = new Set<Socket>()
    // Open loop: the times at which requests fell due and not yet written, and the connections waiting for one.
    const due: Array<number> = []
    const idle: Array<() => void> = []
    let scheduled = 0
    let unwrittenAtStop = 0

    const finish = () => {
      if (finished) return
      finished = true
      clearTimeout(drainTimer)
      clearInterval(ticker)
      // Requests still unanswered now count as neither answers nor errors.
      const left = [...open]
      open.clear()
      for (const socket of left) socket.destroy()
      resolve({
        rate: answeredInTime / options.seconds,
        statuses,
        errors,
        written,
        answered,
        unwritten: unwrittenAtStop,
        latencies: latencies.subarray(0, answered).sort()
      })
    }

    const record = (status: number, ms: number, inTime: boolean) => {
      if (answered === latencies.length) {
        const grown = new Float64Array(latencies.length * 2)
        grown.set(latencies)
        latencies = grown
      }
      latencies[answered++] = ms
      if (inTime) answeredInTime++
      statuses.set(status, (statuses.get(status) ?? 0) + 1)
    }

    const connection = () => {
      const socket = connect(options.port, options.host)
      socket.setNoDelay(true)
      open.add(socket)
      let buffered: Buffer | undefined
      let sentAt = 0
      let waiting = false
      let timer: NodeJS.Timeout | undefined

      const next = () => {
        if (stopping) {
          open.delete(socket)
          socket.end()
          if (open.size === 0) finish()
          return
        }
        if (options.rate !== undefined && due.length === 0) {
          idle.push(next)
          return
        }
        const request = options.request()
        sentAt = options.rate === undefined ? performance.now() : due.shift()!
        waiting = true
        written++
        timer = setTimeout(() => fail(), timeoutMs)
        socket.write(request)
      }
      // The request in flight (or the connection) failed: count it and carry on with a new connection, so the load
      // stays the same; a refused connection is tried again after a pause rather than at once.
      const fail = () => {
        clearTimeout(timer)
        if (!open.delete(socket)) return
        const waitingAt = idle.indexOf(next)
        if (waitingAt !== -1) idle.splice(waitingAt, 1)
        if (waiting || !connected) errors++
        socket.destroy()
        if (stopping) {
          if (open.size === 0) finish()
        } else if (connected) connection()
        else setTimeout(() => (stopping ? open.size === 0 && finish() : connection()), RECONNECT_PAUSE_MS)
      }

      let connected = false
      socket.on("connect", () => {
        connected = true
        next()
      })
      socket.on("data", (chunk: Buffer) => {
        buffered = buffered === undefined ? chunk : Buffer.concat([buffered, chunk])
        const headEnd = buffered.indexOf(HEAD_END)
        if (headEnd === -1) return
        const head = buffered.toString("latin1", 0, headEnd)
        const length = LENGTH.exec(head)
        if (length === null || !head.startsWith("HTTP/1.1 ")) return fail()
        const end = headEnd + HEAD_END.length + Number(length[1])
        if (buffered.length < end) return
        if (buffered.length > end) return fail() // nothing was asked for beyond this answer
        const text = buffered.toString("utf8", headEnd + HEAD_END.length, end)
        buffered = undefined
        clearTimeout(timer)
        waiting = false
        const status = Number(head.slice(9, 12))
        const now = performance.now()
        record(status, now - sentAt, !stopping)
        options.onAnswer(status, text)
        if (/\r\nconnection:[ \t]*close/i.test(head)) return fail()
        next()
      })
      socket.on("error", fail)
      socket.on("close", fail)
    }

    for (let i = 0; i < options.connections; i++) connection()
    const rate = options.rate
    const ticker = rate === undefined ? undefined : setInterval(() => {
      if (stopping) return
      const elapsed = performance.now() - started
      for (; scheduled < Math.floor((elapsed / 1000) * rate); scheduled++) due.push(started + (scheduled * 1000) / rate)
      while (due.length > 0 && idle.length > 0) idle.shift()!()
    }, TICK_MS)
    let drainTimer: NodeJS.Timeout | undefined
    setTimeout(() => {
      stopping = true
      clearInterval(ticker)
      // Idle connections have nothing in flight; requests that fell due but were never written are not counted.
      for (const wake of idle.splice(0)) wake()
      unwrittenAtStop = due.length
      drainTimer = setTimeout(finish, DRAIN_MS)
      // Connections still connecting have nothing in flight.
      if (open.size === 0) finish()
    }, Math.max(0, options.seconds * 1000 - (performance.now() - started)))
  })
