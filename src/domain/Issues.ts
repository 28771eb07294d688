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
/** Enough to fix a document; an adversarial one can fail in a hundred thousand places. */
export const MAX_ISSUES = 50

export const issuesOf = (error: ParseResult.ParseError): ReadonlyArray<Issue> => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => ({
    path: issue.path,
    key: pathText(issue.path),
    tag: issue._tag,
    message: issue.message.replace(/, actual [\s\S]*$/, "").replace(/^Expected /, "expected ")
  }))
  // How many issues sit at or below each path, and which paths have a message written for the field.
  const below = new Map<string, number>()
  const custom = new Set<string>()
  for (const issue of issues) {
    for (let i = 0; i <= issue.path.length; i++) {
      const prefix = pathText(issue.path.slice(0, i))
      below.set(prefix, (below.get(prefix) ?? 0) + 1)
    }
    if (!issue.message.startsWith("expected ")) custom.add(issue.key)
  }
  const merged: Array<Issue & { readonly key: string }> = []
  for (const issue of issues) {
    // An optional field also reports that the value is not "undefined": noise next to the real problem.
    if (issue.message === "expected undefined" && below.get(issue.key)! > 1) continue
    // A union whose members fail differently: a message written for the field beats the generic ones.
    if (issue.message.startsWith("expected ") && custom.has(issue.key)) continue
    // A union reports one "expected X" per member at the same path; say it once as "expected X | Y".
    const previous = merged.at(-1)
    if (
      previous !== undefined && previous.tag === "Type" && issue.tag === "Type" && previous.key === issue.key &&
      issue.message.startsWith("expected ")
    ) {
      merged[merged.length - 1] = { ...previous, message: `${previous.message} | ${issue.message.slice(9)}` }
    } else if (merged.length < MAX_ISSUES) {
      merged.push(issue)
    }
  }
  return merged.map(({ message, path, tag }) => ({ path, tag, message }))
}

export const pathText = (path: ReadonlyArray<PropertyKey>) => path.map(String).join(".")
