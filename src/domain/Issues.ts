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
export const issuesOf = (error: ParseResult.ParseError): ReadonlyArray<Issue> => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => ({
    path: issue.path,
    tag: issue._tag,
    message: issue.message.replace(/, actual [\s\S]*$/, "").replace(/^Expected /, "expected ")
  }))
  // An optional field also reports that the value is not "undefined": noise next to the real problem.
  const relevant = issues.filter((issue) =>
    issue.message !== "expected undefined" ||
    !issues.some((other) => other !== issue && issue.path.every((step, i) => other.path[i] === step))
  )
  // A union whose members fail differently: a message written for the field beats the generic ones.
  const specific = relevant.filter((issue) =>
    !issue.message.startsWith("expected ") ||
    !relevant.some((other) => pathText(other.path) === pathText(issue.path) && !other.message.startsWith("expected "))
  )
  // A union reports one "expected X" per member at the same path; say it once as "expected X | Y".
  const merged: Array<Issue> = []
  for (const issue of specific) {
    const previous = merged.at(-1)
    if (
      previous !== undefined && previous.tag === "Type" && issue.tag === "Type" &&
      pathText(previous.path) === pathText(issue.path) && issue.message.startsWith("expected ")
    ) {
      merged[merged.length - 1] = { ...previous, message: `${previous.message} | ${issue.message.slice(9)}` }
    } else {
      merged.push(issue)
    }
  }
  return merged
}

export const pathText = (path: ReadonlyArray<PropertyKey>) => path.map(String).join(".")
