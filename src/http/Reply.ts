import type { FieldProblem } from "../domain/Decode.js"

/** What an HTTP handler answers; the server turns it into bytes. */
export interface Reply {
  readonly status: number
  readonly body: unknown
  readonly contentType: "application/json" | "application/problem+json"
  readonly headers?: Readonly<Record<string, string>>
  /** The `reason` label the metrics give a stored outcome (why it was quarantined). */
  readonly reason?: string
}


export const json = (status: number, body: unknown): Reply => ({ status, body, contentType: "application/json" })

/** RFC 9457 problem details. `detail` never echoes the payload: it may hold personal data. */
export const problem = (
  status: number,
  type: string,
  title: string,
  detail: string,
  extra: { readonly errors?: ReadonlyArray<FieldProblem>; readonly headers?: Readonly<Record<string, string>> } = {}
): Reply => ({
  status,
  contentType: "application/problem+json",
  body: { type, title, status, detail, ...(extra.errors ? { errors: extra.errors } : {}) },
  ...(extra.headers ? { headers: extra.headers } : {})
})
