import * as FileSystem from "@effect/platform/FileSystem"
import { Array as Arr, Config, Context, Data, Duration, Effect, Either, Layer, Option, type ParseResult, Schema } from "effect"
import picomatch from "picomatch"
import { isMap, isScalar, isSeq, LineCounter, parseDocument, parse as parseYaml, visit, type Document, type Node } from "yaml"
import { issuesOf, pathText } from "../domain/Issues.js"
import { EVENT_TYPES, isKnownEventType } from "../domain/Event.js"
import { type InstanceSpec, resolvePlugin } from "../plugin/Registry.js"
import { DEFAULT_CONFIG_PATH, HOST_KEYS, InstanceHostSettings, RelayConfig } from "./RelayConfig.js"
import { didYouMean } from "./Suggest.js"

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

/** A validated configuration: the file it came from, its values, and its plugin instances ready to build. */
export interface Loaded {
  readonly file: string
  readonly config: RelayConfig
  readonly instances: ReadonlyMap<string, InstanceSpec>
  /** Instances left out because environment variables they need are not set: name → reason. */
  readonly disabled: ReadonlyMap<string, string>
}

/** The configuration the process started with. */
export class Settings extends Context.Tag("kyc-relay/Settings")<Settings, Loaded>() {}

const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

/**
 * Replaces `${VAR}` and `${VAR:-default}` inside string scalars. An unquoted scalar that then reads as a number
 * or a boolean becomes one (so `port: ${PORT:-8080}` is a number); quote a value to keep it a string.
 * An unset variable is an error, except inside a plugin instance: that instance is returned as unusable, so
 * a configuration with, say, a Slack instance still starts where no Slack token is set.
 */
/** A plugin instance's variables that are not set, and the settings (`headers.authorization`) that use them. */
interface Unset {
  readonly names: Set<string>
  readonly settings: Set<string>
}

