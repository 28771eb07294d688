import { Effect, Fiber } from "effect"

/**
 * `effect`, failed with `onTimeout()` if it has not finished within `millis` (real time), once it has been
 * interrupted. The same as `Effect.timeoutFail`, for one plugin call per delivery: that races two forked
 * fibers and a Clock sleep, and cost ~170 µs of CPU per delivery (BENCHMARKS.md); this forks one and sets a timer.
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
        }, millis)
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
