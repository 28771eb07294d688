import { ParseResult } from "effect"

/** One failing field of a decoded document, as `data.reference_id`. */
export interface Issue {
  readonly path: ReadonlyArray<PropertyKey>
  readonly tag: string
  readonly message: string
}

/**
 * Flattens a Schema error into one line per failing field. Schema's messages end with ", actual <value>":
 * that part is cut because the value may be a secret (config) or personal data (webhooks).
 */
export const issuesOf = (error: ParseResult.ParseError): ReadonlyArray<Issue> =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => ({
    path: issue.path,
    tag: issue._tag,
    message: issue.message.replace(/, actual [\s\S]*$/, "").replace(/^Expected /, "expected ")
  }))

export const pathText = (path: ReadonlyArray<PropertyKey>) => path.map(String).join(".")
