/**
 * The ingest bench's load generator: a closed loop over `connections` keep-alive HTTP/1.1 connections, each
 * with one request in flight and the next one written as soon as the previous answer is in. Raw `node:net`
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
  /** Milliseconds from writing a request to reading its whole answer, sorted. */
  readonly latencies: Float64Array
}

const HEAD_END = Buffer.from("\r\n\r\n")
const LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i
/** After `seconds`, how long answers to requests already written are waited for. */
const DRAIN_MS = 5_000
const RECONNECT_PAUSE_MS = 100

export const closedLoop = (options: LoadOptions): Promise<LoadResult> =>
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

    const finish = () => {
      if (finished) return
      finished = true
      clearTimeout(drainTimer)
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
        const request = options.request()
        sentAt = performance.now()
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
    let drainTimer: NodeJS.Timeout | undefined
    setTimeout(() => {
      stopping = true
      drainTimer = setTimeout(finish, DRAIN_MS)
      // Connections still connecting have nothing in flight.
      if (open.size === 0) finish()
    }, Math.max(0, options.seconds * 1000 - (performance.now() - started)))
  })
