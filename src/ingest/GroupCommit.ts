/**
 * Group commit: items that arrive while a batch is being written wait for the next batch, so the store pays
 * one commit (one fsync on SQLite) per batch rather than one per item. Plain promises rather than fibers:
 * this runs once per webhook, and the bench showed the runtime's per-request cost.
 */

interface Waiting<A, B> {
  readonly item: A
  readonly resolve: (result: B) => void
  readonly reject: (error: unknown) => void
}

export interface GroupCommitOptions<A, B> {
  readonly maxBatch: number
  /** Batches that may be committing at once (1 unless the store keeps them in order itself). */
  readonly inFlight: number
  /** Writes a batch in one transaction; the results are in the batch's order. */
  readonly commit: (batch: ReadonlyArray<A>) => ReadonlyArray<B> | Promise<ReadonlyArray<B>>
  /** Called once per failed commit (of a single item, after a failed batch was split). */
  readonly onError: (error: unknown) => void
}

export interface GroupCommit<A, B> {
  readonly submit: (item: A) => Promise<B>
  /** Refuses new items and resolves once everything submitted so far has been answered. */
  readonly close: () => Promise<void>
}

export class GroupCommitClosed extends Error {
  constructor() {
    super("the store is closing")
  }
}

export const groupCommit = <A, B>(options: GroupCommitOptions<A, B>): GroupCommit<A, B> => {
  let waiting: Array<Waiting<A, B>> = []
  let scheduled = false
  let running = 0
  let closed = false
  let idle: (() => void) | undefined

  /** One item the store refuses must not fail the others: a failed batch is retried one item at a time. */
  const commitAndAnswer = async (batch: ReadonlyArray<Waiting<A, B>>): Promise<void> => {
    let results: ReadonlyArray<B>
    try {
      results = await options.commit(batch.map((w) => w.item))
    } catch (error) {
      if (batch.length > 1) {
        for (const one of batch) await commitAndAnswer([one])
        return
      }
      options.onError(error)
      batch[0]!.reject(error)
      return
    }
    batch.forEach((w, i) => w.resolve(results[i]!))
  }

  const run = async () => {
    scheduled = false
    const batch = waiting.length <= options.maxBatch ? waiting : waiting.slice(0, options.maxBatch)
    waiting = batch === waiting ? [] : waiting.slice(options.maxBatch)
    running++
    if (waiting.length > 0) schedule()
    try {
      await commitAndAnswer(batch)
    } finally {
      running--
      if (waiting.length > 0) schedule()
      else if (running === 0) idle?.()
    }
  }

  // Waiting one event-loop turn lets the loop read the requests already on their sockets first; otherwise
  // every transaction would hold one item and pay a whole fsync.
  const schedule = () => {
    if (scheduled || running >= options.inFlight) return
    scheduled = true
    setImmediate(run)
  }

  return {
    submit: (item) =>
      new Promise<B>((resolve, reject) => {
        if (closed) return reject(new GroupCommitClosed())
        waiting.push({ item, resolve, reject })
        schedule()
      }),
    close: () => {
      closed = true
      return running === 0 && waiting.length === 0 ? Promise.resolve() : new Promise<void>((resolve) => {
        idle = resolve
      })
    }
  }
}
