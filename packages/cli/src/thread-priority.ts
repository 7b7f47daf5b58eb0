// The priority of the threads that handle no SIP message (docs/performance.md, issue 17 session
// 13, "The helper threads at nice 19"; config key `helper_thread_nice`, which defaults to 19 only
// with `workers: 0`: beside several handling threads on one CPU, lowered helpers are a priority
// inversion — session 15, "`helper_thread_nice` defaults to 0 when the node has worker threads").
//
// A Node process runs V8's platform threads (concurrent marking, parallel scavenging, the
// optimising compiler), libuv's pool and sipedge's log thread beside the threads that run the
// event loops. On a CPU that the message-handling thread keeps half busy (one CPU at 2,000
// requests a second), the kernel gives every runnable thread of equal priority its time slice
// of several milliseconds: each major GC's concurrent marking took the CPU from the main thread
// in slices of 10-35 ms for a few hundred milliseconds, which is where the p99 of 70-190 ms at
// S=10 came from (issue 17). At nice +19 the same threads run in the time the main thread leaves
// idle and yield to it as soon as a message arrives; the GC work still gets done (the main
// thread idles about half the time at that load, and V8 finishes marking on the main thread
// when the helpers fall behind).
//
// Linux keeps a nice value per thread, and setpriority(PRIO_PROCESS, tid) (Node's
// os.setPriority) sets that of one thread. Raising it needs no privilege; lowering it back does,
// which is why this runs once, at start, before any handler thread exists: threads created
// later (the workers) inherit the nice value of the thread that creates them, the primary's.
import { readdirSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'

export interface HelperNice {
  /** Threads whose nice value was raised. */
  threads: number
  /** The nice value they run at. */
  nice: number
  /** Threads that could not be changed (they ended meanwhile, or the kernel refused). */
  failed: number
}

/**
 * Raises the nice value of every thread of this process except the calling one (which must be
 * the main thread: tid = pid) by `increment`, to at most 19. Returns null where there is nothing
 * to do: `increment` 0, or no /proc/self/task (not Linux).
 */
export function lowerHelperThreads(increment: number, taskDir = '/proc/self/task'): HelperNice | null {
  if (!(increment > 0)) return null
  let tids: string[]
  try {
    tids = readdirSync(taskDir)
  } catch {
    return null
  }
  const nice = Math.min(19, getPriority(process.pid) + increment)
  let threads = 0
  let failed = 0
  for (const t of tids) {
    const tid = Number(t)
    if (!Number.isInteger(tid) || tid === process.pid) continue
    try {
      if (getPriority(tid) >= nice) continue
      setPriority(tid, nice)
      threads++
    } catch {
      failed++
    }
  }
  return { threads, nice, failed }
}
