import picomatch from "picomatch"
import type { FieldMatcher, Route, RetryOverrides } from "../config/RelayConfig.js"
import type { CashfreeEvent } from "../domain/Event.js"

/** One delivery an event should get: the instance, and what the route that chose it adds. */
export interface Target {
  readonly instance: string
  readonly route: number
  readonly params: Readonly<Record<string, unknown>>
  readonly retry: RetryOverrides | undefined
}

interface CompiledRoute {
  readonly index: number
  readonly route: Route
  readonly eventType: ((type: string) => boolean) | undefined
}

const asList = (value: string | ReadonlyArray<string>): ReadonlyArray<string> => (typeof value === "string" ? [value] : value)

export const compile = (routes: ReadonlyArray<Route>): ReadonlyArray<CompiledRoute> =>
  routes.map((route, index) => ({
    index,
    route,
    eventType: route.match.event_type === undefined ? undefined : picomatch(asList(route.match.event_type) as Array<string>)
  }))

/** The phase Cashfree reports: `status` for VKYC events, `form_status` for KYC links. */
export const statusOf = (event: CashfreeEvent): string =>
  "status" in event.data ? event.data.status : event.data.form_status

export const subStatusOf = (event: CashfreeEvent): string | undefined =>
  "sub_status" in event.data ? event.data.sub_status : undefined

const valueAt = (data: unknown, path: string): unknown =>
  path.split(".").reduce<unknown>(
    (value, key) => (typeof value === "object" && value !== null ? (value as Record<string, unknown>)[key] : undefined),
    data
  )

const fieldMatches = (matcher: FieldMatcher, value: unknown): boolean =>
  typeof matcher === "object" && matcher !== null ? matcher.in.some((item) => item === value) : matcher === value

const matches = (compiled: CompiledRoute, event: CashfreeEvent): boolean => {
  const { match } = compiled.route
  if (compiled.eventType !== undefined && !compiled.eventType(event.event_type)) return false
  if (match.status !== undefined && !asList(match.status).includes(statusOf(event))) return false
  if (match.sub_status !== undefined) {
    const subStatus = subStatusOf(event)
    if (subStatus === undefined || !asList(match.sub_status).includes(subStatus)) return false
  }
  return Object.entries(match.data ?? {}).every(([path, matcher]) => fieldMatches(matcher, valueAt(event.data, path)))
}

/** A route that matched, and the instances it contributed (none when it skipped a stale event). */
export interface Matched {
  readonly route: number
  readonly name: string | undefined
  readonly instances: ReadonlyArray<string>
  readonly skippedStale: boolean
}

/** Walks the routes in order; a matching route with `continue: false` ends the walk. */
export const explain = (routes: ReadonlyArray<CompiledRoute>, event: CashfreeEvent, stale: boolean): ReadonlyArray<Matched> => {
  const matched: Array<Matched> = []
  for (const compiled of routes) {
    if (!matches(compiled, event)) continue
    const skippedStale = stale && compiled.route.skip_stale
    matched.push({
      route: compiled.index,
      name: compiled.route.name,
      instances: skippedStale ? [] : asList(compiled.route.to),
      skippedStale
    })
    if (!compiled.route.continue) break
  }
  return matched
}

/**
 * The deliveries an event gets: every instance of every matching route, unless the event is stale and the
 * route says `skip_stale`. An instance named by several routes gets one delivery, with the first route's settings.
 */
export const route = (routes: ReadonlyArray<CompiledRoute>, event: CashfreeEvent, stale: boolean): ReadonlyArray<Target> => {
  const targets = new Map<string, Target>()
  for (const matched of explain(routes, event, stale)) {
    const { route: config } = routes[matched.route]!
    for (const instance of matched.instances) {
      if (!targets.has(instance)) {
        targets.set(instance, { instance, route: matched.route, params: config.params, retry: config.retry })
      }
    }
  }
  return [...targets.values()]
}
