import { FileSystem } from "@effect/platform"
import { Array as Arr, Config, Context, Data, Effect, Either, Layer, Option, Schema } from "effect"
import { isMap, isScalar, isSeq, LineCounter, parseDocument, parse as parseYaml, visit, type Document, type Node } from "yaml"
import { issuesOf, pathText } from "../domain/Issues.js"
import { DEFAULT_CONFIG_PATH, RelayConfig } from "./RelayConfig.js"

export interface ConfigProblem {
  readonly line: number | undefined
  readonly column: number | undefined
  readonly key: string
  readonly message: string
}

/** The configuration file cannot be used; `message` names the file, line, key and what would be valid. */
export class ConfigInvalid extends Data.TaggedError("ConfigInvalid")<{
  readonly file: string
  readonly problems: ReadonlyArray<ConfigProblem>
}> {
  override get message() {
    return this.problems
      .map((p) => `${this.file}${p.line === undefined ? "" : `:${p.line}:${p.column}`}${p.key === "" ? "" : ` ${p.key}`}: ${p.message}`)
      .join("\n")
  }
}

/** The decoded configuration and the file it came from. */
export class Settings extends Context.Tag("kyc-relay/Settings")<Settings, {
  readonly file: string
  readonly config: RelayConfig
}>() {}

const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

/**
 * Replaces `${VAR}` and `${VAR:-default}` inside string scalars. An unquoted scalar is then read again as
 * YAML would read it typed in place (so `port: ${PORT:-8080}` is a number); quote a value to keep it a string.
 */
const interpolate = (doc: Document, lines: LineCounter, file: string) =>
  Effect.gen(function*() {
    const replacements: Array<Effect.Effect<void, ConfigInvalid>> = []
    visit(doc, {
      Scalar(_, node, path) {
        if (typeof node.value !== "string" || !node.value.includes("${")) return
        const source = node.value
        const plain = node.type === "PLAIN"
        const names = [...source.matchAll(REFERENCE)]
        replacements.push(
          Effect.forEach(names, ([, name, fallback]) =>
            Config.option(Config.string(name!)).pipe(
              Effect.orDie,
              Effect.flatMap(Option.match({
                onSome: Effect.succeed,
                onNone: () =>
                  fallback !== undefined
                    ? Effect.succeed(fallback)
                    : Effect.fail(new ConfigInvalid({
                      file,
                      problems: [{
                        ...position(lines, node.range?.[0]),
                        key: keyPathOf(path, node),
                        message: `environment variable ${name} is not set (set it, or write \${${name}:-default})`
                      }]
                    }))
              }))
            )).pipe(
              Effect.map((values) => {
                let i = 0
                const text = source.replace(REFERENCE, () => values[i++]!)
                const retyped = plain ? Either.try(() => parseYaml(text) as unknown) : Either.left(undefined)
                node.value = Either.isRight(retyped) && retyped.right !== null && typeof retyped.right !== "object"
                  ? retyped.right
                  : text
              })
            )
        )
      }
    })
    yield* Effect.all(replacements, { mode: "validate", discard: true }).pipe(
      Effect.mapError((errors) =>
        new ConfigInvalid({ file, problems: Arr.flatMap(Arr.getSomes(errors), (e) => e.problems) })
      )
    )
  })

const keyPathOf = (path: ReadonlyArray<unknown>, node: unknown): string => {
  const keys: Array<string> = []
  for (const [i, step] of path.entries()) {
    const next = path[i + 1] ?? node
    if (isMap(step)) {
      const pair = step.items.find((item) => item === next)
      if (pair && isScalar(pair.key)) keys.push(String(pair.key.value))
    } else if (isSeq(step)) {
      const index = step.items.indexOf(next as never)
      if (index >= 0) keys.push(String(index))
    }
  }
  return keys.join(".")
}

const position = (lines: LineCounter, offset: number | undefined) => {
  if (offset === undefined) return { line: undefined, column: undefined }
  const { line, col } = lines.linePos(offset)
  return { line, column: col }
}

/** The deepest node on `path` that exists; for a key that is there but should not be, the key itself. */
const locate = (doc: Document, path: ReadonlyArray<PropertyKey>): number | undefined => {
  let node: unknown = doc.contents
  let offset = (doc.contents as Node | null)?.range?.[0]
  for (const step of path) {
    if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(step))
      if (pair === undefined) break
      offset = (pair.key as Node).range?.[0] ?? offset
      node = pair.value
    } else if (isSeq(node)) {
      const item = node.items[Number(step)] as Node | undefined
      if (item === undefined) break
      offset = item.range?.[0] ?? offset
      node = item
    } else {
      break
    }
  }
  return offset
}

export const parseConfigText = (text: string, file: string) =>
  Effect.gen(function*() {
    const lines = new LineCounter()
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true })
    if (doc.errors.length > 0) {
      return yield* new ConfigInvalid({
        file,
        problems: doc.errors.map((error) => ({
          ...position(lines, error.pos[0]),
          key: "",
          message: error.message.split("\n")[0]!
        }))
      })
    }
    yield* interpolate(doc, lines, file)
    return yield* Schema.decodeUnknown(RelayConfig, { errors: "all", onExcessProperty: "error" })(doc.toJS() ?? {}).pipe(
      Effect.mapError((error) =>
        new ConfigInvalid({
          file,
          problems: issuesOf(error).map((issue) => ({
            ...position(lines, locate(doc, issue.path)),
            key: pathText(issue.path),
            message: issue.tag === "Unexpected"
              ? `unknown key; ${issue.message.replace(/^is unexpected, expected: /, "expected one of ")}`
              : issue.message
          }))
        })
      )
    )
  })

export const loadConfigFile = (file: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(file).pipe(
      Effect.mapError(() =>
        new ConfigInvalid({
          file,
          problems: [{ line: undefined, column: undefined, key: "", message: "cannot read this file (pass --config FILE or set KYC_RELAY_CONFIG)" }]
        })
      )
    )
    return yield* parseConfigText(text, file)
  })

/** `--config` wins, then `KYC_RELAY_CONFIG`, then the default path. */
export const resolveConfigPath = (flag: Option.Option<string>) =>
  Option.match(flag, {
    onSome: Effect.succeed,
    onNone: () => Config.string("KYC_RELAY_CONFIG").pipe(Config.withDefault(DEFAULT_CONFIG_PATH), Effect.orDie)
  })

export const layer = (flag: Option.Option<string>) =>
  Layer.effect(
    Settings,
    Effect.gen(function*() {
      const file = yield* resolveConfigPath(flag)
      const config = yield* loadConfigFile(file)
      return { file, config }
    })
  )
