import { Duration, Effect, Either, Schema } from "effect"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
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
    try: () => import(pathToFileURL(resolve(use)).href) as Promise<Record<string, unknown>>,
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
