// autocannon 8 ships no types; this covers only what bench/ingest.ts uses.
declare module "autocannon" {
  namespace autocannon {
    interface Request {
      readonly method?: string
      readonly path?: string
      readonly headers?: Record<string, string>
      readonly body?: string | Buffer
      /** Called before every request on a connection; the returned object is what gets sent. */
      readonly setupRequest?: (request: Request, context: Record<string, unknown>) => Request
      readonly onResponse?: (status: number, body: string, context: Record<string, unknown>) => void
    }

    interface Options {
      readonly url: string
      readonly connections?: number
      /** Seconds. */
      readonly duration?: number
      /** Seconds before a request counts as timed out. */
      readonly timeout?: number
      readonly requests?: ReadonlyArray<Request>
    }

    interface Stats {
      readonly average: number
      readonly mean: number
      readonly stddev: number
      readonly min: number
      readonly max: number
      readonly p50: number
      readonly p90: number
      readonly p99: number
      readonly total?: number
    }

    interface Result {
      /** Latencies in milliseconds. */
      readonly latency: Stats
      /** Requests per second sampled each second; `total` completed, `sent` written. */
      readonly requests: Stats & { readonly total: number; readonly sent: number }
      readonly duration: number
      readonly errors: number
      readonly timeouts: number
      readonly non2xx: number
      readonly "2xx": number
      readonly statusCodeStats: Record<string, { readonly count: number }>
    }

    interface Instance extends PromiseLike<Result> {
      stop(): void
    }
  }

  function autocannon(options: autocannon.Options): autocannon.Instance

  export = autocannon
}
