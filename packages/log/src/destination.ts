// The pino transport module: runs in pino's log thread (thread-stream). pino serialises each
// line in the calling thread; the bytes cross a SharedArrayBuffer to this thread, which writes
// them to the sink. Control (reopen, rotate) arrives as messages on the thread's parentPort.
import { Writable } from 'node:stream'
import { parentPort } from 'node:worker_threads'
import { FdSink, FileSink, type RotateOptions, type Sink } from './sink.js'

export interface DestinationOptions {
  /** File path; null/undefined: file descriptor `fd` (default 1, stdout). */
  file?: string | null
  fd?: number
  rotate?: RotateOptions
}

/** Control messages from the logging thread; answered with { sipedgeLog: 'done', id, error? }. */
export interface ControlMessage { sipedgeLog: 'reopen' | 'rotate'; id: number }

export default function build(opts: DestinationOptions): Writable {
  const sink: Sink = opts.file != null && opts.file !== '' ? new FileSink(opts.file, opts.rotate ?? {}) : new FdSink(opts.fd ?? 1)
  let timer: NodeJS.Timeout | null = null
  if (sink instanceof FileSink && typeof opts.rotate?.interval === 'number' && opts.rotate.interval > 0) {
    // time rotation also happens while idle (a write checks too)
    timer = setInterval(() => { if (sink.due()) sink.rotate() }, Math.min(opts.rotate.interval, 60_000))
    timer.unref()
  }
  const onMessage = (m: unknown): void => {
    const msg = m as Partial<ControlMessage> | null
    if (msg === null || typeof msg !== 'object' || (msg.sipedgeLog !== 'reopen' && msg.sipedgeLog !== 'rotate')) return
    let error: string | undefined
    try {
      if (msg.sipedgeLog === 'reopen') sink.reopen()
      else sink.rotate()
    } catch (e) {
      error = (e as Error).message
    }
    parentPort?.postMessage({ sipedgeLog: 'done', id: msg.id, ...(error !== undefined ? { error } : {}) })
  }
  parentPort?.on('message', onMessage)
  return new Writable({
    decodeStrings: false,
    write(chunk: string | Buffer, _enc, cb) {
      try {
        sink.write(typeof chunk === 'string' ? chunk : chunk.toString('utf8'))
        cb()
      } catch (e) {
        cb(e as Error)
      }
    },
    final(cb) {
      if (timer !== null) clearInterval(timer)
      parentPort?.off('message', onMessage)
      try {
        sink.close()
        cb()
      } catch (e) {
        cb(e as Error)
      }
    },
  })
}
