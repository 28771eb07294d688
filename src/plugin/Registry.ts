import { Duration, Effect, Either, Schema } from "effect"
import { statSync } from "node:fs"
import { dirname, isAbsolute, join, relative, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { CrmPlugin } from "../../plugins/crm/index.js"
import { EmailPlugin } from "../../plugins/email/index.js"
import { LogPlugin } from "../../plugins/log/index.js"
import { SlackPlugin } from "../../plugins/slack/index.js"
import { WebhookPlugin } from "../../plugins/webhook/index.js"
import { didYouMean } from "../config/Suggest.js"
import type { Plugin } from "./Plugin.js"

/** Plugins that ship with kyc-relay, by the name used in `use:`. */
export const BUILTIN_PLUGINS: Readonly<Record<string, Plugin>> = {
  log: LogPlugin,
  webhook: WebhookPlugin,
  slack: SlackPlugin,
  email: EmailPlugin,
  crm: CrmPlugin
}

/** One configured plugin instance, its settings already decoded by the plugin's own Schema. */
export interface InstanceSpec {
  readonly name: string
  readonly plugin: Plugin
  readonly settings: unknown
  readonly concurrency: number
  readonly timeout: Duration.Duration
}

const isPlugin = (value: unknown): value is Plugin =>
  typeof value === "object" && value !== null &&
  typeof (value as Plugin).name === "string" &&
  typeof (value as Plugin).make === "function" &&
  Schema.isSchema((value as Plugin).settings)

const isPath = (use: string) => use.startsWith("./") || use.startsWith("../") || use.startsWith("/")

const isTypeScript = (path: string) => /\.[cm]?ts$/.test(path)

// Compiled, this module is dist/src/plugin/Registry.js, and dist/ mirrors the package's src/ and plugins/.
// There, a TypeScript plugin is loaded from the build when the build has it, else transpiled by tsx, which
// is loaded only then; run from the sources, whatever runs them (tsx, vitest) transpiles it too.
const BUILD = isTypeScript(import.meta.url) ? undefined : fileURLToPath(new URL("../../", import.meta.url))

/** The build's JavaScript for a TypeScript file of this package, when it is no older than the source. */
const builtCopy = (build: string, file: string): string | undefined => {
  const inPackage = relative(dirname(build), file)
  if (inPackage.startsWith("..") || isAbsolute(inPackage)) return undefined
  const copy = join(build, inPackage.replace(/ts$/, "js"))
  try {
    return statSync(copy).mtimeMs >= statSync(file).mtimeMs ? copy : undefined
  } catch {
    return undefined
  }
}

let typeScriptLoader: Promise<unknown> | undefined
const importTypeScript = (url: string) => {
  typeScriptLoader ??= import("tsx/esm/api").then(({ register }) => register())
  return typeScriptLoader.then(() => import(url))
}

const importPlugin = (use: string): Promise<Record<string, unknown>> => {
  const file = resolve(use)
  if (BUILD === undefined || !isTypeScript(file)) return import(pathToFileURL(file).href)
  const copy = builtCopy(BUILD, file)
  return copy === undefined ? importTypeScript(pathToFileURL(file).href) : import(pathToFileURL(copy).href)
}

/**
 * A built-in plugin by name, or a custom one from the module at a path (relative to the working directory)
 * that exports `plugin = definePlugin({...})`. The failure is a sentence for the configuration error.
 */
export const resolvePlugin = (use: string): Effect.Effect<Plugin, string> => {
  if (Object.hasOwn(BUILTIN_PLUGINS, use)) return Effect.succeed(BUILTIN_PLUGINS[use]!)
  if (!isPath(use)) {
    return Effect.fail(
      `unknown plugin "${use}"${didYouMean(use, Object.keys(BUILTIN_PLUGINS))}; built-in plugins are ${
        Object.keys(BUILTIN_PLUGINS).join(", ")
      }, or give a path such as ./plugins/my-plugin.ts`
    )
  }
  return Effect.tryPromise({
    try: () => importPlugin(use),
    catch: (error) => `cannot load ${use}: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`
  }).pipe(
    Effect.flatMap((module) =>
      Either.fromNullable(
        isPlugin(module.plugin) ? module.plugin : undefined,
        () => `${use} does not export \`plugin\` (write: export const plugin = definePlugin({ name, settings, make }))`
      )
    )
  )
}
