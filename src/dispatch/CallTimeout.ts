import { type Effect, Exit, type Fiber, Runtime } from "effect"

// setTimeout fires at once past this many milliseconds (about 24.8 days).
const MAX_TIMER = 2 ** 31 - 1

/**
 * Runs `effect` in a fiber of its own and calls `done` with how it ended: failed with `onTimeout()` if it had not
 * finished within `millis` (real time), once it has been interrupted. Returns the fiber, so that a shutdown can
 * interrupt it (`done` then sees the interruption). One fiber and one timer per call: `Effect.timeoutFail` inside a
 * worker fiber races two more fibers and a Clock sleep, and the workers' own Effect loop cost as much again per
 * delivery (BENCHMARKS.md).
 */
export const startCall = <A, E, E2>(
  runtime: Runtime.Runtime<never>,
  effect: Effect.Effect<A, E>,
  millis: number,
  onTimeout: () => E2,
  done: (exit: Exit.Exit<A, E | E2>) => void
): Fiber.RuntimeFiber<A, E> => {
  let timedOut = false
  const fiber = Runtime.runFork(runtime)(effect)
  const timer = setTimeout(() => {
    timedOut = true
    fiber.unsafeInterruptAsFork(fiber.id())
  }, Math.min(millis, MAX_TIMER))
  fiber.addObserver((exit) => {
    clearTimeout(timer)
    done(timedOut && Exit.isInterrupted(exit) ? Exit.fail(onTimeout()) : exit)
  })
  return fiber
}