const interpolate = (doc: Document, lines: LineCounter, file: string) =>
  Effect.gen(function*() {
    const replacements: Array<Effect.Effect<void, ConfigInvalid>> = []
    const unset = new Map<string, Unset>()
    visit(doc, {
      Scalar(_, node, path) {
        if (typeof node.value !== "string" || !node.value.includes("${")) return
        const source = node.value
        const plain = node.type === "PLAIN"
        const names = [...source.matchAll(REFERENCE)]
        const keys = keyPathOf(path, node)
        const key = keys.join(".")
        // An instance name may itself hold dots (crm.eu).
        const instance = keys[0] === "plugins" && keys.length > 2 ? keys[1] : undefined
        replacements.push(
          Effect.forEach(names, ([, name, fallback]) =>
            Config.option(Config.string(name!)).pipe(
              Effect.orDie,
              Effect.flatMap(Option.match({
                onSome: Effect.succeed,
                onNone: () => {
                  if (fallback !== undefined) return Effect.succeed(fallback)
                  if (instance !== undefined) {
                    const entry = unset.get(instance) ?? { names: new Set<string>(), settings: new Set<string>() }
                    entry.names.add(name!)
                    entry.settings.add(keys.slice(2).join("."))
                    unset.set(instance, entry)
                    return Effect.succeed("")
                  }
                  return Effect.fail(
                    new ConfigInvalid({
                      file,
                      problems: [{
                        ...position(lines, node.range?.[0]),
                        key,
                        message: `environment variable ${name} is not set (set it, or write \${${name}:-default})`
                      }]
                    })
                  )
                }
              }))
            )).pipe(
              Effect.map((values) => {
                let i = 0
                const text = source.replace(REFERENCE, () => values[i++]!)
                // Only a number or a boolean takes YAML's reading; any other value stays exactly as substituted, so a
                // secret with " #" or quotes in it is never cut short.
                const retyped = plain && !text.includes("#") ? Either.try(() => parseYaml(text) as unknown) : Either.left(undefined)
                node.value = Either.isRight(retyped) && (typeof retyped.right === "number" || typeof retyped.right === "boolean")
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
    return unset
  })

const keyPathOf = (path: ReadonlyArray<unknown>, node: unknown): ReadonlyArray<string> => {
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
  return keys
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

interface PathProblem {
  readonly path: ReadonlyArray<PropertyKey>
  readonly message: string
}

const fromParseError = (prefix: ReadonlyArray<PropertyKey>) => (error: ParseResult.ParseError): Array<PathProblem> =>
  issuesOf(error).map((issue) => ({
    path: [...prefix, ...issue.path],
    message: issue.tag === "Unexpected"
      ? `unknown key; ${issue.message.replace(/^is unexpected, expected: /, "expected one of ")}`
      : issue.message
  }))

const pick = (block: Readonly<Record<string, unknown>>, keys: ReadonlyArray<string>, keep: boolean) =>
  Object.fromEntries(Object.entries(block).filter(([key]) => keys.includes(key) === keep))

/**
 * A call must end within its lease: one still running when the lease ends would be claimed and run again by
 * another worker.
 */
const checkTimeout = (
  config: RelayConfig,
  name: string,
  block: Readonly<Record<string, unknown>>,
  timeout: Duration.Duration
): Array<PathProblem> => {
  const lease = config.dispatch.lease
  const at = ["plugins", name, "timeout"]
  if (!Duration.greaterThan(timeout, Duration.zero)) return [{ path: at, message: "expected a duration longer than 0s" }]
  if (Duration.lessThan(timeout, lease)) return []
  const why = "or a call still running would be run again"
  return "timeout" in block
    ? [{ path: at, message: `must be shorter than dispatch.lease (${Duration.format(lease)}), ${why}` }]
    : [{
      path: ["dispatch", "lease"],
      message: `must be longer than the ${Duration.format(timeout)} default timeout of plugins.${name}, ${why}`
    }]
}

/** Builds every plugin instance's spec: host keys, the plugin itself, and its settings decoded by its own Schema. */
const resolveInstances = (config: RelayConfig, unset: ReadonlyMap<string, Unset>) =>
  Effect.gen(function*() {
    const problems: Array<PathProblem> = []
    const instances = new Map<string, InstanceSpec>()
    const disabled = new Map<string, string>()
    for (const [name, block] of Object.entries(config.plugins)) {
      const host = Schema.decodeUnknownEither(InstanceHostSettings, { errors: "all" })(pick(block, HOST_KEYS, true))
      if (Either.isLeft(host)) {
        problems.push(...fromParseError(["plugins", name])(host.left))
        continue
      }
      problems.push(...checkTimeout(config, name, block, host.right.timeout))
      const plugin = yield* Effect.either(resolvePlugin(host.right.use))
      if (Either.isLeft(plugin)) {
        problems.push({ path: ["plugins", name, "use"], message: plugin.left })
        continue
      }
      const settings = Schema.decodeUnknownEither(plugin.right.settings, { errors: "all", onExcessProperty: "error" })(
        pick(block, HOST_KEYS, false)
      )
      const missing = unset.get(name)
      if (missing !== undefined) {
        // Disabled, but still checked: a typo must not wait for the day the variables are set. Only problems at
        // or below a value emptied by an unset variable are left out.
        const emptied = (path: ReadonlyArray<PropertyKey>) => {
          const key = path.slice(2).map(String).join(".")
          return [...missing.settings].some((setting) => key === setting || key.startsWith(`${setting}.`))
        }
        if (Either.isLeft(settings)) problems.push(...fromParseError(["plugins", name])(settings.left).filter((p) => !emptied(p.path)))
        const names = [...missing.names]
        disabled.set(name, `environment variable${names.length > 1 ? "s" : ""} ${names.join(", ")} not set`)
        continue
      }
      if (Either.isLeft(settings)) {
        problems.push(...fromParseError(["plugins", name])(settings.left))
        continue
      }
      instances.set(name, {
        name,
        plugin: plugin.right,
        settings: settings.right,
        concurrency: host.right.concurrency,
        timeout: host.right.timeout
      })
    }
    return { problems, instances, disabled }
  })

const asList = (value: string | ReadonlyArray<string> | undefined): ReadonlyArray<string> =>
  value === undefined ? [] : typeof value === "string" ? [value] : value

/** Routes may only name configured instances and known event types, or globs that match one. */
const checkRoutes = (config: RelayConfig): Array<PathProblem> =>
  config.routes.flatMap((route, i) => {
    const problems: Array<PathProblem> = []
    const names = Object.keys(config.plugins)
    asList(route.to).forEach((target, j) => {
      if (!(target in config.plugins)) {
        problems.push({
          path: typeof route.to === "string" ? ["routes", i, "to"] : ["routes", i, "to", j],
          message: `no plugin instance named "${target}"${didYouMean(target, names)}; ` +
            (names.length === 0 ? "the plugins: section is empty" : `instances: ${names.join(", ")}`)
        })
      }
    })
    const types = route.match.event_type
    asList(types).forEach((type, j) => {
      const path = typeof types === "string" ? ["routes", i, "match", "event_type"] : ["routes", i, "match", "event_type", j]
      if (!/[*?]/.test(type)) {
        if (!isKnownEventType(type)) problems.push({ path, message: `unknown event type ${type}${didYouMean(type, EVENT_TYPES)}` })
      } else if (!EVENT_TYPES.some((known) => picomatch.isMatch(known, type))) {
        problems.push({ path, message: `${type} matches no event type kyc-relay knows; event types: ${EVENT_TYPES.join(", ")}` })
      }
    })
    return problems
  })

/** Parses, interpolates and validates a configuration, and loads the plugins it names. */
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
    const invalid = (problems: ReadonlyArray<PathProblem>) =>
      new ConfigInvalid({
        file,
        problems: problems.map((problem) => ({
          ...position(lines, locate(doc, problem.path)),
          key: pathText(problem.path),
          message: problem.message
        }))
      })
    const unset = yield* interpolate(doc, lines, file)
    const config = yield* Schema.decodeUnknown(RelayConfig, { errors: "all", onExcessProperty: "error" })(
      doc.toJS() ?? {}
    ).pipe(Effect.mapError((error) => invalid(fromParseError([])(error))))
    const { disabled, instances, problems } = yield* resolveInstances(config, unset)
    problems.push(...checkRoutes(config))
    if (problems.length > 0) return yield* invalid(problems)
    return { file, config, instances, disabled } satisfies Loaded
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
      return yield* loadConfigFile(file)
    })
  )
