import { Effect, Fiber } from "effect"

// setTimeout fires at once past this many milliseconds (about 24.8 days).
const MAX_TIMER = 2 ** 31 - 1

/**
 * `effect`, failed with `onTimeout()` if it has not finished within `millis` (real time), once it has been
 * interrupted. The same as `Effect.timeoutFail`, for one plugin call per delivery: that races two forked
 * fibers and a Clock sleep, twice the CPU per call of forking one and setting a timer (BENCHMARKS.md).
 */
export const callTimeout = <A, E, E2>(
  effect: Effect.Effect<A, E>,
  millis: number,
  onTimeout: () => E2
): Effect.Effect<A, E | E2> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.fork(restore(effect)), (fiber) =>
      restore(Effect.async<A, E | E2>((resume) => {
        let settled = false
        const timer = setTimeout(() => {
          settled = true
          resume(Effect.zipRight(Fiber.interrupt(fiber), Effect.fail(onTimeout())))
        }, Math.min(millis, MAX_TIMER))
        fiber.addObserver((exit) => {
          clearTimeout(timer)
          if (!settled) {
            settled = true
            resume(exit)
          }
        })
        return Effect.sync(() => clearTimeout(timer))
      })).pipe(Effect.onInterrupt(() => Fiber.interrupt(fiber))))
  )
